import type { PoolClient } from 'pg';
import { createTestDatabase, TEST_APP_DB_USER, type TestDatabase } from '../support/stack';
import { withTenant } from '../../src/db/tenant-scope';

/**
 * The schema holds itself to the isolation rules of migrations/0008_row_level_security.sql. Each
 * lint is a query over the catalog; each is also run once against a deliberately broken object
 * (in a rolled-back transaction) to show it can fail.
 */

/** Tables that hold no tenant's data (platform tables). A new table must be classified here or get RLS. */
const PLATFORM_TABLES = ['audit_retention_settings', 'audit_verifications', 'graph_call_budgets', 'login_throttle', 'operators', 'retired_master_keys', 'schema_migrations', 'unrouted_events'];

/** The whole allow-list of SECURITY DEFINER functions (each returns ids / credential-check fields only). */
const SECURITY_DEFINER_ALLOW_LIST = [
  'audit_chain_ids',
  'audit_expired_epochs',
  'audit_purge_epoch',
  'auth_find_api_key',
  'auth_find_tenant_user',
  'auth_resolve_session',
  'conversation_tenant',
  'data_key_inventory',
  'platform_tenant_ids',
  'route_channel',
  'token_sweep_candidates',
];

/**
 * Functions that may set `app.tenant_id` (besides `app_tenant_id`, which only reads it): each enters
 * a chain's own scope and leaves none behind (migrations/0011_audit_append_scoped.sql).
 */
const SCOPE_ENTERING_ALLOW_LIST = ['audit_append_batch'];

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

type Q = Pick<PoolClient, 'query'>;

