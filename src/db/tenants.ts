import type { Pool } from 'pg';
import { withTransaction } from './pool';

export async function createTenant(pool: Pool, name: string): Promise<{ id: string }> {
  const { rows } = await pool.query<{ id: string }>('INSERT INTO tenants (name) VALUES ($1) RETURNING id', [name]);
  return { id: rows[0]!.id };
}

export async function tenantExists(pool: Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM tenants WHERE id = $1', [id]);
  return rowCount === 1;
}

/**
 * Deletes a tenant and everything it owns. The data keys go first, in the same transaction:
 * even a backup taken before this point holds only ciphertext that nothing can decrypt once the
 * keys are gone (crypto-shredding). Callers evict the tenant from any in-memory key cache.
 */
export async function deleteTenant(pool: Pool, id: string): Promise<{ deleted: boolean; dataKeysDestroyed: number }> {
  return withTransaction(pool, async (client) => {
    const keys = await client.query('DELETE FROM tenant_data_keys WHERE tenant_id = $1', [id]);
    const tenant = await client.query('DELETE FROM tenants WHERE id = $1', [id]);
    return { deleted: tenant.rowCount === 1, dataKeysDestroyed: keys.rowCount ?? 0 };
  });
}
