import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { addProduct } from '../../src/db/products';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { createTemporalClient } from '../../src/temporal/client';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { startLocalTemporal } from '../support/temporal-env';
import { createTestDatabase, eventually, startTestStack, testConfig, type TestStack } from '../support/stack';
import { errorOf, PAGE_A, postWebhook, textDelivery } from '../support/webhooks';

const CUSTOMER = '7291845503617724';
const TOKEN = 'EAAB-page-token-for-e2e';

const messengerDelivery = (mid: string, text: string, timestamp = Date.now()) => textDelivery({ pageId: PAGE_A, customerId: CUSTOMER, mid, text, timestamp });

describe('webhook → Temporal → worker → Postgres → Send API', () => {
  let stack: TestStack;
  let channelId: string;
  let tenantId: string;
  let n = 0;
  const nextMid = () => `m_e2e_${Date.now()}_${++n}`;

  const sendCalls = () => stack.sandbox.requests().filter((r) => r.method === 'POST' && r.path.endsWith('/messages'));
  const messagesFor = async (mid: string) =>
    (
      await stack.db.ownerPool.query<{ direction: string; status: string; mid: string | null; text: string; error: { code?: number } | null }>(
        `SELECT direction, status, mid, text, error FROM messages
         WHERE mid = $1 OR in_reply_to = (SELECT id FROM messages WHERE mid = $1) ORDER BY direction`,
        [mid],
      )
    ).rows;

  beforeAll(async () => {
    stack = await startTestStack();
    tenantId = (await createTenant(stack.db.pool, 'Shop A')).id;
    channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN })).id;
    await addProduct(stack.db.pool, tenantId, { name: 'Rain jacket', description: 'Waterproof jacket', price: 89.9, currency: 'EUR', stock: 4 });
  });
  afterAll(() => stack.close());
  beforeEach(async () => {
    stack.sandbox.reset();
    await stack.db.ownerPool.query(`UPDATE channels SET status = 'active', status_reason = NULL`);
  });

  it('one inbound message → exactly one reply at the Send API and two rows', async () => {
    const mid = nextMid();
    const res = await postWebhook(stack.gatewayUrl, messengerDelivery(mid, 'Do you have the rain jacket?'));
    expect(res.status).toBe(200);

    const rows = await eventually(async () => {
      const r = await messagesFor(mid);
      return r.length === 2 && r[1]!.status === 'sent' ? r : undefined;
    });
    expect(rows[0]).toMatchObject({ direction: 'inbound', status: 'received', mid });
    expect(rows[1]).toMatchObject({ direction: 'outbound', status: 'sent' });
    expect(rows[1]!.text).toMatch(/Rain jacket.*89\.90/);

    const calls = sendCalls();
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.path).toBe(`/${stack.config.GRAPH_API_VERSION}/${PAGE_A}/messages`);
    expect(call.body).toMatchObject({ recipient: { id: CUSTOMER }, messaging_type: 'RESPONSE', message: { text: rows[1]!.text, metadata: expect.stringMatching(/^sb:out:/) } });
    // The Send API's message_id is what we stored; the token reached the sandbox only as a hash.
    expect(rows[1]!.mid).toMatch(/^m_/);
    expect(JSON.stringify(stack.sandbox.requests())).not.toContain(TOKEN);
    expect(call.tokenHash).toMatch(/^sha256:/);
    // The decrypt that made this send possible is counted and attributed.
    const decrypts = await stack.db.ownerPool.query('SELECT purpose, count::int AS n FROM secret_decrypts WHERE tenant_id = $1', [tenantId]);
    expect(decrypts.rows).toEqual([{ purpose: 'graph.send', n: 1 }]);
  });

  it('the same delivery three times in a row and three times at once, inside one quiet window → one answer covering both', async () => {
    const sequential = nextMid();
    const body = messengerDelivery(sequential, 'hello');
    for (let i = 0; i < 3; i++) expect((await postWebhook(stack.gatewayUrl, body)).status).toBe(200);
    const concurrent = nextMid();
    const body2 = messengerDelivery(concurrent, 'hi there', Date.now() + 1);
    const statuses = await Promise.all([1, 2, 3].map(() => postWebhook(stack.gatewayUrl, body2).then((r) => r.status)));
    expect(statuses).toEqual([200, 200, 200]);

    // The answer goes to the newest message of the burst and covers both.
    const reply = await eventually(async () => (await messagesFor(concurrent)).find((m) => m.direction === 'outbound' && m.status === 'sent'));
    // Give a wrongly-duplicated reply time to show up before counting.
    await new Promise((r) => setTimeout(r, 1500));
    expect(sendCalls()).toHaveLength(1);
    const inbound = await stack.db.ownerPool.query<{ id: string }>('SELECT id FROM messages WHERE mid = ANY ($1) ORDER BY meta_timestamp', [[sequential, concurrent]]);
    expect(inbound.rows).toHaveLength(2);
    const covers = await stack.db.ownerPool.query<{ covers: string[] }>('SELECT covers FROM messages WHERE mid = $1', [reply.mid]);
    expect(covers.rows[0]!.covers).toEqual(inbound.rows.map((r) => r.id));
    expect(await messagesFor(sequential)).toHaveLength(1);
  });

  it('Send API failing twice with 500 → retried, still exactly one reply', async () => {
    stack.sandbox.failNext({ count: 2, preset: 'server_error' });
    const mid = nextMid();
    expect((await postWebhook(stack.gatewayUrl, messengerDelivery(mid, 'jacket price?'))).status).toBe(200);
    await eventually(async () => ((await messagesFor(mid)).find((m) => m.direction === 'outbound')?.status === 'sent' ? true : undefined), 30_000);
    const calls = sendCalls();
    expect(calls.map((c) => c.status)).toEqual([500, 500, 200]);
  });

  it('Send API answering 190 → one call, channel reauth_required, the reply parked with the code', async () => {
    stack.sandbox.failNext({ count: 1, preset: 'token_expired' });
    const mid = nextMid();
    // Its own customer: the parked reply stays with that conversation (delivered on a reconnect,
    // test/workflows/parked-sends.test.ts), out of the way of the other tests' conversation.
    const delivery = textDelivery({ pageId: PAGE_A, customerId: '7291845503617725', mid, text: 'anyone there?' });
    expect((await postWebhook(stack.gatewayUrl, delivery)).status).toBe(200);
    const outbound = await eventually(async () => (await messagesFor(mid)).find((m) => m.direction === 'outbound' && m.status === 'parked'));
    expect(outbound.error).toMatchObject({ type: 'GraphAuthExpired', reason: 'reauth_required', code: 190, subcode: 463 });
    const { rows } = await stack.db.ownerPool.query('SELECT status, status_reason FROM channels WHERE id = $1', [channelId]);
    expect(rows[0]).toMatchObject({ status: 'reauth_required', status_reason: expect.stringContaining('190') });
    await new Promise((r) => setTimeout(r, 1500));
    expect(sendCalls()).toHaveLength(1);
  });

  it('an echo of our own reply is recorded, never answered', async () => {
    const mid = nextMid();
    await postWebhook(stack.gatewayUrl, messengerDelivery(mid, 'hello'));
    const reply = await eventually(async () => (await messagesFor(mid)).find((m) => m.direction === 'outbound' && m.status === 'sent'));
    const { rows } = await stack.db.ownerPool.query<{ id: string }>('SELECT id FROM messages WHERE mid = $1', [reply.mid]);
    const now = Date.now();
    const echo = JSON.stringify({
      object: 'page',
      entry: [{ id: PAGE_A, time: now, messaging: [{ sender: { id: PAGE_A }, recipient: { id: CUSTOMER }, timestamp: now, message: { mid: reply.mid, is_echo: true, app_id: 618273940215567, metadata: `sb:out:${rows[0]!.id}`, text: reply.text } }] }],
    });
    expect((await postWebhook(stack.gatewayUrl, echo)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sendCalls()).toHaveLength(1);
    const count = await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM messages WHERE conversation_id = (SELECT conversation_id FROM messages WHERE mid = $1)', [mid]);
    expect(count.rows[0].n).toBeGreaterThanOrEqual(2);
    const dup = await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM messages WHERE mid = $1', [reply.mid]);
    expect(dup.rows[0].n).toBe(1);
  });
});

