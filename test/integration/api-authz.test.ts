import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { allApiRoutes } from '../../src/api/routes';
import type { ApiRoute } from '../../src/api/define';
import { createApiKey } from '../../src/auth/api-keys';
import { can, ROLES, TENANT_ROLES, type Role } from '../../src/auth/permissions';
import { createSession } from '../../src/auth/sessions';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { createTestAccount, createTestApiKey, createTestDatabase, testConfig, type TestDatabase } from '../support/stack';

/**
 * The permission matrix walked over EVERY /api/v1 route (`allApiRoutes`, whatever modules it
 * holds), with real API keys of every role against real resources:
 *  - no credential → 401;
 *  - a role the matrix grants the route's permission (for tenant routes: on its own tenant; for
 *    platform routes: platform-wide, i.e. operators) → 2xx, or 400 when the request carries a body
 *    the route refuses on purpose (so an allowed change changes nothing); otherwise → 403;
 *  - tenant A's credentials on tenant B's resources → 404 for tenant routes, exactly the answer
 *    for a tenant that does not exist; 403 for platform routes (those any principal may call must
 *    not show tenant B).
 * DELETE routes are allowed to act: each allowed request deletes a fresh resource made for it.
 */

type Ids = Record<string, string>;
type TenantFixture = { tenantId: string; userId: string; keyId: string; sessionId: string; channelId: string; conversationId: string };

let db: TestDatabase;
let config: Config;
let connection: Connection;
let client: Client;
let vault: SecretVault;
let url: string;
let server: Server;
let routes: ApiRoute[];
const fx: { a: TenantFixture; b: TenantFixture } = { a: {} as TenantFixture, b: {} as TenantFixture };
let platformKeyId: string;
/** `keys.a[role]`: tenant A's key of that role; `keys.operator`: a platform key. */
const keys: { a: Record<string, string>; b: Record<string, string>; operator: string } = { a: {}, b: {}, operator: '' };
const lifetimes = { idleMs: 3_600_000, absoluteMs: 86_400_000 };

async function tenantFixture(name: string, accountId: string): Promise<TenantFixture> {
  const tenantId = (await createTenant(db.pool, name)).id;
  const channelId = (await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId, accessToken: `EAAB${randomBytes(16).toString('hex')}` })).id;
  const conversationId = (
    await db.ownerPool.query<{ id: string }>('INSERT INTO conversations (tenant_id, channel_id, customer_id) VALUES ($1, $2, $3) RETURNING id', [tenantId, channelId, `72918455036${accountId.slice(-5)}`])
  ).rows[0]!.id;
  const user = await createTestAccount(db.pool, tenantId, 'viewer');
  const session = await createSession(db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes });
  const key = await createApiKey(db.pool, { tenantId, role: 'viewer', name: 'fixture', createdBy: 'cli:test' });
  return { tenantId, userId: user.id, keyId: key.id, sessionId: session.id, channelId, conversationId };
}

