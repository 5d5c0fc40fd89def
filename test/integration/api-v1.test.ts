import { randomUUID } from 'node:crypto';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createTestAccount, createTestApiKey, eventually, signIn, startTestStack, type TestStack } from '../support/stack';
import { PAGE_A, postWebhook, textDelivery } from '../support/webhooks';

/**
 * /api/v1 on the whole stack (gateway, worker, Temporal, PostgreSQL with row-level security, the
 * Graph sandbox): each resource's happy path and its main errors. Who may call what is walked
 * exhaustively in api-authz.test.ts; here the callers are API keys and, where cookies matter
 * (CSRF, revoking sessions), signed-in browsers.
 */

const CUSTOMER = '7291845503617731';
const TOKEN = 'EAAB-api-v1-page-token-not-real';
const TEXT = 'Do you have the rain jacket in blue?';

let stack: TestStack;
const tenant = { a: '', b: '' };
let channelA: string;
const keys: Record<'operator' | 'owner' | 'admin' | 'developer' | 'viewer' | 'ownerB', string> = { operator: '', owner: '', admin: '', developer: '', viewer: '', ownerB: '' };

interface Answer<T = any> {
  status: number;
  body: T;
  text: string;
}

async function api<T = any>(method: string, path: string, opts: { key?: string; cookie?: string; csrf?: string; body?: unknown } = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.cookie) headers.cookie = opts.cookie;
  if (opts.csrf) headers['x-csrf-token'] = opts.csrf;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${stack.gatewayUrl}/api/v1${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
}

const auditOf = async (chain: string, action: string) =>
  (
    await stack.db.ownerPool.query<{ actor_type: string; actor_id: string; resource: string; details: Record<string, unknown>; tenant_id: string | null }>(
      'SELECT actor_type, actor_id, resource, details, tenant_id FROM audit_events WHERE chain_id = $1 AND action = $2 ORDER BY seq',
      [chain, action],
    )
  ).rows;

const keyIdOf = async (key: string) => (await api('GET', '/me', { key })).body.id as string;

beforeAll(async () => {
  stack = await startTestStack();
  tenant.a = (await createTenant(stack.db.pool, 'API Shop A')).id;
  tenant.b = (await createTenant(stack.db.pool, 'API Shop B')).id;
  channelA = (await connectChannel(stack.db.pool, stack.vault, { tenantId: tenant.a, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN })).id;
  keys.operator = await createTestApiKey(stack.db.pool, null, 'operator');
  for (const role of ['owner', 'admin', 'developer', 'viewer'] as const) keys[role] = await createTestApiKey(stack.db.pool, tenant.a, role);
  keys.ownerB = await createTestApiKey(stack.db.pool, tenant.b, 'owner');
});
afterAll(() => stack.close());

