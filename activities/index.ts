import type { Pool } from 'pg';
import type { ReplyEngine } from '../src/ai/reply-engine';
import type { SecretVault } from '../src/crypto/vault';
import type { Logger } from '../src/logger';
import type { GraphClient } from '../src/meta/graph-client';
import { createAuditActivities } from './audit';
import { createAuditRetentionActivities, type AuditRuntime } from './audit-retention';
import { createConversationActivities } from './conversation-store';
import { createGraphActivities } from './graph';
import { createKeyRotationActivities } from './key-rotation';

export interface ActivityDeps {
  pool: Pool;
  vault: SecretVault;
  graph: GraphClient;
  replyEngine: ReplyEngine;
  logger: Logger;
  /** Audit signer/keyring/checkpoint dir (retention seals epoch boundaries; verification). */
  audit?: AuditRuntime;
}

/** Every activity the worker registers, bound to its dependencies (no module-level state). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createConversationActivities(deps),
    ...createGraphActivities(deps),
    ...createKeyRotationActivities(deps),
    ...createAuditActivities(deps),
    ...createAuditRetentionActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
