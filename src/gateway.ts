import { startCredentialHousekeeping } from './auth/housekeeping';
import { loadConfig } from './config';
import { StaticKeyProvider } from './crypto/key-provider';
import { SecretVault } from './crypto/vault';
import { createPool } from './db/pool';
import { createGatewayApp } from './gateway/app';
import { createLogger } from './logger';
import { createTemporalClient } from './temporal/client';
import { AesGcmPayloadCodec, createDataConverter } from './temporal/payload-codec';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('gateway', config.LOG_LEVEL, { pii: config.LOG_PII });
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE);
  const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
  const temporal = createTemporalClient({ address: config.TEMPORAL_ADDRESS, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  const vault = new SecretVault(pool, keys, { cacheTtlMs: config.DATA_KEY_CACHE_TTL_MS });
  const app = createGatewayApp({ config, pool, temporal, codec, vault, logger });
  const server = app.listen(config.GATEWAY_PORT, config.GATEWAY_HOST);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  logger.info({ port: config.GATEWAY_PORT }, 'gateway listening');
  const stopHousekeeping = startCredentialHousekeeping(
    pool,
    { windowMs: config.LOGIN_THROTTLE_WINDOW_MS, perAccount: config.LOGIN_MAX_FAILURES_PER_ACCOUNT, perIp: config.LOGIN_MAX_FAILURES_PER_IP },
    logger,
  );

  const stop = () => {
    logger.info('gateway stopping');
    stopHousekeeping();
    server.close(() => {
      void Promise.all([pool.end(), temporal.connection.close()]).finally(() => process.exit(0));
    });
    server.closeIdleConnections();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  process.stderr.write(`gateway failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