/** Tables with tenant data: a tenant_id or chain_id column, or the tenants table itself. */
async function tenantTables(c: Q): Promise<string[]> {
  const { rows } = await c.query<{ t: string }>(
    `SELECT DISTINCT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname IN ('tenant_id', 'chain_id') AND NOT a.attisdropped
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND (a.attname IS NOT NULL OR c.relname = 'tenants')
     ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

/** Tenant tables failing the rule: RLS enabled and forced, one policy for ALL commands with USING and WITH CHECK on the scope. */
async function rlsViolations(c: Q): Promise<string[]> {
  const { rows } = await c.query<{ t: string; problem: string }>(
    `WITH t AS (SELECT unnest($1::text[]) AS t)
     SELECT t.t, p.problem FROM t JOIN pg_class c ON c.relname = t.t AND c.relnamespace = 'public'::regnamespace,
       LATERAL (
         SELECT 'rls not enabled' AS problem WHERE NOT c.relrowsecurity
         UNION ALL SELECT 'rls not forced' WHERE NOT c.relforcerowsecurity
         UNION ALL SELECT 'no policy for ALL with USING and WITH CHECK on app_tenant_id()/app_audit_chain()'
          WHERE NOT EXISTS (
            SELECT 1 FROM pg_policies pp WHERE pp.schemaname = 'public' AND pp.tablename = t.t AND pp.cmd = 'ALL'
              AND pp.permissive = 'PERMISSIVE'
              AND pp.qual ~ 'app_(tenant_id|audit_chain)\\(\\)' AND pp.with_check ~ 'app_(tenant_id|audit_chain)\\(\\)')
         UNION ALL SELECT 'a second policy (policies are OR-ed: it could widen access)'
          WHERE (SELECT count(*) FROM pg_policies pp WHERE pp.schemaname = 'public' AND pp.tablename = t.t) > 1
       ) p ORDER BY 1`,
    [await tenantTables(c)],
  );
  return rows.map((r) => `${r.t}: ${r.problem}`);
}

async function unclassifiedTables(c: Q): Promise<string[]> {
  const tenant = new Set(await tenantTables(c));
  const { rows } = await c.query<{ t: string }>(`SELECT relname AS t FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1`);
  return rows.map((r) => r.t).filter((t) => !tenant.has(t) && !PLATFORM_TABLES.includes(t));
}

async function viewsWithoutSecurityInvoker(c: Q): Promise<string[]> {
  const { rows } = await c.query<{ v: string }>(
    `SELECT relname AS v FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm')
       AND NOT coalesce('security_invoker=true' = ANY (reloptions) OR 'security_invoker=on' = ANY (reloptions), false) ORDER BY 1`,
  );
  return rows.map((r) => r.v);
}

async function securityDefinerFunctions(c: Q): Promise<string[]> {
  const { rows } = await c.query<{ f: string }>(`SELECT DISTINCT proname AS f FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef ORDER BY 1`);
  return rows.map((r) => r.f);
}

/** Functions whose source names the scope setting (GUC names are case-insensitive), other than app_tenant_id. */
async function scopeEnteringFunctions(c: Q): Promise<string[]> {
  const { rows } = await c.query<{ f: string }>(
    `SELECT DISTINCT proname AS f FROM pg_proc
      WHERE pronamespace = 'public'::regnamespace AND strpos(lower(prosrc), 'app.tenant_id') > 0 AND proname <> 'app_tenant_id' ORDER BY 1`,
  );
  return rows.map((r) => r.f);
}

/** Runs `fn` in a transaction of the owner that is always rolled back. */
async function inRolledBack<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await db.ownerPool.connect();
  try {
    await c.query('BEGIN');
    return await fn(c);
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

describe('catalog lint', () => {
  it('every tenant table has row-level security enabled and forced, with one policy checking reads and writes', async () => {
    const tables = await tenantTables(db.ownerPool);
    expect(tables).toEqual(expect.arrayContaining(['channels', 'conversations', 'messages', 'products', 'tenant_data_keys', 'tenants', 'audit_events', 'sessions', 'api_keys']));
    expect(await rlsViolations(db.ownerPool)).toEqual([]);
  });

  it('catches a tenant table without forced RLS, and one with an extra permissive policy', async () => {
    const found = await inRolledBack(async (c) => {
      await c.query('ALTER TABLE products NO FORCE ROW LEVEL SECURITY');
      await c.query('CREATE POLICY open_door ON messages USING (true)');
      return rlsViolations(c);
    });
    expect(found).toEqual(['messages: a second policy (policies are OR-ed: it could widen access)', 'products: rls not forced']);
  });

  it('every other table is a named platform table (a new table must choose)', async () => {
    expect(await unclassifiedTables(db.ownerPool)).toEqual([]);
    const found = await inRolledBack(async (c) => {
      await c.query('CREATE TABLE notes (id int)');
      return unclassifiedTables(c);
    });
    expect(found).toEqual(['notes']);
  });

  it('no view without security_invoker', async () => {
    expect(await viewsWithoutSecurityInvoker(db.ownerPool)).toEqual([]);
    const found = await inRolledBack(async (c) => {
      await c.query('CREATE VIEW leaky AS SELECT id FROM channels');
      await c.query('CREATE VIEW careful WITH (security_invoker = true) AS SELECT id FROM channels');
      return viewsWithoutSecurityInvoker(c);
    });
    expect(found).toEqual(['leaky']);
  });

  it('SECURITY DEFINER functions are exactly the allow-list', async () => {
    expect(await securityDefinerFunctions(db.ownerPool)).toEqual(SECURITY_DEFINER_ALLOW_LIST);
    const found = await inRolledBack(async (c) => {
      await c.query('CREATE FUNCTION sneaky() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM messages $$');
      return securityDefinerFunctions(c);
    });
    expect(found).toContain('sneaky');
  });

  it('only allow-listed functions enter a scope', async () => {
    expect(await scopeEnteringFunctions(db.ownerPool)).toEqual(SCOPE_ENTERING_ALLOW_LIST);
    const found = await inRolledBack(async (c) => {
      await c.query(`CREATE FUNCTION widen(p_tenant uuid) RETURNS void LANGUAGE sql AS $$ SELECT set_config('App.Tenant_Id', p_tenant::text, true) $$`);
      return scopeEnteringFunctions(c);
    });
    expect(found).toEqual([...SCOPE_ENTERING_ALLOW_LIST, 'widen']);
  });

  it('each allow-listed function pins its search_path and is not executable by PUBLIC', async () => {
    const { rows } = await db.ownerPool.query<{ f: string; config: string[] | null; public_exec: boolean }>(
      `SELECT proname AS f, proconfig AS config,
              has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
         FROM pg_proc p WHERE pronamespace = 'public'::regnamespace AND prosecdef`,
    );
    for (const r of rows) {
      expect({ f: r.f, searchPath: (r.config ?? []).find((c) => c.startsWith('search_path=')) }).toEqual({ f: r.f, searchPath: 'search_path=public, pg_temp' });
    }
    expect(rows.filter((r) => r.public_exec).map((r) => r.f)).toEqual([]);
  });

  it('a lookup that finds nothing returns no row, never a row of NULLs (a NULL session would be a principal)', async () => {
    const { rows: single } = await db.ownerPool.query<{ f: string }>(
      `SELECT proname AS f FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef AND NOT proretset AND 'o' = ANY (coalesce(proargmodes, '{}'::"char"[]))`,
    );
    // audit_purge_epoch is an action, not a lookup: it always answers with its outcome's status.
    expect(single.map((r) => r.f)).toEqual(['audit_purge_epoch']);
    const none = async (sql: string, params: unknown[]) => (await db.pool.query(sql, params)).rowCount;
    expect(await none('SELECT * FROM route_channel($1, $2)', ['messenger', '1'])).toBe(0);
    expect(await none('SELECT * FROM auth_find_tenant_user($1)', ['nobody@example.com'])).toBe(0);
    expect(await none('SELECT * FROM auth_resolve_session($1, 1e9, 1e9)', [Buffer.alloc(32)])).toBe(0);
    expect(await none('SELECT * FROM auth_find_api_key($1, 1e9)', ['000000000000'])).toBe(0);
  });

  it('the app role owns nothing, cannot create, has no BYPASSRLS, and its login role inherits only it', async () => {
    const { rows: roles } = await db.ownerPool.query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
      `SELECT rolname, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname IN ('switchboard_app', $1) ORDER BY 1`,
      [TEST_APP_DB_USER],
    );
    expect(roles).toHaveLength(2);
    for (const r of roles) expect(r).toEqual({ rolname: r.rolname, rolsuper: false, rolbypassrls: false, rolcreatedb: false, rolcreaterole: false });

    const { rows: owned } = await db.ownerPool.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM pg_class WHERE relowner IN (SELECT oid FROM pg_roles WHERE rolname IN ('switchboard_app', $1)))
            + (SELECT count(*) FROM pg_proc WHERE proowner IN (SELECT oid FROM pg_roles WHERE rolname IN ('switchboard_app', $1)))
            + (SELECT count(*) FROM pg_namespace WHERE nspowner IN (SELECT oid FROM pg_roles WHERE rolname IN ('switchboard_app', $1))) AS n`,
      [TEST_APP_DB_USER],
    );
    expect(Number(owned[0]!.n)).toBe(0);

    const { rows: privs } = await db.pool.query<{ create_schema: boolean; create_db: boolean; truncate_any: boolean }>(
      `SELECT has_schema_privilege('public', 'CREATE') AS create_schema,
              has_database_privilege(current_database(), 'CREATE') AS create_db,
              EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND has_table_privilege(oid, 'TRUNCATE')) AS truncate_any`,
    );
    expect(privs[0]).toEqual({ create_schema: false, create_db: false, truncate_any: false });
    await expect(db.pool.query('CREATE TABLE mine (id int)')).rejects.toThrow(/permission denied/);
    await expect(db.pool.query('ALTER TABLE channels DISABLE ROW LEVEL SECURITY')).rejects.toThrow(/must be owner/);
  });
});

describe('outside a scope', () => {
  it('a query on a tenant table fails loudly instead of returning nothing', async () => {
    const tenantId = '7f9d3b52-6f0e-4b8f-9a52-0a6c2d1e4f10';
    await withTenant(db.pool, tenantId, (tx) => tx.query(`INSERT INTO tenants (id, name) VALUES ($1, 'Scoped')`, [tenantId]));
    await expect(db.pool.query('SELECT * FROM tenants')).rejects.toThrow(/no tenant scope/);
    await expect(db.pool.query(`INSERT INTO products (tenant_id, sku, name) VALUES ($1, 'x', 'y')`, [tenantId])).rejects.toThrow(/no tenant scope/);
    // The empty string the setting reads back as after a transaction is no scope either.
    const c = await db.pool.connect();
    try {
      await c.query(`BEGIN; SELECT set_config('app.tenant_id', '', true)`);
      await expect(c.query('SELECT * FROM tenants')).rejects.toThrow(/no tenant scope/);
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  });
});
