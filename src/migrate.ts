import { z } from 'zod';
import { ensureAppLoginRole } from './db/app-role';
import { createPool } from './db/pool';
import { migrate, MIGRATIONS_DIR } from './db/migrate';

/**
 * One-shot migration entry: applies pending `migrations/*.sql` and exits. Used by the compose
 * stack's `migrate` service (`node dist/src/migrate.js`); in development
 * `node --import tsx src/migrate.ts`. Needs only DATABASE_URL (the schema OWNER's URL), not the
 * full configuration, so it runs before (and without) the app's secrets. With APP_DB_USER and
 * APP_DB_USER_PASSWORD it also creates or updates the login role the gateway and worker use (a
 * member of switchboard_app: data privileges only, append-only on the audit log).
 */

const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
  APP_DB_USER: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case PostgreSQL role name').optional(),
  APP_DB_USER_PASSWORD: z.string().min(12, 'must be at least 12 characters').optional(),
});

function fail(message: string): never {
  process.stderr.write(`migrate failed: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const env = (name: string) => (process.env[name] === '' ? undefined : process.env[name]);
  const raw = env('DATABASE_URL');
  const parsed = envSchema.safeParse({ DATABASE_URL: raw, APP_DB_USER: env('APP_DB_USER'), APP_DB_USER_PASSWORD: env('APP_DB_USER_PASSWORD') });
  if (!parsed.success) {
    fail(
      parsed.error.issues
        .map((i) => (i.path[0] === 'DATABASE_URL' ? (raw ? 'DATABASE_URL must be a postgres:// or postgresql:// URL' : 'DATABASE_URL is required (the schema owner, e.g. postgres://owner:password@host:5432/switchboard)') : `${String(i.path[0])}: ${i.message}`))
        .join('; '),
    );
  }
  const { APP_DB_USER: appUser, APP_DB_USER_PASSWORD: appPassword } = parsed.data;
  if (Boolean(appUser) !== Boolean(appPassword)) fail('APP_DB_USER and APP_DB_USER_PASSWORD go together');
  const dir = MIGRATIONS_DIR;
  const pool = createPool(parsed.data.DATABASE_URL, 1);
  try {
    const applied = await migrate(pool, dir);
    if (appUser && appPassword) await ensureAppLoginRole(pool, appUser, appPassword);
    process.stdout.write(
      applied.length === 0
        ? `migrations (${dir}): database is up to date\n`
        : `migrations applied (${dir}):\n${applied.map((f) => `  ${f}\n`).join('')}`,
    );
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/** pg's connection errors can be AggregateErrors with an empty message; fall back to the code. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return err.message || (typeof code === 'string' ? code : err.name);
}

main().then(
  () => process.exit(0),
  (err: unknown) => fail(describe(err)),
);