describe('Temporal unreachable', () => {
  it('answers 503 so Meta redelivers, and /readyz says why', async () => {
    const db = await createTestDatabase();
    const temporalEnv = await startLocalTemporal();
    const config = testConfig({ DATABASE_URL: db.url, TEMPORAL_ADDRESS: temporalEnv.address, TEMPORAL_RPC_TIMEOUT_MS: '1500' });
    const tenantId = (await createTenant(db.pool, 'Shop A')).id;
    const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
    await connectChannel(db.pool, new SecretVault(db.pool, keys), { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN });
    const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
    const temporal = createTemporalClient({ address: temporalEnv.address, namespace: 'default', dataConverter: await createDataConverter(codec) });
    const app = createGatewayApp({ config, pool: db.pool, temporal, codec, logger: createLogger('test', 'silent') });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      expect((await postWebhook(url, messengerDelivery('m_before_stop', 'hello'))).status).toBe(200);
      await temporalEnv.teardown();
      const started = Date.now();
      const res = await postWebhook(url, messengerDelivery('m_after_stop', 'hello again'));
      expect(res.status).toBe(503);
      expect((await errorOf(res)).code).toBe('temporarily_unavailable');
      expect(Date.now() - started).toBeLessThan(5000);
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ checks: { database: 'ok', temporal: 'unavailable', audit: 'ok' } });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await temporal.connection.close().catch(() => undefined);
      await db.drop();
    }
  });
});
