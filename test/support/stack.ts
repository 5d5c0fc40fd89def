import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer, type RequestListener, type Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { Client as PgClient } from 'pg';
import { createOperator, createTenantUser } from '../../src/auth/accounts';
import { createApiKey } from '../../src/auth/api-keys';
import type { Role, TenantRole } from '../../src/auth/permissions';
import { parseConfig, type Config } from '../../src/config';
import { ensureAppLoginRole, withCredentials } from '../../src/db/app-role';
import { migrate } from '../../src/db/migrate';
import { createPool, type Pool } from '../../src/db/pool';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { SANDBOX_APP_ID, startGraphSandbox, type GraphSandbox } from '../../src/sandbox/graph-sandbox';
import { oauthAppsFromConfig, SANDBOX_INSTAGRAM_APP_ID } from '../../src/sandbox/oauth-store';
import { installTemporalRuntime } from '../../src/temporal/runtime';
import { createSwitchboardWorker } from '../../src/worker-setup';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { startSmtpCapture, type SmtpCapture } from '../../src/notifications/smtp-capture';

export const TEST_APP_SECRET = 'test_app_secret_not_real';
/** The Instagram app's secret (Instagram Login's code exchange; a second accepted webhook secret). */
export const TEST_INSTAGRAM_APP_SECRET = 'test_instagram_app_secret_not_real';
export const TEST_VERIFY_TOKEN = 'verify-token-for-tests';
export const TEST_CODEC_TOKEN = 'codec-token-for-tests-only';
export const TEST_ADMIN_TOKEN = 'admin-token-for-tests-only';

/** A variable jest's globalSetup provides (the run's database, Temporal server, workflow bundle). */
export function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: tests must run through jest's globalSetup (npm test)`);
  return v;
}

export interface TestDatabase {
  /** The application role's URL (what the gateway, worker and CLI use): owns nothing. */
  url: string;
  pool: Pool;
  /** The schema owner's URL and pool (migrations; tests that must act as an attacker with DDL rights). */
  ownerUrl: string;
  ownerPool: Pool;
  drop(): Promise<void>;
}

export const TEST_APP_DB_USER = 'sb_test_app';
const TEST_APP_DB_PASSWORD = 'sb-test-app-password';

/** A fresh database in the run's embedded PostgreSQL, migrated by its owner, used as the app role. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = required('TEST_PG_ADMIN_URL');
  const name = `sb_test_${randomBytes(6).toString('hex')}`;
  const client = new PgClient({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const ownerUrl = admin.replace(/\/postgres$/, `/${name}`);
  const ownerPool = createPool(ownerUrl, 4);
  await migrate(ownerPool);
  await ensureAppLoginRole(ownerPool, TEST_APP_DB_USER, TEST_APP_DB_PASSWORD);
  const url = withCredentials(ownerUrl, TEST_APP_DB_USER, TEST_APP_DB_PASSWORD);
  const pool = createPool(url, 10);
  return {
    url,
    pool,
    ownerUrl,
    ownerPool,
    async drop() {
      await pool.end();
      await ownerPool.end();
      const c = new PgClient({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * Onboarding (issue 7) against the sandbox: its Meta and Instagram apps, every Meta host at the
 * sandbox (dialogs, token endpoints, Graph), and the portal's callback as the one redirect URI.
 */
export function onboardingTestConfig(sandboxUrl: string, gatewayUrl: string): Record<string, string> {
  return {
    META_APP_ID: String(SANDBOX_APP_ID),
    INSTAGRAM_APP_ID: SANDBOX_INSTAGRAM_APP_ID,
    INSTAGRAM_APP_SECRET: TEST_INSTAGRAM_APP_SECRET,
    OAUTH_REDIRECT_URI: `${gatewayUrl}/portal/oauth/callback`,
    FACEBOOK_DIALOG_BASE: sandboxUrl,
    INSTAGRAM_DIALOG_BASE: sandboxUrl,
    INSTAGRAM_OAUTH_BASE: sandboxUrl,
  };
}

export function testConfig(overrides: Record<string, string> = {}): Config {
  return parseConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: 'postgres://unused@127.0.0.1/unused',
    META_APP_SECRET: TEST_APP_SECRET,
    META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
    MASTER_KEYS: `1:${randomBytes(32).toString('base64')}`,
    CODEC_AUTH_TOKEN: TEST_CODEC_TOKEN,
    ADMIN_API_TOKEN: TEST_ADMIN_TOKEN,
    TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS ?? 'localhost:7233',
    TEMPORAL_TASK_QUEUE: `test-${randomUUID()}`,
    CONVERSATION_IDLE_TIMEOUT_MS: '5000',
    GRAPH_API_TIMEOUT_MS: '3000',
    ...overrides,
  });
}

/** Every log line written by loggers a test asked to capture (see `captureLogs`). */
export class LogCapture {
  readonly lines: string[] = [];
  readonly stream = { write: (line: string) => void this.lines.push(line) };
}

