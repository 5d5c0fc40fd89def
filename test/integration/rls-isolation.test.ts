import { createPool, type Pool } from '../../src/db/pool';
import { platformTenantIds, withPlatform, withTenant } from '../../src/db/tenant-scope';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * Tenant A's scope never reaches tenant B: on a pool of ONE connection (every transaction reuses
 * the same server session), after commits, rollbacks and errors, and with the two interleaved.
 */

const A = '0a1b2c3d-0000-4000-8000-00000000000a';
const B = '0a1b2c3d-0000-4000-8000-00000000000b';

let db: TestDatabase;
let one: Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  one = createPool(db.url, 1);
  for (const [id, name] of [[A, 'Tenant A'], [B, 'Tenant B']] as const) {
    await withTenant(db.pool, id, async (tx) => {
      await tx.query('INSERT INTO tenants (id, name) VALUES ($1, $2)', [id, name]);
      await tx.query(`INSERT INTO products (tenant_id, sku, name) VALUES ($1, $2, $3)`, [id, `sku-${name}`, `${name} product`]);
    });
  }
});
afterAll(async () => {
  await one.end();
  await db.drop();
});

const productNames = (tenantId: string) => withTenant(one, tenantId, async (tx) => (await tx.query<{ name: string }>('SELECT name FROM products ORDER BY name')).rows.map((r) => r.name));
const sessionSetting = async () => (await one.query<{ v: string | null }>(`SELECT current_setting('app.tenant_id', true) AS v`)).rows[0]!.v;

it('each scope sees only its tenant, and nothing is left on the connection after commit', async () => {
  expect(await productNames(A)).toEqual(['Tenant A product']);
  expect(['', null]).toContain(await sessionSetting());
  expect(await productNames(B)).toEqual(['Tenant B product']);
  expect(['', null]).toContain(await sessionSetting());
  await expect(one.query('SELECT name FROM products')).rejects.toThrow(/no tenant scope/);
});

it('after a rollback (an error inside A) the next transaction on the same connection is not A', async () => {
  await expect(
    withTenant(one, A, async (tx) => {
      await tx.query('SELECT 1 FROM products');
      throw new Error('boom');
    }),
  ).rejects.toThrow('boom');
  expect(['', null]).toContain(await sessionSetting());
  expect(await productNames(B)).toEqual(['Tenant B product']);
});

it('after a failed statement inside A, B still sees only B', async () => {
  await expect(withTenant(one, A, (tx) => tx.query('SELECT no_such_column FROM products'))).rejects.toThrow(/no_such_column/);
  expect(await productNames(B)).toEqual(['Tenant B product']);
});

it('interleaved scopes queued on the one connection never mix', async () => {
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => productNames(i % 2 === 0 ? A : B)));
  results.forEach((names, i) => expect(names).toEqual([i % 2 === 0 ? 'Tenant A product' : 'Tenant B product']));
});

it('writes are checked too: A cannot insert or move a row into B', async () => {
  await expect(withTenant(one, A, (tx) => tx.query(`INSERT INTO products (tenant_id, sku, name) VALUES ($1, 'evil', 'planted')`, [B]))).rejects.toThrow(/row-level security/);
  const moved = await withTenant(one, A, (tx) => tx.query(`UPDATE products SET tenant_id = $1`, [B]).catch((e: Error) => e));
  expect(moved).toBeInstanceOf(Error);
  expect(String(moved)).toMatch(/row-level security/);
  const deleted = await withTenant(one, A, (tx) => tx.query(`DELETE FROM products WHERE tenant_id = $1`, [B]));
  expect(deleted.rowCount).toBe(0);
  expect(await productNames(B)).toEqual(['Tenant B product']);
});

it('the platform scope sees rows without a tenant and no tenant rows', async () => {
  const platform = await withPlatform(one, async (tx) => ({
    products: (await tx.query('SELECT 1 FROM products')).rowCount,
    tenants: (await tx.query('SELECT 1 FROM tenants')).rowCount,
  }));
  expect(platform).toEqual({ products: 0, tenants: 0 });
  // Only ids, through the allow-listed function.
  expect((await platformTenantIds(one)).filter((id) => id === A || id === B)).toEqual([A, B]);
});

it('withTenant refuses anything that is not a tenant id, before touching the database', async () => {
  await expect(withTenant(one, `${A}', true); SELECT set_config('app.tenant_id', '${B}`, async () => 1)).rejects.toThrow(/tenant id \(a UUID\)/);
  await expect(withTenant(one, 'platform', async () => 1)).rejects.toThrow(/tenant id/);
});
