import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { roleHas, ROLES, TENANT_ROLES, type Role } from '../../src/auth/permissions';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { ADMIN_ROUTES, adminRoutes } from '../../src/gateway/admin-routes';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { createTestAccount, createTestApiKey, createTestDatabase, signIn, testConfig, type TestDatabase } from '../support/stack';

/**
 * The permission matrix walked over every admin route and the codec endpoint, with real
 * credentials of every role: allowed → neither 401 nor 403; denied → 403; tenant B's credentials
 * on tenant A's resources → 404, the same answer as for a resource that does not exist.
 * Requests carry bodies the routes refuse after the permission check (400/415), so an allowed
 * request changes nothing.
 */

type RouteSpec = (typeof ADMIN_ROUTES)[keyof typeof ADMIN_ROUTES];

let db: TestDatabase;
let config: Config;
let connection: Connection;
let client: Client;
let url: string;
let server: Server;
let vault: SecretVault;
const tenant = { a: '', b: '' };
let conversationA: string;
/** API keys: `keys.a[role]` for tenant A's roles, `keys.b[role]` for tenant B's, `keys.operator` a platform key. */
const keys: { a: Record<string, string>; b: Record<string, string>; operator: string } = { a: {}, b: {}, operator: '' };

function pathOf(route: RouteSpec, ids: { tenantId: string; conversationId: string }): string {
  return `/admin${route.path.replace(':tenantId', ids.tenantId).replace(':conversationId', ids.conversationId)}`;
}

/** A request the route refuses on its content once the permission check passed. */
function requestFor(route: RouteSpec, ids: { tenantId: string; conversationId: string }, headers: Record<string, string>): Promise<Response> {
  const init: RequestInit = { method: route.method, headers: { ...headers } };
  if (route.method !== 'GET') {
    const importing = route.path.endsWith('/products/import');
    init.headers = { ...headers, 'content-type': importing ? 'text/plain' : 'application/json' };
    init.body = importing ? 'not a catalog' : JSON.stringify({ notAField: true });
  }
  return fetch(`${url}${pathOf(route, ids)}`, init);
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

beforeAll(async () => {
  db = await createTestDatabase();
  config = testConfig({ DATABASE_URL: db.url, TEMPORAL_RPC_TIMEOUT_MS: '3000' });
  const keyProvider = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  vault = new SecretVault(db.pool, keyProvider);
  connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keyProvider);
  client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  const app = createGatewayApp({ config, pool: db.pool, temporal: { client, connection }, codec, vault, logger: createLogger('test', 'silent') });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  tenant.a = (await createTenant(db.pool, 'Tenant A')).id;
  tenant.b = (await createTenant(db.pool, 'Tenant B')).id;
  const channel = await connectChannel(db.pool, vault, { tenantId: tenant.a, platform: 'messenger', accountId: '104829376511821', accessToken: `EAAB${randomBytes(20).toString('hex')}` });
  // No workflow ever runs for it: the state route answers from the database.
  conversationA = (await db.ownerPool.query<{ id: string }>('INSERT INTO conversations (tenant_id, channel_id, customer_id) VALUES ($1, $2, $3) RETURNING id', [tenant.a, channel.id, '7291845503617725'])).rows[0]!.id;
  for (const role of TENANT_ROLES) {
    keys.a[role] = await createTestApiKey(db.pool, tenant.a, role);
    keys.b[role] = await createTestApiKey(db.pool, tenant.b, role);
  }
  keys.operator = await createTestApiKey(db.pool, null, 'operator');
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await connection.close();
  await db.drop();
});

