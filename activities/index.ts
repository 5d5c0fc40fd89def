import type { Pool } from 'pg';
import type { SecretVault } from '../src/crypto/vault';
import type { Logger } from '../src/logger';
import type { GraphClient } from '../src/meta/graph-client';
import type { EngineSelector } from '../src/ai/engine-selector';
import { createAuditActivities } from './audit';
import { createAuditRetentionActivities, type AuditRuntime } from './audit-retention';
import { createConversationActivities } from './conversation-store';
import { createGraphActivities } from './graph';
import { createKeyRotationActivities } from './key-rotation';
import { createReplyActivities } from './reply';
import { createToolActivities } from './tools';

export interface ActivityDeps {
  pool: Pool;
  vault: SecretVault;
  graph: GraphClient;
  logger: Logger;
  /** Tests may pin the reply engine; by default each tenant's settings choose it. */
  selectEngine?: EngineSelector;
  /** Audit signer/keyring/checkpoint dir (retention seals epoch boundaries; verification). */
  audit?: AuditRuntime;
}

/** Every activity the worker registers, bound to its dependencies (no module-level state). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createConversationActivities(deps),
    ...createReplyActivities(deps),
    ...createToolActivities(deps),
    ...createGraphActivities(deps),
    ...createKeyRotationActivities(deps),
    ...createAuditActivities(deps),
    ...createAuditRetentionActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
