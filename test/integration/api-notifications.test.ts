import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { openEpisode } from '../../src/notifications/episodes';
import { createTestApiKey, startTestStack, type TestStack } from '../support/stack';

/**
 * /api/v1/tenants/:id/notifications (where notices go; the webhook secret shown once) and
 * /api/v1/tenants/:id/notices (the open episodes behind the dashboard banner), on the whole stack.
 */

let stack: TestStack;
const tenant = { a: '', b: '' };
const keys = { owner: '', developer: '', viewer: '', ownerB: '' };
let channelA: string;
let channelA2: string;

interface Answer<T = any> {
  status: number;
  body: T;
  text: string;
}

async function api<T = any>(method: string, path: string, key: string, body?: unknown): Promise<Answer<T>> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${stack.gatewayUrl}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
}

const settingsPath = () => `/tenants/${tenant.a}/notifications`;

beforeAll(async () => {
  stack = await startTestStack();
  tenant.a = (await createTenant(stack.db.pool, 'Notify A')).id;
  tenant.b = (await createTenant(stack.db.pool, 'Notify B')).id;
  channelA = (await connectChannel(stack.db.pool, stack.vault, { tenantId: tenant.a, platform: 'instagram', graphApi: 'instagram', accountId: '17841400000000201', accessToken: 'IGAAT-api-notify-not-real' })).id;
  channelA2 = (await connectChannel(stack.db.pool, stack.vault, { tenantId: tenant.a, platform: 'messenger', accountId: '104829376510201', accessToken: 'EAAB-api-notify-not-real' })).id;
  keys.owner = await createTestApiKey(stack.db.pool, tenant.a, 'owner');
  keys.developer = await createTestApiKey(stack.db.pool, tenant.a, 'developer');
  keys.viewer = await createTestApiKey(stack.db.pool, tenant.a, 'viewer');
  keys.ownerB = await createTestApiKey(stack.db.pool, tenant.b, 'owner');
}, 60_000);
afterAll(() => stack.close());

