import { readFileSync } from 'node:fs';
import { NativeConnection } from '@temporalio/worker';
import { parseConfig } from '../../src/config';
import { StaticKeyProvider, type KeyProvider } from '../../src/crypto/key-provider';
import { createPool } from '../../src/db/pool';
import { createLogger } from '../../src/logger';
import { installTemporalRuntime } from '../../src/temporal/runtime';
import { createSwitchboardWorker } from '../../src/worker-setup';

/**
 * A Switchboard worker in its own process, for the key rotation crash test
 * (test/workflows/key-rotation.test.ts), which SIGKILLs it in the middle of a rotation. Every
 * `wrap()` is slowed down (WRAP_DELAY_MS, default 40 ms) so a rotation lasts long enough to be
 * cut short. Started with `node --import tsx test/support/rotation-worker.ts` and the env
 * DATABASE_URL, MASTER_KEYS, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, TEST_WORKFLOW_BUNDLE.
 * Prints `ready` on stdout once it polls, and one `wrap <n>` line per wrap.
 */

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

/** Delays every wrap; everything else goes straight to the real provider. */
class SlowWrapKeyProvider implements KeyProvider {
  private wraps = 0;
  constructor(
    private readonly inner: KeyProvider,
    private readonly delayMs: number,
  ) {}
  get activeVersion(): number {
    return this.inner.activeVersion;
  }
  get versions(): readonly number[] {
    return this.inner.versions;
  }
  async wrap(version: number, dataKey: Buffer, aad: Buffer): Promise<Buffer> {
    await new Promise((r) => setTimeout(r, this.delayMs));
    const wrapped = await this.inner.wrap(version, dataKey, aad);
    process.stdout.write(`wrap ${++this.wraps}\n`);
    return wrapped;
  }
  unwrap(version: number, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    return this.inner.unwrap(version, wrapped, aad);
  }
  derivePurposeKey(version: number, purpose: string): Promise<Buffer> {
    return this.inner.derivePurposeKey(version, purpose);
  }
}

async function main(): Promise<void> {
  const config = parseConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATABASE_URL: required('DATABASE_URL'),
    MASTER_KEYS: required('MASTER_KEYS'),
    TEMPORAL_ADDRESS: required('TEMPORAL_ADDRESS'),
    TEMPORAL_TASK_QUEUE: required('TEMPORAL_TASK_QUEUE'),
    // Required by the schema, unused by the worker.
    META_APP_SECRET: 'rotation-worker-unused',
    META_VERIFY_TOKEN: 'rotation-worker-unused',
  });
  const logger = createLogger('rotation-worker', config.LOG_LEVEL);
  installTemporalRuntime(logger);
  const pool = createPool(config.DATABASE_URL, 4);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const keys = new SlowWrapKeyProvider(StaticKeyProvider.fromSpec(config.MASTER_KEYS), Number(process.env.WRAP_DELAY_MS ?? 40));
  const worker = await createSwitchboardWorker({
    config,
    connection,
    pool,
    keys,
    logger,
    workflowBundle: { code: readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8') },
  });
  const running = worker.run();
  process.stdout.write('ready\n');
  await running;
  await connection.close();
  await pool.end();
}

main().catch((err: unknown) => {
  process.stderr.write(`rotation-worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
