import type { Pool } from 'pg';
import type { SecretVault } from '../src/crypto/vault';
import type { Logger } from '../src/logger';
import type { GraphClient } from '../src/meta/graph-client';
import type { MetaOAuthClient } from '../src/meta/oauth-client';
import type { EngineSelector } from '../src/ai/engine-selector';
import { createAuditActivities } from './audit';
import { createAuditRetentionActivities, type AuditRuntime } from './audit-retention';
import { createConversationActivities } from './conversation-store';
import { createGraphActivities } from './graph';
import { createKeyRotationActivities } from './key-rotation';
import { createNotificationActivities, type NotificationDeps } from './notifications';
import { createOnboardingActivities } from './onboarding';
import { createParkedSendActivities } from './parked-sends';
import { createReconnectActivities } from './reconnect';
import { createReplyActivities } from './reply';
import { createToolActivities } from './tools';
import { createTokenRotationActivities } from './token-rotation';

export interface ActivityDeps {
  pool: Pool;
  vault: SecretVault;
  graph: GraphClient;
  logger: Logger;
  /** Tests may pin the reply engine; by default each tenant's settings choose it. */
  selectEngine?: EngineSelector;
  /** Audit signer/keyring/checkpoint dir (retention seals epoch boundaries; verification). */
  audit?: AuditRuntime;
  /** Meta's OAuth endpoints for the onboarding saga; without it the onboarding steps that call Meta fail as not configured. */
  oauth?: MetaOAuthClient;
  /** CONVERSATION_IDLE_TIMEOUT_MS: conversation runs this worker starts (resumeParkedSends) idle out like the gateway's. */
  conversationIdleTimeoutMs?: number;
  /** SMTP, sender, portal link and webhook policy for tenant notifications; without it nothing is e-mailed. */
  notifications?: NotificationDeps;
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
    ...createOnboardingActivities(deps),
    ...createTokenRotationActivities(deps),
    ...createParkedSendActivities(deps),
    ...createReconnectActivities(deps),
    ...createNotificationActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