let runtimeInstalled = false;
/** SDK (and workflow `log.*`) lines of this test process, whatever level they pass at. */
export const sdkLogs = new LogCapture();

/** Quiet SDK logs in tests (one Runtime per process, installed before the first worker); kept in `sdkLogs`. */
export function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  installTemporalRuntime(createLogger('temporal', process.env.TEST_LOG_LEVEL ?? 'warn', { destination: sdkLogs.stream }));
}

export interface TestStack {
  config: Config;
  keys: StaticKeyProvider;
  /** A vault on the stack's database and keys, for arranging encrypted data in tests. */
  vault: SecretVault;
  db: TestDatabase;
  sandbox: GraphSandbox;
  client: Client;
  gatewayUrl: string;
  worker: Worker;
  /** The local SMTP capture the stack's SMTP_URL points at (unless a test overrode SMTP_URL): every notification e-mail lands here. */
  mail: SmtpCapture;
  close(): Promise<void>;
}

/**
 * The whole path with real parts: Koa gateway → Temporal dev server → worker → PostgreSQL →
 * Graph API sandbox. Each call gets its own database and task queue.
 */
export async function startTestStack(overrides: Record<string, string> = {}, logs?: LogCapture): Promise<TestStack> {
  const db = await createTestDatabase();
  // The sandbox's Meta and Instagram apps carry the stack's app secret (the saga's code exchange and appsecret_proof use it).
  const sandbox = await startGraphSandbox({ port: 0, oauthApps: oauthAppsFromConfig({ META_APP_SECRET: overrides.META_APP_SECRET ?? TEST_APP_SECRET, INSTAGRAM_APP_SECRET: overrides.INSTAGRAM_APP_SECRET ?? TEST_INSTAGRAM_APP_SECRET }) });
  // The gateway's port is taken first: the OAuth redirect URI, which the saga and the sandbox
  // check against the one configured value, names it. Requests get the app once it exists.
  let handler: RequestListener = (_req, res) => void res.writeHead(503).end();
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const gatewayUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const mail = await startSmtpCapture();
  const config = testConfig({ DATABASE_URL: db.url, GRAPH_API_BASE: sandbox.url, INSTAGRAM_API_BASE: sandbox.url, SMTP_URL: mail.url, PUBLIC_BASE_URL: gatewayUrl, ...onboardingTestConfig(sandbox.url, gatewayUrl), ...overrides });
  // With a capture, log everything (debug) so a test can prove what never reaches a log line.
  const logger = logs ? createLogger('test', 'debug', { destination: logs.stream }) : createLogger('test', 'silent');
  const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  installQuietRuntime();
  const nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const worker = await createSwitchboardWorker({
    config,
    connection: nativeConnection,
    pool: db.pool,
    keys,
    logger,
    workflowBundle: { code: readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8') },
  });
  const workerRun = worker.run();

  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  const app = createGatewayApp({ config, pool: db.pool, temporal: { client, connection }, codec, logger });
  handler = app.callback();

  return {
    config,
    keys,
    vault: new SecretVault(db.pool, keys),
    db,
    sandbox,
    client,
    gatewayUrl,
    worker,
    mail,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      worker.shutdown();
      await workerRun;
      await nativeConnection.close();
      await connection.close();
      await sandbox.close();
      await mail.close();
      await db.drop();
    },
  };
}

export function fixtureBytes(dir: string, name: string): Buffer {
  return readFileSync(`${dir}/${name}`);
}

/** Polls until `fn` returns a truthy value or the time is up (for eventually-consistent checks). */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** An API key with `role` for `tenantId` (null: a platform key, role operator); returns the key. */
export async function createTestApiKey(pool: Pool, tenantId: string | null, role: Role, name = `test-${role}`): Promise<string> {
  return (await createApiKey(pool, { tenantId, role, name, createdBy: 'cli:test' })).key;
}

/** A tenant user (or, with `tenantId` null, an operator) with a random email and this password. */
export async function createTestAccount(pool: Pool, tenantId: string | null, role: TenantRole | 'operator', password = 'a-long-test-password'): Promise<{ id: string; email: string; password: string }> {
  const email = `${role}-${randomBytes(4).toString('hex')}@example.test`;
  const created = tenantId === null ? await createOperator(pool, { email, password }) : await createTenantUser(pool, { tenantId, email, role: role as TenantRole, password });
  return { id: created.id, email, password };
}

/** Signs in over HTTP: the session cookie (`sb_session=…`) and its CSRF token. */
export async function signIn(gatewayUrl: string, email: string, password: string): Promise<{ cookie: string; csrfToken: string }> {
  const res = await fetch(`${gatewayUrl}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${await res.text()}`);
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0]!;
  return { cookie, csrfToken: ((await res.json()) as { csrfToken: string }).csrfToken };
}