const pathParams = (route: ApiRoute): string[] => [...route.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
const fill = (route: ApiRoute, ids: Ids) => `/api/v1${route.path.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => ids[name]!)}`;

/** The ids a request uses: tenant A's fixtures (platform keys for platform routes), a random UUID for a parameter nobody made a fixture for. */
function baseIds(route: ApiRoute, t: TenantFixture): Ids {
  const ids: Ids = {};
  for (const name of pathParams(route)) {
    if (name === 'keyId' && route.scope === 'platform') ids[name] = platformKeyId;
    else ids[name] = (t as unknown as Ids)[name] ?? randomUUID();
  }
  return ids;
}

/** For an allowed DELETE: a fresh resource of the kind the last path parameter names, so deleting it harms no other check. */
async function freshIds(route: ApiRoute, role: Role, ids: Ids): Promise<Ids> {
  const last = pathParams(route).at(-1);
  const tenantId = ids.tenantId ?? fx.a.tenantId;
  switch (last) {
    case 'tenantId':
      // A tenant credential only ever names its own tenant: it must never be allowed to delete it.
      if (role !== 'operator') throw new Error(`${route.id}: ${role} would delete its own tenant`);
      return { ...ids, tenantId: (await createTenant(db.pool, `Fresh ${randomUUID().slice(0, 8)}`)).id };
    case 'userId':
      return { ...ids, userId: (await createTestAccount(db.pool, tenantId, 'viewer')).id };
    case 'keyId':
      return { ...ids, keyId: (await createApiKey(db.pool, route.scope === 'platform' ? { tenantId: null, role: 'operator', name: 'fresh', createdBy: 'cli:test' } : { tenantId, role: 'viewer', name: 'fresh', createdBy: 'cli:test' })).id };
    case 'sessionId':
      return { ...ids, sessionId: (await createSession(db.pool, { kind: 'tenant_user', userId: fx.a.userId, tenantId }, { lifetimes })).id };
    default:
      return ids;
  }
}

/** A request the route refuses on its content once the guard let it through (400), or a read. */
function send(route: ApiRoute, path: string, headers: Record<string, string>): Promise<Response> {
  const init: RequestInit = { method: route.method, headers: { ...headers } };
  if (route.body) {
    init.headers = { ...headers, 'content-type': 'application/json' };
    init.body = JSON.stringify({ __notAField: true });
  }
  return fetch(`${url}${path}`, init);
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const keyOf = (role: Role) => (role === 'operator' ? keys.operator : keys.a[role]!);

/** What the matrix says: the permission on tenant A (tenant routes) or platform-wide (platform routes). */
const allowedFor = (route: ApiRoute, role: Role) =>
  route.anyPrincipal === true || can({ role, tenantId: role === 'operator' ? null : fx.a.tenantId }, route.permission, route.scope === 'tenant' ? fx.a.tenantId : undefined);

beforeAll(async () => {
  db = await createTestDatabase();
  config = testConfig({ DATABASE_URL: db.url });
  const keyProvider = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  vault = new SecretVault(db.pool, keyProvider);
  connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keyProvider);
  client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  const logger = createLogger('test', 'silent');
  const app = createGatewayApp({ config, pool: db.pool, temporal: { client, connection }, codec, vault, logger });
  routes = allApiRoutes({ config, pool: db.pool, vault, temporal: { client, connection }, logger });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  fx.a = await tenantFixture('Authz A', '104829376511901');
  fx.b = await tenantFixture('Authz B', '104829376511902');
  for (const role of TENANT_ROLES) {
    keys.a[role] = await createTestApiKey(db.pool, fx.a.tenantId, role);
    keys.b[role] = await createTestApiKey(db.pool, fx.b.tenantId, role);
  }
  keys.operator = await createTestApiKey(db.pool, null, 'operator');
  platformKeyId = (await createApiKey(db.pool, { tenantId: null, role: 'operator', name: 'fixture', createdBy: 'cli:test' })).id;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await connection.close();
  await db.drop();
});

it('walks a non-trivial route list: every tenant route starts with /tenants/:tenantId, every platform route does not', () => {
  const probe = allApiRoutes({ config: testConfig(), pool: db.pool, vault, temporal: { client, connection }, logger: createLogger('test', 'silent') });
  expect(probe.length).toBeGreaterThanOrEqual(20);
  for (const r of probe) expect([r.id, r.scope === 'tenant']).toEqual([r.id, r.path.startsWith('/tenants/:tenantId')]);
});

// The route list is only known once the app's dependencies exist: one test per route walks it.
describe('every /api/v1 route', () => {
  it('answers 401 without a credential', async () => {
    for (const route of routes) {
      const res = await send(route, fill(route, baseIds(route, fx.a)), {});
      expect([route.id, res.status]).toEqual([route.id, 401]);
    }
  });

  it.each(ROLES)('lets %s through exactly when the matrix grants the permission', async (role: Role) => {
    for (const route of routes) {
      let ids = baseIds(route, fx.a);
      const allowed = allowedFor(route, role);
      if (allowed && route.method === 'DELETE') ids = await freshIds(route, role, ids);
      const res = await send(route, fill(route, ids), bearer(keyOf(role)));
      const body = await res.text();
      const label = `${route.method} ${route.path} as ${role}`;
      if (allowed) {
        const unknownParam = pathParams(route).some((p) => !(p in fx.a) && !(p === 'keyId' && route.scope === 'platform'));
        const expected = route.body ? [400] : unknownParam ? [200, 201, 202, 204, 404] : [200, 201, 202, 204];
        expect([label, expected.includes(res.status) ? 'as expected' : `${res.status} ${body}`]).toEqual([label, 'as expected']);
      } else {
        expect([label, res.status, JSON.parse(body).error.code]).toEqual([label, 403, 'forbidden']);
      }
    }
  });

  it.each(TENANT_ROLES)("answers tenant A's %s 404 on tenant B's resources (as for a tenant that does not exist), 403 on platform routes", async (role) => {
    for (const route of routes) {
      const label = `${route.method} ${route.path}`;
      const foreign = await send(route, fill(route, baseIds(route, fx.b)), bearer(keys.a[role]!));
      const foreignBody = await foreign.text();
      if (route.scope === 'tenant') {
        const missingId = randomUUID();
        const missing = await send(route, fill(route, { ...baseIds(route, fx.b), tenantId: missingId }), bearer(keys.a[role]!));
        expect([label, foreign.status]).toEqual([label, 404]);
        expect([label, foreignBody]).toEqual([label, (await missing.text()).replace(missingId, fx.b.tenantId)]);
      } else if (route.anyPrincipal) {
        expect([label, foreign.status < 300, foreignBody.includes(fx.b.tenantId)]).toEqual([label, true, false]);
      } else {
        expect([label, foreign.status]).toEqual([label, 403]);
      }
    }
  });
});

it("audits the cross-tenant refusals in the platform chain, never in tenant A's", async () => {
  const tenantRoutes = routes.filter((r) => r.scope === 'tenant').length;
  const { rows } = await db.ownerPool.query<{ tenant_id: string | null; details: { resourceTenantId?: string; principalTenantId?: string } }>(
    `SELECT tenant_id, details FROM audit_events WHERE action = 'auth.denied' AND reason = 'other_tenant'`,
  );
  expect(rows.length).toBe(tenantRoutes * TENANT_ROLES.length);
  expect(rows.every((r) => r.tenant_id === null && r.details.resourceTenantId === fx.b.tenantId && r.details.principalTenantId === fx.a.tenantId)).toBe(true);
  const { rows: leaked } = await db.ownerPool.query(`SELECT 1 FROM audit_events WHERE chain_id = $1 AND row_to_json(audit_events)::text LIKE '%' || $2 || '%'`, [fx.a.tenantId, fx.b.tenantId]);
  expect(leaked).toEqual([]);
});
