import type { Client, Connection } from '@temporalio/client';
import type { Pool } from 'pg';
import type { Config } from '../config';
import type { SecretVault } from '../crypto/vault';
import type { Logger } from '../logger';

/** What /api/v1 handlers may use. */
export interface ApiDeps {
  config: Pick<Config, 'TEMPORAL_NAMESPACE' | 'TEMPORAL_UI_URL' | 'TEMPORAL_RPC_TIMEOUT_MS' | 'TEMPORAL_TASK_QUEUE' | 'MASTER_KEYS' | 'DATA_KEY_MAX_AGE_DAYS' | 'DATA_KEY_MAX_ENCRYPTIONS' | 'NODE_ENV'>;
  pool: Pool;
  vault: SecretVault;
  temporal: { client: Client; connection: Connection };
  logger: Logger;
}
