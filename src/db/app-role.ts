import type { Pool } from 'pg';

/** The group role migrations grant privileges to (migrations/0003_app_role.sql). */
export const APP_GROUP_ROLE = 'switchboard_app';

/**
 * Creates (or updates the password of) the LOGIN role the application connects as, a member of
 * `switchboard_app`, and lets it connect to the current database. Run as the schema owner by
 * `npm start`, the test harness and the production migrate job; never by the app itself.
 */
export async function ensureAppLoginRole(ownerPool: Pool, user: string, password: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(user)) throw new Error(`invalid role name ${JSON.stringify(user)}`);
  // Roles belong to the cluster: two databases set up at once (parallel test files, two migrate
  // jobs) update the same pg_authid row, and the loser gets "tuple concurrently updated". Every
  // statement below is idempotent, so the loser simply runs them again.
  for (let attempt = 1; ; attempt++) {
    try {
      await ensureOnce(ownerPool, user, password);
      return;
    } catch (err) {
      if (attempt >= 5 || !/tuple concurrently (updated|deleted)/.test((err as Error).message)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
}

async function ensureOnce(ownerPool: Pool, user: string, password: string): Promise<void> {
  const client = await ownerPool.connect();
  try {
    const quotedPassword = (await client.query<{ q: string }>('SELECT quote_literal($1) AS q', [password])).rows[0]!.q;
    await client.query(`
      DO $$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${user}') THEN
          CREATE ROLE ${user} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT IN ROLE ${APP_GROUP_ROLE} PASSWORD ${quotedPassword};
        ELSE
          ALTER ROLE ${user} LOGIN PASSWORD ${quotedPassword};
        END IF;
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- created concurrently by another database's set-up: same cluster, same role
      END $$`);
    await client.query(`GRANT ${APP_GROUP_ROLE} TO ${user}`);
    const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
    await client.query(`GRANT CONNECT ON DATABASE "${db.replace(/"/g, '""')}" TO ${user}`);
  } finally {
    client.release();
  }
}

/** The same URL with another user and password. */
export function withCredentials(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}