it('serves its OpenAPI document without a credential, and every other path under /api/v1 only with one', async () => {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/openapi.json`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
  expect(doc.openapi).toBe('3.1.0');
  expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/tenants', '/tenants/{tenantId}/channels', '/tenants/{tenantId}/conversations/{conversationId}']));
  expect((await api('GET', '/tenants')).status).toBe(401);
  expect((await api('GET', '/no-such-route')).status).toBe(401);
  expect((await api('GET', '/no-such-route', { key: keys.viewer })).status).toBe(404);
});

describe('tenants', () => {
  it('lists every tenant with channel counts for an operator, only its own for a tenant key, newest first and paged', async () => {
    const all = await api('GET', '/tenants', { key: keys.operator });
    expect(all.status).toBe(200);
    const a = all.body.items.find((t: { id: string }) => t.id === tenant.a);
    expect(a).toEqual({ id: tenant.a, name: 'API Shop A', createdAt: expect.any(String), channels: { total: 1, active: 1, reauthRequired: 0, disabled: 0 } });
    expect(all.body.items.map((t: { id: string }) => t.id)).toEqual(expect.arrayContaining([tenant.a, tenant.b]));

    const own = await api('GET', '/tenants', { key: keys.viewer });
    expect(own.body).toEqual({ items: [a], next: null });

    const first = await api('GET', '/tenants?limit=1', { key: keys.operator });
    expect(first.body.items).toHaveLength(1);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await api('GET', `/tenants?limit=1&before=${encodeURIComponent(first.body.next)}`, { key: keys.operator });
    expect(second.body.items).toHaveLength(1);
    expect(second.body.items[0].id).not.toBe(first.body.items[0].id);
  });

  it('creates a tenant (201, audited in the platform chain); 400 names the missing field; 403 for a tenant owner', async () => {
    const created = await api('POST', '/tenants', { key: keys.operator, body: { name: '  New Shop  ' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'New Shop', channels: { total: 0 } });
    expect((await api('GET', `/tenants/${created.body.id}`, { key: keys.operator })).body).toEqual(created.body);
    expect((await auditOf('platform', 'tenant.created')).at(-1)).toMatchObject({ resource: `tenant:${created.body.id}`, actor_type: 'api_key' });

    const missing = await api('POST', '/tenants', { key: keys.operator, body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: 'invalid_request', problems: [{ path: 'name', message: 'is required' }] });
    const extra = await api('POST', '/tenants', { key: keys.operator, body: { name: 'x', plan: 'gold' } });
    expect(extra.status).toBe(400);
    expect(extra.body.error.message).toMatch(/plan/);
    expect((await api('POST', '/tenants', { key: keys.owner, body: { name: 'x' } })).status).toBe(403);
  });

  it('answers 404 for an unknown tenant and 400 naming the path parameter for a malformed one', async () => {
    const unknown = randomUUID();
    const res = await api('GET', `/tenants/${unknown}`, { key: keys.operator });
    expect(res.status).toBe(404);
    expect(res.body.error).toEqual({ code: 'tenant_not_found', message: `no tenant ${unknown}` });
    const bad = await api('GET', '/tenants/not-a-uuid', { key: keys.operator });
    expect(bad.status).toBe(400);
    expect(bad.body.error.problems[0].path).toBe('path.tenantId');
  });

  it('deletes a tenant with crypto-shredding, audited; the tenant is gone afterwards', async () => {
    const doomed = (await createTenant(stack.db.pool, 'Doomed Shop')).id;
    await connectChannel(stack.db.pool, stack.vault, { tenantId: doomed, platform: 'instagram', accountId: '17841400000000999', accessToken: 'IGQ-doomed-token' });
    const res = await api('DELETE', `/tenants/${doomed}`, { key: keys.operator });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: doomed, deleted: true, dataKeysDestroyed: 1 });
    expect((await api('GET', `/tenants/${doomed}`, { key: keys.operator })).status).toBe(404);
    expect((await api('DELETE', `/tenants/${doomed}`, { key: keys.operator })).status).toBe(404);
    expect((await stack.db.ownerPool.query('SELECT 1 FROM tenant_data_keys WHERE tenant_id = $1', [doomed])).rowCount).toBe(0);
    expect((await auditOf('platform', 'tenant.deleted')).at(-1)).toMatchObject({ resource: `tenant:${doomed}`, details: { dataKeysDestroyed: 1 } });
    // A tenant's own owner may not delete it.
    expect((await api('DELETE', `/tenants/${tenant.a}`, { key: keys.owner })).status).toBe(403);
  });
});

describe('users', () => {
  let ownerId: string;

  it('creates users up to the caller’s own role, audited in the tenant chain without the password', async () => {
    const owner = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.operator, body: { email: 'Olga@shop-a.example', role: 'owner', password: 'owner password 123' } });
    expect(owner.status).toBe(201);
    expect(owner.body).toEqual({ id: expect.any(String), email: 'Olga@shop-a.example', role: 'owner', disabled: false, disabledAt: null, createdAt: expect.any(String), openSessions: 0 });
    ownerId = owner.body.id;

    const dev = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.admin, body: { email: 'dev@shop-a.example', role: 'developer', password: 'developer password 1' } });
    expect(dev.status).toBe(201);
    const audited = (await auditOf(tenant.a, 'user.created')).at(-1)!;
    expect(audited).toMatchObject({ resource: `tenant_user:${dev.body.id}`, actor_type: 'api_key', actor_id: await keyIdOf(keys.admin), details: { role: 'developer' } });
    expect(JSON.stringify(await auditOf(tenant.a, 'user.created'))).not.toContain('developer password 1');

    const listed = await api('GET', `/tenants/${tenant.a}/users`, { key: keys.owner });
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((u: { id: string }) => u.id)).toEqual([dev.body.id, ownerId]);
    expect(JSON.stringify(listed.body)).not.toMatch(/scrypt|password/);
  });

  it('refuses an owner created by an admin (403), a taken email (409), a missing password (400) and a weak one (422)', async () => {
    const byAdmin = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.admin, body: { email: 'boss@shop-a.example', role: 'owner', password: 'a long password 1' } });
    expect(byAdmin.status).toBe(403);
    expect(byAdmin.body.error.code).toBe('role_not_grantable');
    const taken = await api('POST', `/tenants/${tenant.b}/users`, { key: keys.operator, body: { email: 'OLGA@shop-a.example', role: 'viewer', password: 'a long password 1' } });
    expect(taken.status).toBe(409);
    const noPassword = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.owner, body: { email: 'x@shop-a.example', role: 'viewer' } });
    expect(noPassword.status).toBe(400);
    expect(noPassword.body.error.problems).toEqual([{ path: 'password', message: 'is required' }]);
    const badEmail = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.owner, body: { email: 'not-an-email', role: 'viewer', password: 'a long password 1' } });
    expect(badEmail.body.error.problems[0].path).toBe('email');
    const weak = await api('POST', `/tenants/${tenant.a}/users`, { key: keys.owner, body: { email: 'same@shop-a.example', role: 'viewer', password: 'same@shop-a.example' } });
    expect(weak.status).toBe(422);
    expect(weak.body.error).toEqual({ code: 'password_policy', message: 'password: the password must not be the email address' });
  });

  it('changes roles within the caller’s rank and keeps one active owner', async () => {
    const viewer = (await api('POST', `/tenants/${tenant.a}/users`, { key: keys.owner, body: { email: 'vera@shop-a.example', role: 'viewer', password: 'viewer password 12' } })).body;
    const promoted = await api('PATCH', `/tenants/${tenant.a}/users/${viewer.id}`, { key: keys.admin, body: { role: 'admin' } });
    expect(promoted.status).toBe(200);
    expect(promoted.body.role).toBe('admin');
    expect((await auditOf(tenant.a, 'user.updated')).at(-1)).toMatchObject({ details: { from: { role: 'viewer', disabled: false }, to: { role: 'admin', disabled: false } } });

    // An admin can neither make an owner nor touch one.
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${viewer.id}`, { key: keys.admin, body: { role: 'owner' } })).status).toBe(403);
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${ownerId}`, { key: keys.admin, body: { role: 'viewer' } })).status).toBe(403);

    const lastOwner = await api('PATCH', `/tenants/${tenant.a}/users/${ownerId}`, { key: keys.owner, body: { role: 'admin' } });
    expect(lastOwner.status).toBe(409);
    expect(lastOwner.body.error.code).toBe('last_owner');
    expect((await api('DELETE', `/tenants/${tenant.a}/users/${ownerId}`, { key: keys.owner })).status).toBe(409);
    // With a second owner, the first may step down.
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${viewer.id}`, { key: keys.owner, body: { role: 'owner' } })).status).toBe(200);
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${ownerId}`, { key: keys.owner, body: { role: 'admin' } })).body.role).toBe('admin');

    const empty = await api('PATCH', `/tenants/${tenant.a}/users/${viewer.id}`, { key: keys.owner, body: {} });
    expect(empty.status).toBe(400);
    expect(empty.body.error.message).toMatch(/give role or disabled/);
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${randomUUID()}`, { key: keys.owner, body: { disabled: true } })).status).toBe(404);
    // Another tenant's user is not found through this tenant.
    const bUser = (await api('POST', `/tenants/${tenant.b}/users`, { key: keys.ownerB, body: { email: 'bob@shop-b.example', role: 'viewer', password: 'viewer password 12' } })).body;
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${bUser.id}`, { key: keys.owner, body: { disabled: true } })).status).toBe(404);
  });

  it('disabling a user ends its signed-in sessions at once', async () => {
    const account = await createTestAccount(stack.db.pool, tenant.a, 'viewer');
    const { cookie } = await signIn(stack.gatewayUrl, account.email, account.password);
    expect((await api('GET', '/me', { cookie })).status).toBe(200);
    const listed = (await api('GET', `/tenants/${tenant.a}/users`, { key: keys.admin })).body.items.find((u: { id: string }) => u.id === account.id);
    expect(listed.openSessions).toBe(1);

    const res = await api('DELETE', `/tenants/${tenant.a}/users/${account.id}`, { key: keys.admin });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: account.id, disabled: true, disabledAt: expect.any(String), openSessions: 0 });
    expect((await api('GET', '/me', { cookie })).status).toBe(401);
    expect((await auditOf(tenant.a, 'user.updated')).at(-1)).toMatchObject({ resource: `tenant_user:${account.id}`, details: { sessionsRevoked: 1, to: { disabled: true } } });

    // Enabled again, it signs in again (the old session stays ended).
    expect((await api('PATCH', `/tenants/${tenant.a}/users/${account.id}`, { key: keys.admin, body: { disabled: false } })).body.disabled).toBe(false);
    expect((await api('GET', '/me', { cookie })).status).toBe(401);
    await signIn(stack.gatewayUrl, account.email, account.password);
  });
});

describe('API keys', () => {
  it('creates a key shown once; it works; it is listed without its secret; revoking it ends it; audited by prefix', async () => {
    const created = await api('POST', `/tenants/${tenant.a}/api-keys`, { key: keys.developer, body: { name: 'ci deploy', role: 'developer' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'ci deploy', role: 'developer', tenantId: tenant.a, revokedAt: null, lastUsedAt: null, key: expect.stringMatching(/^sb_[0-9a-z]{12}_/) });
    expect(created.body.createdBy).toBe(`api_key:${await keyIdOf(keys.developer)}`);
    const secret = created.body.key.split('_').slice(2).join('_');

    expect((await api('GET', '/me', { key: created.body.key })).body).toMatchObject({ kind: 'api_key', role: 'developer', tenantId: tenant.a });
    const listed = await api('GET', `/tenants/${tenant.a}/api-keys`, { key: keys.admin });
    const entry = listed.body.items.find((k: { id: string }) => k.id === created.body.id);
    expect(entry).toMatchObject({ prefix: created.body.prefix, lastUsedAt: expect.any(String) });
    expect(entry.key).toBeUndefined();
    expect(listed.text).not.toContain(secret);

    const revoked = await api('DELETE', `/tenants/${tenant.a}/api-keys/${created.body.id}`, { key: keys.developer });
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).toEqual(expect.any(String));
    expect((await api('GET', '/me', { key: created.body.key })).status).toBe(401);
    const again = await api('DELETE', `/tenants/${tenant.a}/api-keys/${created.body.id}`, { key: keys.developer });
    expect(again.body.revokedAt).toBe(revoked.body.revokedAt);
    expect((await api('GET', `/tenants/${tenant.a}/api-keys?revoked=exclude`, { key: keys.admin })).body.items.map((k: { id: string }) => k.id)).not.toContain(created.body.id);

    const events = [...(await auditOf(tenant.a, 'api_key.created')), ...(await auditOf(tenant.a, 'api_key.revoked'))].filter((e) => e.resource === `api_key:${created.body.id}`);
    expect(events).toHaveLength(2);
    expect(JSON.stringify(events)).toContain(created.body.prefix);
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it('refuses a key above the creator’s role, revoking a key above it, an unknown key and a bad role', async () => {
    const up = await api('POST', `/tenants/${tenant.a}/api-keys`, { key: keys.developer, body: { name: 'x', role: 'admin' } });
    expect(up.status).toBe(403);
    expect(up.body.error.code).toBe('role_not_grantable');
    const adminKeyId = await keyIdOf(keys.admin);
    expect((await api('DELETE', `/tenants/${tenant.a}/api-keys/${adminKeyId}`, { key: keys.developer })).status).toBe(403);
    expect((await api('DELETE', `/tenants/${tenant.a}/api-keys/${randomUUID()}`, { key: keys.owner })).status).toBe(404);
    // Tenant B's key is not found through tenant A.
    expect((await api('DELETE', `/tenants/${tenant.a}/api-keys/${await keyIdOf(keys.ownerB)}`, { key: keys.owner })).status).toBe(404);
    const operatorRole = await api('POST', `/tenants/${tenant.a}/api-keys`, { key: keys.owner, body: { name: 'x', role: 'operator' } });
    expect(operatorRole.status).toBe(400);
    expect(operatorRole.body.error.problems[0].path).toBe('role');
  });

  it('platform keys: operators create (role operator), list and revoke them', async () => {
    const created = await api('POST', '/platform/api-keys', { key: keys.operator, body: { name: 'ops automation' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ role: 'operator', tenantId: null });
    expect((await api('GET', '/tenants', { key: created.body.key })).status).toBe(200);
    const listed = await api('GET', '/platform/api-keys', { key: keys.operator });
    expect(listed.body.items.map((k: { id: string }) => k.id)).toContain(created.body.id);
    expect(listed.body.items.every((k: { tenantId: string | null }) => k.tenantId === null)).toBe(true);
    expect((await api('DELETE', `/platform/api-keys/${created.body.id}`, { key: keys.operator })).status).toBe(200);
    expect((await api('GET', '/tenants', { key: created.body.key })).status).toBe(401);
    expect((await auditOf('platform', 'api_key.revoked')).at(-1)!.resource).toBe(`api_key:${created.body.id}`);
  });
});

describe('sessions', () => {
  it('lists a tenant’s open sessions and revokes one; a browser needs its CSRF token to do so', async () => {
    const admin = await createTestAccount(stack.db.pool, tenant.a, 'admin');
    const viewer = await createTestAccount(stack.db.pool, tenant.a, 'viewer');
    const adminSession = await signIn(stack.gatewayUrl, admin.email, admin.password);
    const viewerSession = await signIn(stack.gatewayUrl, viewer.email, viewer.password);

    const listed = await api('GET', `/tenants/${tenant.a}/sessions?userId=${viewer.id}`, { cookie: adminSession.cookie });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toEqual([expect.objectContaining({ userId: viewer.id, revokedAt: null, current: false })]);
    const sessionId = listed.body.items[0].id;
    const mine = await api('GET', `/tenants/${tenant.a}/sessions?userId=${admin.id}`, { cookie: adminSession.cookie });
    expect(mine.body.items[0].current).toBe(true);
    expect(JSON.stringify(listed.body)).not.toContain(viewerSession.cookie.split('=')[1]!);

    const noCsrf = await api('DELETE', `/tenants/${tenant.a}/sessions/${sessionId}`, { cookie: adminSession.cookie });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error.code).toBe('csrf_failed');
    const revoked = await api('DELETE', `/tenants/${tenant.a}/sessions/${sessionId}`, { cookie: adminSession.cookie, csrf: adminSession.csrfToken });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ id: sessionId, revokedAt: expect.any(String), revokedReason: 'revoked_by_admin' });
    expect((await api('GET', '/me', { cookie: viewerSession.cookie })).status).toBe(401);
    expect((await auditOf(tenant.a, 'session.revoked')).at(-1)).toMatchObject({ resource: `session:${sessionId}`, actor_type: 'tenant_user', actor_id: admin.id });

    expect((await api('GET', `/tenants/${tenant.a}/sessions?userId=${viewer.id}`, { key: keys.owner })).body.items).toEqual([]);
    expect((await api('GET', `/tenants/${tenant.a}/sessions?userId=${viewer.id}&state=all`, { key: keys.owner })).body.items).toHaveLength(1);
    expect((await api('DELETE', `/tenants/${tenant.a}/sessions/${randomUUID()}`, { key: keys.owner })).status).toBe(404);
    expect((await api('GET', `/tenants/${tenant.a}/sessions?state=closed`, { key: keys.owner })).body.error.problems[0].path).toBe('?state');
  });
});

describe('channels, conversations and messages', () => {
  let conversationId: string;

  it('shows channel health without the token; an arriving webhook moves lastEventAt', async () => {
    const before = await api('GET', `/tenants/${tenant.a}/channels`, { key: keys.viewer });
    expect(before.status).toBe(200);
    expect(before.body.items).toEqual([
      {
        id: channelA,
        platform: 'messenger',
        accountId: PAGE_A,
        status: 'active',
        statusReason: null,
        statusChangedAt: expect.any(String),
        createdAt: expect.any(String),
        health: { token: 'valid', tokenExpiresAt: null, webhookSubscribed: null, webhookCheckedAt: null, lastEventAt: null },
      },
    ]);
    expect(before.text).not.toContain(TOKEN);

    const sentAt = Date.now();
    const res = await postWebhook(stack.gatewayUrl, textDelivery({ pageId: PAGE_A, customerId: CUSTOMER, mid: `m_api_${sentAt}`, text: TEXT }));
    expect(res.status).toBe(200);
    const after = await eventually(async () => {
      const c = (await api('GET', `/tenants/${tenant.a}/channels/${channelA}`, { key: keys.viewer })).body;
      return c.health.lastEventAt ? c : undefined;
    });
    expect(Date.parse(after.health.lastEventAt)).toBeGreaterThanOrEqual(sentAt - 1000);
  });

  it('reports an expiring or expired token and a missing webhook subscription; 404 for an unknown channel', async () => {
    await stack.db.ownerPool.query(`UPDATE channels SET token_expires_at = now() + interval '3 days', webhook_subscribed = false, webhook_checked_at = now() WHERE id = $1`, [channelA]);
    const expiring = (await api('GET', `/tenants/${tenant.a}/channels/${channelA}`, { key: keys.developer })).body;
    expect(expiring.health).toMatchObject({ token: 'expiring', tokenExpiresAt: expect.any(String), webhookSubscribed: false, webhookCheckedAt: expect.any(String) });
    await stack.db.ownerPool.query(`UPDATE channels SET token_expires_at = now() - interval '1 minute' WHERE id = $1`, [channelA]);
    expect((await api('GET', `/tenants/${tenant.a}/channels/${channelA}`, { key: keys.developer })).body.health.token).toBe('reauth_required');
    await stack.db.ownerPool.query(`UPDATE channels SET token_expires_at = now() + interval '60 days', webhook_subscribed = true WHERE id = $1`, [channelA]);
    expect((await api('GET', `/tenants/${tenant.a}/channels/${channelA}`, { key: keys.developer })).body.health.token).toBe('valid');

    const unknown = await api('GET', `/tenants/${tenant.a}/channels/${randomUUID()}`, { key: keys.viewer });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('channel_not_found');
    // Tenant B sees neither A's channel through its own tenant nor A's tenant.
    expect((await api('GET', `/tenants/${tenant.b}/channels/${channelA}`, { key: keys.ownerB })).status).toBe(404);
    expect((await api('GET', `/tenants/${tenant.b}/channels`, { key: keys.ownerB })).body.items).toEqual([]);
  });

  it('lists conversations as metadata; the customer id is masked for roles without conversations.read', async () => {
    const forViewer = await eventually(async () => {
      const body = (await api('GET', `/tenants/${tenant.a}/conversations`, { key: keys.viewer })).body;
      return body.items.length === 1 && body.items[0].messageCount >= 2 ? body : undefined;
    });
    const item = forViewer.items[0];
    conversationId = item.id;
    expect(item).toMatchObject({ channelId: channelA, platform: 'messenger', customerId: CUSTOMER, customerIdMasked: false, state: 'bot_active', lastInboundAt: expect.any(String) });
    const forDeveloper = (await api('GET', `/tenants/${tenant.a}/conversations`, { key: keys.developer })).body;
    expect(forDeveloper.items[0]).toMatchObject({ id: conversationId, customerId: '***7731', customerIdMasked: true });
    expect(JSON.stringify(forDeveloper)).not.toContain(CUSTOMER);

    expect((await api('GET', `/tenants/${tenant.a}/conversations?state=human_active`, { key: keys.viewer })).body.items).toEqual([]);
    const bad = await api('GET', `/tenants/${tenant.a}/conversations?state=closed&limit=0`, { key: keys.viewer });
    expect(bad.status).toBe(400);
    expect(bad.body.error.problems.map((p: { path: string }) => p.path).sort()).toEqual(['?limit', '?state']);
    expect((await api('GET', `/tenants/${tenant.a}/conversations?before=yesterday`, { key: keys.viewer })).body.error.problems[0].path).toBe('?before');
  });

  it('shows messages with texts to conversations.read, redacted to others; pages to older messages', async () => {
    // Once the bot's reply left 'pending', the conversation holds still for the paging checks below.
    const full = await eventually(async () => {
      const res = await api('GET', `/tenants/${tenant.a}/conversations/${conversationId}`, { key: keys.owner });
      return res.status === 200 && res.body.messages.every((m: { status: string }) => m.status !== 'pending') ? res : undefined;
    });
    expect(full.status).toBe(200);
    const inbound = full.body.messages.find((m: { direction: string }) => m.direction === 'inbound');
    expect(inbound).toMatchObject({ author: 'customer', kind: 'text', status: 'received', text: TEXT, redacted: false, attachments: [], deleted: false });
    expect(full.body.messages.some((m: { direction: string; author: string }) => m.direction === 'outbound' && m.author === 'bot')).toBe(true);
    // Oldest first.
    const times = full.body.messages.map((m: { createdAt: string }) => Date.parse(m.createdAt));
    expect([...times].sort((x, y) => x - y)).toEqual(times);

    const redacted = await api('GET', `/tenants/${tenant.a}/conversations/${conversationId}`, { key: keys.developer });
    expect(redacted.body.messages.length).toBe(full.body.messages.length);
    for (const m of redacted.body.messages) expect(m).toMatchObject({ text: null, attachments: null, storyUrl: null, redacted: true });
    expect(redacted.text).not.toContain(TEXT);
    expect(redacted.body.conversation.customerId).toBe('***7731');

    const newest = await api('GET', `/tenants/${tenant.a}/conversations/${conversationId}?limit=1`, { key: keys.owner });
    expect(newest.body.messages).toEqual([full.body.messages.at(-1)]);
    const older = await api('GET', `/tenants/${tenant.a}/conversations/${conversationId}?limit=1&before=${encodeURIComponent(newest.body.next)}`, { key: keys.owner });
    expect(older.body.messages).toEqual([full.body.messages.at(-2)]);

    expect((await api('GET', `/tenants/${tenant.a}/conversations/${randomUUID()}`, { key: keys.owner })).body.error.code).toBe('conversation_not_found');
    expect((await api('GET', `/tenants/${tenant.b}/conversations/${conversationId}`, { key: keys.ownerB })).status).toBe(404);
  });
});

describe('audit', () => {
  it("reads the tenant's chain newest first, filters by action or prefix, pages by cursor", async () => {
    const res = await api('GET', `/tenants/${tenant.a}/audit?limit=200`, { key: keys.admin });
    expect(res.status).toBe(200);
    const seqs = res.body.items.map((e: { seq: number }) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
    expect(res.body.items.some((e: { action: string }) => e.action === 'user.created')).toBe(true);

    const created = await api('GET', `/tenants/${tenant.a}/audit?action=user.created`, { key: keys.owner });
    expect(created.body.items.length).toBeGreaterThan(0);
    expect(created.body.items.every((e: { action: string }) => e.action === 'user.created')).toBe(true);
    const apiKeys = await api('GET', `/tenants/${tenant.a}/audit?action=api_key.`, { key: keys.owner });
    expect(new Set(apiKeys.body.items.map((e: { action: string }) => e.action))).toEqual(new Set(['api_key.created', 'api_key.revoked']));

    const first = await api('GET', `/tenants/${tenant.a}/audit?limit=2`, { key: keys.owner });
    const second = await api('GET', `/tenants/${tenant.a}/audit?limit=2&before=${encodeURIComponent(first.body.next)}`, { key: keys.owner });
    expect(second.body.items.map((e: { seq: number }) => e.seq)).toEqual([first.body.items[1].seq - 1, first.body.items[1].seq - 2]);

    expect((await api('GET', `/tenants/${tenant.a}/audit?action=DROP TABLE`, { key: keys.owner })).status).toBe(400);
    expect((await api('GET', `/tenants/${tenant.a}/audit`, { key: keys.developer })).status).toBe(403);
    // Only tenant A's chain: nothing of tenant B.
    expect(res.text).not.toContain(tenant.b);
  });

  it("reads the platform chain for operators only", async () => {
    const res = await api('GET', '/platform/audit?action=tenant.', { key: keys.operator });
    expect(res.status).toBe(200);
    expect(res.body.items.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['tenant.created', 'tenant.deleted']));
    expect((await api('GET', '/platform/audit', { key: keys.owner })).status).toBe(403);
  });
});

describe('key status', () => {
  it('shows operators the key hierarchy and a tenant its own data keys, never key material', async () => {
    const platform = await api('GET', '/platform/keys/status', { key: keys.operator });
    expect(platform.status).toBe(200);
    expect(platform.body).toMatchObject({ activeMasterKeyVersion: 1, pending: { rewrap: 0, reencrypt: 0 }, policy: { maxAgeDays: 90, maxEncryptions: 2 ** 30 }, dueForRotation: 0 });
    // Each tenant data key with its age and usage (the response schema names every field, so all are sent).
    expect(platform.body.tenantDataKeys.find((k: { tenantId: string }) => k.tenantId === tenant.a)).toEqual({
      tenantId: tenant.a,
      version: 1,
      masterKeyVersion: 1,
      createdAt: expect.any(String),
      ageDays: 0,
      encryptions: expect.any(Number),
      superseded: false,
      due: false,
      dueBecause: [],
    });
    expect((await api('GET', '/platform/keys/status', { key: keys.owner })).status).toBe(403);

    const own = await api('GET', `/tenants/${tenant.a}/keys/status`, { key: keys.viewer });
    expect(own.status).toBe(200);
    expect(own.body).toEqual({
      tenantId: tenant.a,
      dataKeys: [
        {
          version: 1,
          masterKeyVersion: 1,
          current: true,
          createdAt: expect.any(String),
          ageDays: 0,
          rewrappedAt: null,
          supersededAt: null,
          encryptions: expect.any(Number),
          secrets: 1,
        },
      ],
      secrets: [
        { table: 'channels', column: 'access_token_ciphertext', byDataKeyVersion: { '1': 1 } },
        { table: 'tenant_settings', column: 'llm_api_key_ciphertext', byDataKeyVersion: {} },
        { table: 'tenant_settings', column: 'notify_webhook_secret_ciphertext', byDataKeyVersion: {} },
      ],
    });
    const { rows } = await stack.db.ownerPool.query<{ wrapped_key: Buffer }>('SELECT wrapped_key FROM tenant_data_keys WHERE tenant_id = $1', [tenant.a]);
    expect(own.text).not.toContain(rows[0]!.wrapped_key.toString('base64').slice(0, 24));
    expect(own.text).not.toContain(rows[0]!.wrapped_key.toString('hex').slice(0, 24));
  });
});
