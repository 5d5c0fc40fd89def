import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createActivities } from '../activities';
import { auditSettings } from './audit/checkpoints';
import type { Config } from './config';
import type { KeyProvider } from './crypto/key-provider';
import { SecretVault } from './crypto/vault';
import type { Logger } from './logger';
import { GraphClient } from './meta/graph-client';
import { createOAuthClient, type OAuthConfigKey } from './meta/oauth-client';
import { createDataConverter } from './temporal/payload-codec';

export interface WorkerSetup {
  config: Pick<Config, 'TEMPORAL_NAMESPACE' | 'TEMPORAL_TASK_QUEUE' | 'DATA_KEY_CACHE_TTL_MS' | 'GRAPH_API_BASE' | 'INSTAGRAM_API_BASE' | 'GRAPH_API_VERSION' | 'GRAPH_API_TIMEOUT_MS'> &
    Partial<Pick<Config, 'AUDIT_SIGNING_KEY' | 'AUDIT_PREVIOUS_PUBLIC_KEYS' | 'AUDIT_CHECKPOINT_DIR' | 'AUDIT_CHECKPOINT_EVERY_EVENTS' | 'AUDIT_CHECKPOINT_EVERY_MS'>> &
    Partial<Pick<Config, OAuthConfigKey>> &
    Partial<Pick<Config, 'CONVERSATION_IDLE_TIMEOUT_MS'>> &
    Partial<Pick<Config, 'SMTP_URL' | 'NOTIFY_EMAIL_FROM' | 'PUBLIC_BASE_URL' | 'NODE_ENV'>>;
  connection: NativeConnection;
  pool: Pool;
  keys: KeyProvider;
  logger: Logger;
  /** Tests pass a pre-built bundle so each suite does not re-run webpack. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** The one worker: every workflow and activity, wired to real dependencies. */
export async function createSwitchboardWorker({ config, connection, pool, keys, logger, workflowBundle }: WorkerSetup): Promise<Worker> {
  const { signer, keyring, dir } = auditSettings({
    AUDIT_SIGNING_KEY: config.AUDIT_SIGNING_KEY,
    AUDIT_PREVIOUS_PUBLIC_KEYS: config.AUDIT_PREVIOUS_PUBLIC_KEYS,
    AUDIT_CHECKPOINT_DIR: config.AUDIT_CHECKPOINT_DIR,
    AUDIT_CHECKPOINT_EVERY_EVENTS: config.AUDIT_CHECKPOINT_EVERY_EVENTS ?? 1000,
    AUDIT_CHECKPOINT_EVERY_MS: config.AUDIT_CHECKPOINT_EVERY_MS ?? 300_000,
  });
  const activities = createActivities({
    audit: { signer, keyring, dir },
    pool,
    logger,
    vault: new SecretVault(pool, keys, { cacheTtlMs: config.DATA_KEY_CACHE_TTL_MS }),
    graph: new GraphClient({
      graphBase: config.GRAPH_API_BASE,
      instagramBase: config.INSTAGRAM_API_BASE,
      version: config.GRAPH_API_VERSION,
      timeoutMs: config.GRAPH_API_TIMEOUT_MS,
    }),
    oauth: createOAuthClient(config),
    ...(config.CONVERSATION_IDLE_TIMEOUT_MS !== undefined && { conversationIdleTimeoutMs: config.CONVERSATION_IDLE_TIMEOUT_MS }),
    notifications: {
      smtpUrl: config.SMTP_URL,
      from: config.NOTIFY_EMAIL_FROM ?? 'Switchboard <notifications@switchboard.local>',
      publicBaseUrl: config.PUBLIC_BASE_URL ?? 'http://localhost:3000',
      production: config.NODE_ENV === 'production',
    },
  });
  return Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    activities,
    dataConverter: await createDataConverter(keys),
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
  });
}
