import type { Pool } from 'pg';

export async function createTenant(pool: Pool, name: string): Promise<{ id: string }> {
  const { rows } = await pool.query<{ id: string }>('INSERT INTO tenants (name) VALUES ($1) RETURNING id', [name]);
  return { id: rows[0]!.id };
}

export async function tenantExists(pool: Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM tenants WHERE id = $1', [id]);
  return rowCount === 1;
}