it('declares a permission for every route the admin router has, and no route it lacks', async () => {
  const router = adminRoutes({ config, pool: db.pool, temporal: { client, connection }, vault, logger: createLogger('test', 'silent') });
  const registered = router.stack.flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} ${layer.path}`)).sort();
  const declared = Object.values(ADMIN_ROUTES).map((r) => `${r.method} /admin${r.path}`).sort();
  expect(registered).toEqual(declared);
});

describe.each(Object.entries(ADMIN_ROUTES))('%s', (_name, route) => {
  const ids = () => ({ tenantId: tenant.a, conversationId: conversationA });

  it('answers 401 without credentials', async () => {
    expect((await requestFor(route, ids(), {})).status).toBe(401);
  });

  it.each(ROLES)(`lets %s through exactly when the matrix grants ${route.permission}`, async (role: Role) => {
    const res = await requestFor(route, ids(), bearer(role === 'operator' ? keys.operator : keys.a[role]!));
    const body = await res.text();
    if (roleHas(role, route.permission)) {
      // 200 for a read; 400/415 for a change: the route itself refused the content.
      expect([401, 403, 404]).not.toContain(res.status);
      expect([route.method === 'GET' ? 200 : route.path.endsWith('/import') ? 415 : 400, body]).toEqual([res.status, body]);
    } else {
      expect(res.status).toBe(403);
      expect(JSON.parse(body)).toEqual({ error: { code: 'forbidden', message: `the role ${role} does not have the permission ${route.permission}` } });
    }
  });

  it.each(TENANT_ROLES)("answers 404 to tenant B's %s on tenant A's resource, exactly as for one that does not exist", async (role) => {
    const foreign = await requestFor(route, ids(), bearer(keys.b[role]!));
    expect(foreign.status).toBe(404);
    const missingId = randomUUID();
    const missing = await requestFor(route, { tenantId: missingId, conversationId: missingId }, bearer(keys.b[role]!));
    expect(missing.status).toBe(404);
    const foreignId = route.resource === 'tenant' ? tenant.a : conversationA;
    expect(await foreign.text()).toBe((await missing.text()).replace(missingId, foreignId));
  });
});

describe('codec endpoint', () => {
  const decode = (headers: Record<string, string>) =>
    fetch(`${url}/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ payloads: [] }) });

  it.each(ROLES)('lets %s decode exactly when the matrix grants payloads.decode', async (role: Role) => {
    const res = await decode(bearer(role === 'operator' ? keys.operator : keys.a[role]!));
    if (roleHas(role, 'payloads.decode')) expect(res.status).toBe(200);
    else {
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    }
  });

  it('lets a signed-in operator decode with the session cookie alone (the Temporal UI sends no CSRF header), and not a signed-in tenant owner', async () => {
    const op = await createTestAccount(db.pool, null, 'operator');
    const opSession = await signIn(url, op.email, op.password);
    expect((await decode({ cookie: opSession.cookie, origin: 'http://localhost:8233' })).status).toBe(200);
    const owner = await createTestAccount(db.pool, tenant.a, 'owner');
    const ownerSession = await signIn(url, owner.email, owner.password);
    expect((await decode({ cookie: ownerSession.cookie })).status).toBe(403);
  });
});

it('audits every denial: 403s in the denied tenant chain, cross-tenant 404s in the platform chain', async () => {
  const { rows } = await db.ownerPool.query<{ tenant_id: string | null; reason: string; actor_type: string; details: { permission?: string; resourceTenantId?: string } }>(
    `SELECT tenant_id, reason, actor_type, details FROM audit_events WHERE action = 'auth.denied'`,
  );
  const forbidden = rows.filter((r) => r.reason === 'permission_denied');
  const crossTenant = rows.filter((r) => r.reason === 'other_tenant');
  expect(forbidden.length).toBeGreaterThan(0);
  // In the chain of the caller's own tenant (B's callers asking for a resource that does not exist: B's).
  expect(forbidden.filter((r) => r.details.permission !== 'payloads.decode').every((r) => (r.tenant_id === tenant.a || r.tenant_id === tenant.b) && r.actor_type === 'api_key')).toBe(true);
  expect(crossTenant.length).toBe(Object.keys(ADMIN_ROUTES).length * TENANT_ROLES.length);
  expect(crossTenant.every((r) => r.tenant_id === null && r.details.resourceTenantId === tenant.a)).toBe(true);
  // Tenant A's chain never names tenant B, nor B's chain A.
  const { rows: chains } = await db.ownerPool.query<{ chain_id: string; text: string }>(`SELECT chain_id, row_to_json(audit_events)::text AS text FROM audit_events WHERE chain_id IN ($1, $2)`, [tenant.a, tenant.b]);
  expect(chains.filter((c) => c.chain_id === tenant.a && c.text.includes(tenant.b))).toEqual([]);
});

