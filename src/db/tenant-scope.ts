import { Pool, type PoolClient } from 'pg';

/**
 * The one place a tenant is chosen for the database (migrations/0008_row_level_security.sql).
 * Every table holding tenant data has row-level security ENABLED and FORCED with policies on
 * `app_tenant_id()`, which reads the transaction-local setting `app.tenant_id`; a query on such a
 * table outside `withTenant` / `withPlatform` raises instead of silently returning nothing.
 *
 * The setting is made with `set_config(…, true)`, so it dies with the transaction: a pooled
 * connection handed to the next caller carries no tenant (test/integration/rls-isolation.test.ts
 * checks this on a pool of one).
 *
 * `withPlatform` is the platform's own scope: rows without a tenant (operator sessions, platform
 * API keys, the platform audit chain). It sees no tenant's rows; cross-tenant jobs list tenant ids
 * through the allow-listed `platform_tenant_ids()` and then work inside `withTenant` per tenant.
 */

export const PLATFORM_SCOPE = 'platform';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type Queryable = Pick<Pool | PoolClient, 'query'>;

/** A tenant id, a well-formed UUID — or the error that names the bad value's shape, never the value. */
export function assertTenantId(tenantId: string): string {
  if (typeof tenantId !== 'string' || !UUID.test(tenantId)) throw new TypeError('withTenant needs a tenant id (a UUID)');
  return tenantId.toLowerCase();
}

async function inScope<T>(pool: Pool, scope: string, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    // One round trip for both: the scope is a validated UUID or the constant, never caller text.
    await client.query(`BEGIN; SELECT set_config('app.tenant_id', '${scope}', true)`);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Runs `fn` in one transaction that sees and writes only `tenantId`'s rows. */
export async function withTenant<T>(pool: Pool, tenantId: string, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
  return inScope(pool, assertTenantId(tenantId), fn);
}

/** Runs `fn` in one transaction that sees only rows without a tenant (the platform's own). */
export function withPlatform<T>(pool: Pool, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
  return inScope(pool, PLATFORM_SCOPE, fn);
}

/** `withTenant` for a tenant id, `withPlatform` for null: where an audit event or a credential row belongs. */
export function withScope<T>(pool: Pool, tenantId: string | null, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
  return tenantId === null ? withPlatform(pool, fn) : withTenant(pool, tenantId, fn);
}

/** Every tenant's id (through the allow-listed SECURITY DEFINER function; ids only, no data). */
export async function platformTenantIds(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM platform_tenant_ids() AS t(id) ORDER BY id');
  return rows.map((r) => r.id);
}

/**
 * For helpers callable both with the pool and inside a caller's scope: given the pool, runs `fn`
 * in its own `withTenant`; given a client (the caller's scope), uses it as is.
 */
export function inTenant<T>(db: Pool | Queryable, tenantId: string, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db instanceof Pool ? withTenant(db, tenantId, fn) : fn(db);
}