describe('notification settings', () => {
  it('start at "the owners, no webhook"', async () => {
    const res = await api('GET', settingsPath(), keys.viewer);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ notifyEmail: null, recipients: 'owners', webhookUrl: null, webhookSecretSet: false });
  });

  it('a first webhook URL returns its signing secret once; it is sealed, never read back, and rotating replaces it', async () => {
    const put = await api('PUT', settingsPath(), keys.developer, { webhookUrl: 'http://127.0.0.1:9/hook' });
    expect(put.status).toBe(200);
    const secret = put.body.webhookSecret as string;
    expect(put.body).toEqual({ notifyEmail: null, recipients: 'owners', webhookUrl: 'http://127.0.0.1:9/hook', webhookSecretSet: true, webhookSecret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });

    // Never again: not on GET, not on the next PUT that does not ask for a new one.
    const get = await api('GET', settingsPath(), keys.owner);
    expect(get.body).toEqual({ notifyEmail: null, recipients: 'owners', webhookUrl: 'http://127.0.0.1:9/hook', webhookSecretSet: true });
    expect(get.text).not.toContain(secret);
    const email = await api('PUT', settingsPath(), keys.owner, { notifyEmail: 'ops@shop.example' });
    expect(email.status).toBe(200);
    expect(email.body).toEqual({ notifyEmail: 'ops@shop.example', recipients: 'notify_email', webhookUrl: 'http://127.0.0.1:9/hook', webhookSecretSet: true });
    const sameUrl = await api('PUT', settingsPath(), keys.owner, { webhookUrl: 'http://127.0.0.1:9/other' });
    expect(sameUrl.body).not.toHaveProperty('webhookSecret');

    // Sealed by the vault: the stored bytes do not contain it.
    const { rows } = await stack.db.ownerPool.query<{ c: Buffer; v: number }>('SELECT notify_webhook_secret_ciphertext AS c, notify_webhook_secret_version AS v FROM tenant_settings WHERE tenant_id = $1', [tenant.a]);
    expect(rows[0]!.v).toBeGreaterThanOrEqual(1);
    expect(rows[0]!.c.includes(Buffer.from(secret))).toBe(false);

    const rotated = await api('PUT', settingsPath(), keys.owner, { rotateWebhookSecret: true });
    expect(rotated.body.webhookSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(rotated.body.webhookSecret).not.toBe(secret);

    // Audited by field name only: never the address, never a secret.
    const { rows: audit } = await stack.db.ownerPool.query<{ details: { fields: string[]; signingKeyGenerated: boolean } }>(
      "SELECT details FROM audit_events WHERE chain_id = $1 AND action = 'settings.updated' ORDER BY seq",
      [tenant.a],
    );
    expect(audit.map((a) => [a.details.fields, a.details.signingKeyGenerated])).toEqual([
      [['webhookUrl'], true],
      [['notifyEmail'], false],
      [['webhookUrl'], false],
      [[], true],
    ]);
    const all = JSON.stringify(audit);
    expect(all).not.toContain(secret);
    expect(all).not.toContain(rotated.body.webhookSecret);
    expect(all).not.toContain('ops@shop.example');
  });

  it('removing the URL removes the secret; the next URL gets a fresh one; null e-mail goes back to the owners', async () => {
    const off = await api('PUT', settingsPath(), keys.owner, { webhookUrl: null, notifyEmail: null });
    expect(off.body).toEqual({ notifyEmail: null, recipients: 'owners', webhookUrl: null, webhookSecretSet: false });
    const { rows } = await stack.db.ownerPool.query('SELECT notify_webhook_secret_ciphertext IS NULL AS gone FROM tenant_settings WHERE tenant_id = $1', [tenant.a]);
    expect(rows[0].gone).toBe(true);
    const on = await api('PUT', settingsPath(), keys.owner, { webhookUrl: 'https://hooks.shop.example/switchboard' });
    expect(on.body.webhookSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it.each([
    ['a URL that is not one', { webhookUrl: 'not a url' }, 'webhookUrl'],
    ['a non-http URL', { webhookUrl: 'ftp://shop.example/hook' }, 'webhookUrl'],
    ['a URL with credentials', { webhookUrl: 'https://user:pw@shop.example/hook' }, 'webhookUrl'],
    ['an e-mail that is not one', { notifyEmail: 'ops-at-shop' }, 'notifyEmail'],
    ['a field that does not exist', { webhookSecret: 'mine' }, '(body)'],
    ['a non-boolean rotate flag', { rotateWebhookSecret: 'yes' }, 'rotateWebhookSecret'],
  ])('refuses %s with 400 naming the field, changing nothing', async (_label, body, field) => {
    const before = await api('GET', settingsPath(), keys.owner);
    const res = await api('PUT', settingsPath(), keys.owner, body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.problems.map((p: { path: string }) => p.path)).toEqual([field]);
    if (field === '(body)') expect(res.body.error.message).toContain('webhookSecret');
    expect((await api('GET', settingsPath(), keys.owner)).body).toEqual(before.body);
  });

  it('viewers read but do not change them; another tenant gets 404 as for a tenant that does not exist', async () => {
    expect((await api('GET', settingsPath(), keys.viewer)).status).toBe(200);
    const denied = await api('PUT', settingsPath(), keys.viewer, { notifyEmail: 'x@shop.example' });
    expect([denied.status, denied.body.error.code]).toEqual([403, 'forbidden']);
    for (const [method, body] of [['GET', undefined], ['PUT', { notifyEmail: 'x@shop.example' }]] as const) {
      const foreign = await api(method, settingsPath(), keys.ownerB, body);
      expect([method, foreign.status, foreign.body.error.code]).toEqual([method, 404, 'tenant_not_found']);
    }
    expect((await api('GET', `/tenants/${tenant.b}/notifications`, keys.ownerB)).body).toEqual({ notifyEmail: null, recipients: 'owners', webhookUrl: null, webhookSecretSet: false });
  });
});

describe('notices', () => {
  it("lists the tenant's open episodes, critical first, with the channel and its parked replies; closed ones drop out", async () => {
    expect((await api('GET', `/tenants/${tenant.a}/notices`, keys.viewer)).body).toEqual({ items: [] });

    const expiresAt = new Date(Date.now() + 5 * 86_400_000);
    const expiring = (await openEpisode(stack.db.pool, tenant.a, { channelId: channelA2, kind: 'token_expiring', level: 'warning', reason: 'token expires soon', expiresAt })).episode;
    await stack.db.ownerPool.query("UPDATE channels SET status = 'reauth_required' WHERE id = $1", [channelA]);
    const reauth = (await openEpisode(stack.db.pool, tenant.a, { channelId: channelA, kind: 'reauth_required', level: 'critical', reason: 'GraphAuthExpired (code 190)' })).episode;
    const conv = await stack.db.ownerPool.query<{ id: string }>('INSERT INTO conversations (tenant_id, channel_id, customer_id) VALUES ($1, $2, $3) RETURNING id', [tenant.a, channelA, '7291845503610201']);
    for (let i = 0; i < 3; i++) {
      await stack.db.ownerPool.query(
        "INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, status, error) VALUES ($1, $2, $3, 'outbound', 'bot', 'text', 'parked', '{\"reason\":\"reauth\"}')",
        [tenant.a, channelA, conv.rows[0]!.id],
      );
    }

    const res = await api('GET', `/tenants/${tenant.a}/notices`, keys.viewer);
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([
      { id: reauth.id, channelId: channelA, platform: 'instagram', accountId: '17841400000000201', kind: 'reauth_required', level: 'critical', reason: 'GraphAuthExpired (code 190)', openedAt: expect.any(String), expiresAt: null, parkedReplies: 3 },
      { id: expiring.id, channelId: channelA2, platform: 'messenger', accountId: '104829376510201', kind: 'token_expiring', level: 'warning', reason: 'token expires soon', openedAt: expect.any(String), expiresAt: expiresAt.toISOString(), parkedReplies: 0 },
    ]);

    // Tenant B sees none of them, and A's are not reachable through B's id.
    expect((await api('GET', `/tenants/${tenant.b}/notices`, keys.ownerB)).body).toEqual({ items: [] });
    expect((await api('GET', `/tenants/${tenant.a}/notices`, keys.ownerB)).status).toBe(404);

    await stack.db.ownerPool.query("UPDATE notification_episodes SET closed_at = now(), closed_reason = 'reconnected' WHERE id = $1", [reauth.id]);
    expect((await api('GET', `/tenants/${tenant.a}/notices`, keys.viewer)).body.items.map((n: { id: string }) => n.id)).toEqual([expiring.id]);
  });
});
