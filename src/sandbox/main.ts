import { z } from 'zod';
import { oauthAppsFromConfig, startGraphSandbox } from './graph-sandbox';

/**
 * Runs the Graph API sandbox on its own for the dev stack and benchmarks:
 *   node --import tsx src/sandbox/main.ts
 * Reads only its own variables, so it starts without the database/Temporal/Meta secrets that
 * src/config.ts requires. Echoes of accepted messages are delivered, signed with META_APP_SECRET,
 * to GRAPH_SANDBOX_ECHO_WEBHOOK_URL (e.g. http://127.0.0.1:3000/webhooks/meta) when it is set,
 * GRAPH_SANDBOX_ECHO_DELAY_MS after the send. The OAuth dialogs and token endpoints know the apps
 * the stack is configured with (META_APP_ID / META_APP_SECRET, INSTAGRAM_APP_ID /
 * INSTAGRAM_APP_SECRET, else META_APP_SECRET); an unset id means the sandbox's default app id.
 */

// An exported-but-empty variable (`GRAPH_SANDBOX_PORT=`) means "use the default", not port 0.
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);

const envSchema = z.object({
  GRAPH_SANDBOX_HOST: z.preprocess(unsetIfEmpty, z.string().min(1).default('127.0.0.1')),
  GRAPH_SANDBOX_PORT: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(65535).default(3900)),
  GRAPH_SANDBOX_LATENCY_MS: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(600_000).default(0)),
  GRAPH_SANDBOX_ECHO_WEBHOOK_URL: z.preprocess(unsetIfEmpty, z.url({ protocol: /^https?$/ }).optional()),
  GRAPH_SANDBOX_ECHO_DELAY_MS: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(600_000).default(0)),
  META_APP_SECRET: z.preprocess(unsetIfEmpty, z.string().min(8).optional()),
  META_APP_ID: z.preprocess(unsetIfEmpty, z.string().regex(/^\d{1,32}$/, 'must be the numeric Meta app id').optional()),
  INSTAGRAM_APP_ID: z.preprocess(unsetIfEmpty, z.string().regex(/^\d{1,32}$/, 'must be the numeric Instagram app id').optional()),
  INSTAGRAM_APP_SECRET: z.preprocess(unsetIfEmpty, z.string().min(8).optional()),
}).refine((env) => env.GRAPH_SANDBOX_ECHO_WEBHOOK_URL === undefined || env.META_APP_SECRET !== undefined, {
  message: 'META_APP_SECRET is required to sign echoes when GRAPH_SANDBOX_ECHO_WEBHOOK_URL is set',
  path: ['META_APP_SECRET'],
});

async function main(): Promise<void> {
  const env = envSchema.safeParse(process.env);
  if (!env.success) {
    const problems = env.error.issues.map((i) => `  - ${i.path.join('.')}: ${i.message}`).join('\n');
    process.stderr.write(`graph sandbox: invalid environment:\n${problems}\n`);
    process.exitCode = 1;
    return;
  }

  const sandbox = await startGraphSandbox({
    host: env.data.GRAPH_SANDBOX_HOST,
    port: env.data.GRAPH_SANDBOX_PORT,
    latencyMs: env.data.GRAPH_SANDBOX_LATENCY_MS,
    oauthApps: oauthAppsFromConfig(env.data),
    ...(env.data.GRAPH_SANDBOX_ECHO_WEBHOOK_URL &&
      env.data.META_APP_SECRET && {
        echo: { webhookUrl: env.data.GRAPH_SANDBOX_ECHO_WEBHOOK_URL, appSecret: env.data.META_APP_SECRET, delayMs: env.data.GRAPH_SANDBOX_ECHO_DELAY_MS },
      }),
  });
  process.stdout.write(`graph sandbox listening on ${sandbox.url}\n`);
  const apps = sandbox.oauthState().apps.map((a) => `${a.platform} ${a.appId}`).join(', ');
  process.stdout.write(`graph sandbox: OAuth dialogs at ${sandbox.url}/v23.0/dialog/oauth and ${sandbox.url}/oauth/authorize (apps: ${apps})\n`);
  if (env.data.GRAPH_SANDBOX_ECHO_WEBHOOK_URL) process.stdout.write(`graph sandbox: echoes go to ${env.data.GRAPH_SANDBOX_ECHO_WEBHOOK_URL}\n`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second Ctrl-C means the operator does not want to wait for the graceful close.
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(`graph sandbox: ${signal} received, closing\n`);
    sandbox.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`graph sandbox: close failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`graph sandbox: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
