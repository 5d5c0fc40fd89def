import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { platformTenantIds, withTenant } from './tenant-scope';

/**
 * Tenant lifecycle. `tenants` has row-level security keyed on its own id: each tenant's row is
 * read and written only inside that tenant's `withTenant`, so the id is chosen here (not by the
 * column default) before the row exists.
 */

export interface TenantSummary {
  id: string;
  name: string;
  createdAt: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Anything that is not a UUID names no tenant (and must not reach `withTenant`, which throws). */
const isTenantId = (id: string): boolean => typeof id === 'string' && UUID.test(id);

/** Reads per tenant at once when listing: enough to overlap round trips, few enough to leave the pool to others. */
const LIST_CONCURRENCY = 4;

export async function createTenant(pool: Pool, name: string): Promise<{ id: string }> {
  const id = randomUUID();
  await withTenant(pool, id, (tx) => tx.query('INSERT INTO tenants (id, name) VALUES ($1, $2)', [id, name]));
  return { id };
}

export async function tenantExists(pool: Pool, id: string): Promise<boolean> {
  if (!isTenantId(id)) return false;
  const { rowCount } = await withTenant(pool, id, (tx) => tx.query('SELECT 1 FROM tenants WHERE id = $1', [id]));
  return rowCount === 1;
}

/** One tenant, or null when there is none with that id. */
export async function getTenant(pool: Pool, id: string): Promise<TenantSummary | null> {
  if (!isTenantId(id)) return null;
  const { rows } = await withTenant(pool, id, (tx) =>
    tx.query<{ id: string; name: string; created_at: Date }>('SELECT id, name, created_at FROM tenants WHERE id = $1', [id]),
  );
  const r = rows[0];
  return r ? { id: r.id, name: r.name, createdAt: r.created_at } : null;
}

/**
 * Every tenant, oldest first: the ids through the allow-listed `platform_tenant_ids()`, then each
 * tenant's row inside its own scope. A tenant deleted between the two steps is left out.
 */
export async function listTenants(pool: Pool): Promise<TenantSummary[]> {
  const ids = await platformTenantIds(pool);
  const tenants: TenantSummary[] = [];
  for (let i = 0; i < ids.length; i += LIST_CONCURRENCY) {
    const found = await Promise.all(ids.slice(i, i + LIST_CONCURRENCY).map((id) => getTenant(pool, id)));
    for (const t of found) if (t) tenants.push(t);
  }
  return tenants.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * Deletes a tenant and everything it owns. The data keys go first, in the same transaction:
 * even a backup taken before this point holds only ciphertext that nothing can decrypt once the
 * keys are gone (crypto-shredding). Callers evict the tenant from any in-memory key cache.
 */
export async function deleteTenant(pool: Pool, id: string): Promise<{ deleted: boolean; dataKeysDestroyed: number }> {
  if (!isTenantId(id)) return { deleted: false, dataKeysDestroyed: 0 };
  return withTenant(pool, id, async (tx) => {
    const keys = await tx.query('DELETE FROM tenant_data_keys WHERE tenant_id = $1', [id]);
    const tenant = await tx.query('DELETE FROM tenants WHERE id = $1', [id]);
    return { deleted: tenant.rowCount === 1, dataKeysDestroyed: keys.rowCount ?? 0 };
  });
}
