import { WorkflowNotFoundError } from '@temporalio/client';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { parseWebhookPayload } from '../../src/meta/webhook-events';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { eventually, startTestStack, TEST_VERIFY_TOKEN, type TestStack } from '../support/stack';
import { errorOf, fixture, IG_ACCOUNT, PAGE_A, PAGE_B, postWebhook, webhookFixtures } from '../support/webhooks';

describe('POST /webhooks/meta', () => {
  let stack: TestStack;
  const channels: Record<string, { id: string; tenantId: string }> = {};

  beforeAll(async () => {
    stack = await startTestStack();
    const tenantA = await createTenant(stack.db.pool, 'Shop A');
    const tenantB = await createTenant(stack.db.pool, 'Clinic B');
    for (const [platform, account, tenant] of [
      ['messenger', PAGE_A, tenantA.id],
      ['messenger', PAGE_B, tenantB.id],
      ['instagram', IG_ACCOUNT, tenantA.id],
    ] as const) {
      const { id } = await connectChannel(stack.db.pool, stack.vault, { tenantId: tenant, platform, accountId: account, accessToken: `token-${account}` });
      channels[account] = { id, tenantId: tenant };
    }
  });
  afterAll(() => stack.close());

  it.each(webhookFixtures().map((f) => [f.file, f] as const))('accepts %s as its exact bytes and routes every event', async (_file, f) => {
    const res = await postWebhook(stack.gatewayUrl, f.bytes, { signature: f.signature256 });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('EVENT_RECEIVED');

    const { events } = parseWebhookPayload(JSON.parse(f.bytes.toString('utf8')));
    expect(events.length).toBeGreaterThan(0);
    for (const event of events) {
      const channel = channels[event.accountId]!;
      const handle = stack.client.workflow.getHandle(conversationWorkflowId(channel.tenantId, channel.id, event.customerId));
      const description = await handle.describe();
      expect(description.type).toBe('conversationWorkflow');
      expect(description.searchAttributes.TenantId).toEqual([channel.tenantId]);
      expect(description.searchAttributes.ChannelId).toEqual([channel.id]);
      expect(description.searchAttributes.Platform).toEqual([event.platform]);
    }
  });

  it('rejects a re-serialized body, a flipped byte, a sha1 value and a missing header with 401', async () => {
    const f = fixture('messenger-text.json');
    const reserialized = Buffer.from(JSON.stringify(JSON.parse(f.bytes.toString('utf8'))));
    expect(reserialized.equals(f.bytes)).toBe(false);
    const flipped = Buffer.from(f.bytes);
    flipped[40] = flipped[40]! ^ 0x01;
    const cases: Array<[Buffer, string | null]> = [
      [reserialized, f.signature256],
      [flipped, f.signature256],
      [f.bytes, `sha256=${f.signature1.slice('sha1='.length)}`],
      [f.bytes, f.signature1],
      [f.bytes, null],
    ];
    for (const [body, signature] of cases) {
      const res = await postWebhook(stack.gatewayUrl, body, { signature });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: { code: 'invalid_signature', message: expect.stringContaining('X-Hub-Signature-256') } });
    }
  });

  it('refuses 1 MiB + 1 byte with 413 and accepts exactly 1 MiB to the signature check', async () => {
    const tooBig = Buffer.alloc(1024 * 1024 + 1, 0x20);
    expect((await postWebhook(stack.gatewayUrl, tooBig, { signature: 'sha256=' + '0'.repeat(64) })).status).toBe(413);
    const limit = Buffer.alloc(1024 * 1024, 0x20);
    expect((await postWebhook(stack.gatewayUrl, limit, { signature: 'sha256=' + '0'.repeat(64) })).status).toBe(401);
  });

  it('answers 415 for a non-JSON content type and 400 naming the problem for bad JSON or shape', async () => {
    const f = fixture('messenger-text.json');
    const wrongType = await postWebhook(stack.gatewayUrl, f.bytes, { signature: f.signature256, contentType: 'text/plain' });
    expect(wrongType.status).toBe(415);

    const malformed = await postWebhook(stack.gatewayUrl, '{"object":"page","entry":[');
    expect(malformed.status).toBe(400);
    expect(await errorOf(malformed)).toEqual({ code: 'malformed_json', message: expect.stringMatching(/not valid JSON/) });

    const badShape = await postWebhook(stack.gatewayUrl, JSON.stringify({ object: 'page', entry: [{ id: PAGE_A, time: 1, messaging: [{ sender: { id: 42 }, recipient: { id: PAGE_A }, timestamp: 1, message: { mid: 'm_1', text: 'x' } }] }] }));
    expect(badShape.status).toBe(400);
    expect((await errorOf(badShape)).message).toMatch(/entry\[0\]\.messaging\[0\]\.sender\.id/);
  });

  it('stores events of an account no channel owns, and unsupported kinds, and acknowledges them', async () => {
    const body = JSON.stringify({
      object: 'page',
      entry: [
        { id: '999000111', time: 1768485807187, messaging: [{ sender: { id: '55' }, recipient: { id: '999000111' }, timestamp: 1768485807000, message: { mid: 'm_unrouted', text: 'hello?' } }] },
        { id: PAGE_A, time: 1768485807187, changes: [{ field: 'feed', value: { item: 'post' } }] },
      ],
    });
    const res = await postWebhook(stack.gatewayUrl, body);
    expect(res.status).toBe(200);
    const { rows } = await stack.db.ownerPool.query('SELECT account_id, reason, event_type FROM unrouted_events ORDER BY id');
    expect(rows).toEqual(
      expect.arrayContaining([
        { account_id: '999000111', reason: 'unknown_account', event_type: 'message' },
        { account_id: PAGE_A, reason: 'unsupported_event', event_type: 'changes:feed' },
      ]),
    );
    await expect(stack.client.workflow.getHandle(`conversation/x/y/55`).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });

  it('fans a batched delivery out to one conversation per customer across tenants', async () => {
    const f = fixture('page-batched-two-entries.json');
    expect((await postWebhook(stack.gatewayUrl, f.bytes, { signature: f.signature256 })).status).toBe(200);
    const { events } = parseWebhookPayload(JSON.parse(f.bytes.toString('utf8')));
    const mids = events.map((e) => (e.kind === 'message' ? e.mid : ''));
    const rows = await eventually(async () => {
      const r = await stack.db.ownerPool.query<{ mid: string; tenant_id: string; customer_id: string }>(
        `SELECT m.mid, m.tenant_id, c.customer_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.direction = 'inbound' AND m.mid = ANY($1) ORDER BY m.mid`,
        [mids],
      );
      return r.rows.length === 3 ? r.rows : undefined;
    });
    for (const event of events) {
      expect(rows).toContainEqual({ mid: (event as { mid: string }).mid, tenant_id: channels[event.accountId]!.tenantId, customer_id: event.customerId });
    }
    expect(new Set(rows.map((r) => r.tenant_id)).size).toBe(2);
  });
});

describe('GET /webhooks/meta (verification handshake)', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(() => stack.close());

  const get = (query: string) => fetch(`${stack.gatewayUrl}/webhooks/meta?${query}`);

  it('echoes hub.challenge for the right verify token', async () => {
    const res = await get(`hub.mode=subscribe&hub.verify_token=${TEST_VERIFY_TOKEN}&hub.challenge=1158201444`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('1158201444');
  });

  it.each([
    ['a wrong token', 'hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1'],
    ['a wrong mode', `hub.mode=unsubscribe&hub.verify_token=${TEST_VERIFY_TOKEN}&hub.challenge=1`],
    ['no parameters', ''],
  ])('answers 403 for %s', async (_name, query) => {
    const res = await get(query);
    expect(res.status).toBe(403);
  });

  it('reports health and readiness', async () => {
    expect((await fetch(`${stack.gatewayUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${stack.gatewayUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok', audit: 'ok' } });
  });
});
