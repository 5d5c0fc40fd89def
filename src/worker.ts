import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from './config';
import { StaticKeyProvider } from './crypto/key-provider';
import { createPool } from './db/pool';
import { createLogger } from './logger';
import { createDataConverter } from './temporal/payload-codec';
import { installTemporalRuntime } from './temporal/runtime';
import { ensureAuditRetentionSchedule, ensureDataKeyRotationSchedule, ensureTokenRotationSchedule } from './temporal/schedules';
import { tokenPolicy } from './shared/token-policy';
import { startAuditCheckpointerFromConfig } from './audit/checkpoints';
import { createSwitchboardWorker } from './worker-setup';

async function connectWithRetry(address: string, attempts = 30): Promise<NativeConnection> {
  for (let i = 1; ; i++) {
    try {
      return await NativeConnection.connect({ address });
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('worker', config.LOG_LEVEL, { pii: config.LOG_PII });
  installTemporalRuntime(logger);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE);
  const connection = await connectWithRetry(config.TEMPORAL_ADDRESS);
  const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  const worker = await createSwitchboardWorker({ config, connection, pool, logger, keys });
  // The daily audit retention run (purge expired sealed epochs, then verify): created or updated, never duplicated.
  const clientConnection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = new Client({ connection: clientConnection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(keys) });
    const schedule = await ensureAuditRetentionSchedule(client, { taskQueue: config.TEMPORAL_TASK_QUEUE });
    logger.info(schedule, 'audit retention schedule ensured');
    const tokens = await ensureTokenRotationSchedule(client, {
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      cron: config.TOKEN_ROTATION_CRON,
      policy: tokenPolicy({ refreshWindowDays: config.TOKEN_REFRESH_WINDOW_DAYS, expiryWarningDays: config.TOKEN_EXPIRY_WARNING_DAYS }),
      concurrency: config.TOKEN_ROTATION_CONCURRENCY,
      graphCallsPerMinute: config.TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE,
    });
    logger.info(tokens, 'token rotation schedule ensured');
    const dataKeys = await ensureDataKeyRotationSchedule(client, {
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      cron: config.DATA_KEY_ROTATION_CRON,
      maxAgeDays: config.DATA_KEY_MAX_AGE_DAYS,
      maxEncryptions: config.DATA_KEY_MAX_ENCRYPTIONS,
    });
    logger.info(dataKeys, 'data key rotation schedule ensured');
  } finally {
    await clientConnection.close();
  }
  // Signed checkpoints of every audit chain (this process's appends, and the gateway's and CLI's on the timer).
  const checkpointer = startAuditCheckpointerFromConfig(config, pool, logger);
  logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, namespace: config.TEMPORAL_NAMESPACE }, 'worker started');
  // The SDK shuts the worker down gracefully on SIGINT/SIGTERM; run() resolves once it drained.
  await worker.run();
  await checkpointer?.stop();
  await connection.close();
  await pool.end();
  logger.info('worker stopped');
}

main().catch((err) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
