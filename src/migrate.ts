import { z } from 'zod';
import { createPool } from './db/pool';
import { migrate, MIGRATIONS_DIR } from './db/migrate';

/**
 * One-shot migration entry: applies pending `migrations/*.sql` and exits. Used by the compose
 * stack's `migrate` service (`node dist/src/migrate.js`); in development
 * `node --import tsx src/migrate.ts`. Needs only DATABASE_URL, not the full configuration, so
 * it runs before (and without) the app's secrets.
 */

const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
});

function fail(message: string): never {
  process.stderr.write(`migrate failed: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const raw = process.env.DATABASE_URL;
  const parsed = envSchema.safeParse({ DATABASE_URL: raw === '' ? undefined : raw });
  if (!parsed.success) {
    fail(
      raw
        ? 'DATABASE_URL must be a postgres:// or postgresql:// URL'
        : 'DATABASE_URL is required (e.g. postgres://user:password@host:5432/switchboard)',
    );
  }
  const dir = MIGRATIONS_DIR;
  const pool = createPool(parsed.data.DATABASE_URL, 1);
  try {
    const applied = await migrate(pool, dir);
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
