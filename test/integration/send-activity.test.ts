import { randomBytes, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createGraphActivities } from '../../activities/graph';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { sendBudgetStatus } from '../../src/db/send-budget';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { GraphClient } from '../../src/meta/graph-client';
import { startGraphSandbox, type GraphSandbox } from '../../src/sandbox/graph-sandbox';
import type { SendFailureDetails, SendOutboundInput } from '../../src/shared/types';
import { createTestDatabase, LogCapture, type TestDatabase } from '../support/stack';

const TOKEN = 'EAAB-send-activity-token-DO-NOT-LOG';
const PSID = '7291845503617724';
const TEXT = 'Die Regenjacke gibt es noch in Größe M.';
const GRAPH_TIMEOUT_MS = 400;

let db: TestDatabase;
let sandbox: GraphSandbox;
let vault: SecretVault;
let tenantId: string;
let channelId: string;
let conversationId: string;
let nextAccount = 204829376511000;
const logs = new LogCapture();

function activitiesWith(graphBase: string) {
  const graph = new GraphClient({ graphBase, instagramBase: graphBase, version: 'v23.0', timeoutMs: GRAPH_TIMEOUT_MS });
  return createGraphActivities({ pool: db.pool, vault, graph, logger: createLogger('test', 'debug', { destination: logs.stream }) });
}
let activities: ReturnType<typeof createGraphActivities>;

beforeAll(async () => {
  db = await createTestDatabase();
  sandbox = await startGraphSandbox({ port: 0 });
  vault = new SecretVault(db.pool, new StaticKeyProvider(new Map([[1, randomBytes(32)]])));
  tenantId = (await createTenant(db.pool, 'Activity Shop')).id;
  ({ channelId, conversationId } = await newChannel());
  activities = activitiesWith(sandbox.url);
});
afterAll(async () => {
  await sandbox.close();
  await db.drop();
});
beforeEach(() => sandbox.reset());

async function newChannel(): Promise<{ channelId: string; conversationId: string }> {
  const { id } = await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId: String(nextAccount++), accessToken: TOKEN });
  const { rows } = await db.ownerPool.query<{ id: string }>(
    'INSERT INTO conversations (tenant_id, channel_id, customer_id) VALUES ($1, $2, $3) RETURNING id',
    [tenantId, id, PSID],
  );
  return { channelId: id, conversationId: rows[0]!.id };
}

async function newOutbound(ref = { channelId, conversationId }, text = TEXT): Promise<string> {
  const { rows } = await db.ownerPool.query<{ id: string }>(
    `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, text, status)
     VALUES ($1, $2, $3, 'outbound', 'bot', 'text', $4, 'pending') RETURNING id`,
    [tenantId, ref.channelId, ref.conversationId, text],
  );
  return rows[0]!.id;
}

async function row(id: string) {
  const { rows } = await db.ownerPool.query<{ status: string; mid: string | null; messaging_type: string | null; message_tag: string | null; sent_at: Date | null }>(
    'SELECT status, mid, messaging_type, message_tag, sent_at FROM messages WHERE id = $1',
    [id],
  );
  return rows[0]!;
}

function sendInput(outboundId: string, over: Partial<SendOutboundInput> = {}): SendOutboundInput {
  return { tenantId, channelId, outboundId, customerId: PSID, messagingType: 'RESPONSE', ...over };
}

// The SDK logs every failed activity at error level; these failures are the point of the tests.
const quietSdk = new DefaultLogger('ERROR', () => undefined);
const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment(undefined, { logger: quietSdk }).run(fn, ...args);

/** The ApplicationFailure the activity threw, with its first details entry. */
async function failureOf(promise: Promise<unknown>): Promise<{ type: string | undefined | null; nonRetryable: boolean | undefined | null; details: SendFailureDetails }> {
  const err = await promise.then(
    () => {
      throw new Error('expected the activity to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  const f = err as ApplicationFailure;
  return { type: f.type, nonRetryable: f.nonRetryable, details: f.details?.[0] as SendFailureDetails };
}

const sends = () => sandbox.requests().filter((r) => r.method === 'POST' && r.path.endsWith('/messages'));

describe('sendOutbound', () => {
  it('sends once with RESPONSE and our metadata, stores the mid and the policy', async () => {
    const id = await newOutbound();
    const result = await run(activities.sendOutbound, sendInput(id));

    const calls = sends();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.path).toMatch(/^\/v23\.0\/\d+\/messages$/);
    expect(calls[0]!.body).toEqual({ recipient: { id: PSID }, messaging_type: 'RESPONSE', message: { text: TEXT, metadata: `sb:out:${id}` } });
    expect(result.messageId).toBe(calls[0]!.messageId);
    expect(await row(id)).toMatchObject({ status: 'sent', mid: result.messageId, messaging_type: 'RESPONSE', message_tag: null });
  });

  it('never calls Meta again for a row that already went out (a retry after a crash)', async () => {
    const id = await newOutbound();
    const first = await run(activities.sendOutbound, sendInput(id));
    const again = await run(activities.sendOutbound, sendInput(id));
    expect(again).toEqual(first);
    expect(sends()).toHaveLength(1);

    // Delivered or read rows too (a receipt may overtake the send's answer).
    await db.ownerPool.query(`UPDATE messages SET status = 'read' WHERE id = $1`, [id]);
    expect(await run(activities.sendOutbound, sendInput(id))).toEqual(first);
    expect(sends()).toHaveLength(1);
  });

  it('sends a human agent message with MESSAGE_TAG and tag HUMAN_AGENT beside it', async () => {
    const id = await newOutbound();
    await run(activities.sendOutbound, sendInput(id, { messagingType: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' }));
    expect(sends()[0]!.body).toEqual({
      recipient: { id: PSID },
      messaging_type: 'MESSAGE_TAG',
      tag: 'HUMAN_AGENT',
      message: { text: TEXT, metadata: `sb:out:${id}` },
    });
    expect(await row(id)).toMatchObject({ status: 'sent', messaging_type: 'MESSAGE_TAG', message_tag: 'HUMAN_AGENT' });
  });

  it('refuses input that breaks the messaging policy, without calling Meta', async () => {
    const id = await newOutbound();
    const noTag = await failureOf(run(activities.sendOutbound, sendInput(id, { messagingType: 'MESSAGE_TAG' })));
    expect(noTag).toMatchObject({ type: 'InvalidSendInput', nonRetryable: true });
    const tagOnResponse = run(activities.sendOutbound, sendInput(id, { tag: 'HUMAN_AGENT' }));
    await expect(tagOnResponse).rejects.toThrow(/invalid sendOutbound input: tag/);
    expect(sends()).toHaveLength(0);
    expect((await row(id)).status).toBe('pending');
  });

  it('fails OutboundMissing for a row that does not exist', async () => {
    expect(await failureOf(run(activities.sendOutbound, sendInput(randomUUID())))).toMatchObject({ type: 'OutboundMissing', nonRetryable: true });
  });

  it('timeout (never answered): AmbiguousSend, not retried, the row stays pending for the echo to settle', async () => {
    const id = await newOutbound();
    sandbox.failNext({ count: 1, preset: 'timeout', delayMs: 5_000 });
    const f = await failureOf(run(activities.sendOutbound, sendInput(id)));
    expect(f).toEqual({ type: 'AmbiguousSend', nonRetryable: true, details: { errorClass: 'ambiguous', reauth: false } });
    expect(sends()).toHaveLength(1);
    expect(await row(id)).toMatchObject({ status: 'pending', mid: null });
  });

  it('an accepted send whose answer is lost (drop_after_accept) is AmbiguousSend too', async () => {
    const id = await newOutbound();
    sandbox.failNext({ count: 1, preset: 'drop_after_accept' });
    expect(await failureOf(run(activities.sendOutbound, sendInput(id)))).toMatchObject({ type: 'AmbiguousSend', nonRetryable: true });
    expect(sends()[0]!.messageId).toBeDefined();
  });

  it('a refused connection reached nobody: retryable GraphTransient', async () => {
    const closed = await startGraphSandbox({ port: 0 });
    await closed.close();
    const id = await newOutbound();
    const f = await failureOf(run(activitiesWith(closed.url).sendOutbound, sendInput(id)));
    expect(f).toMatchObject({ type: 'GraphTransient', nonRetryable: false, details: { errorClass: 'transient' } });
  });

  it('rate limited: the channel is paused, GraphRateLimited carries the delay and is left to the workflow', async () => {
    const { channelId: ch, conversationId: conv } = await newChannel();
    const id = await newOutbound({ channelId: ch, conversationId: conv });
    sandbox.failNext({ count: 1, preset: 'rate_limit' });
    const before = Date.now();
    const f = await failureOf(run(activities.sendOutbound, sendInput(id, { channelId: ch })));
    expect(f).toMatchObject({ type: 'GraphRateLimited', nonRetryable: true, details: { errorClass: 'rate_limited', code: 613, subcode: 2534040, retryAfterMs: 10_000 } });

    const status = await sendBudgetStatus(db.pool, tenantId, ch);
    expect(status!.pauseReason).toBe('code 613');
    expect(status!.pausedUntil!.getTime()).toBeGreaterThanOrEqual(before + 10_000);
    expect(status!.throttleFactor).toBeLessThan(1);
    const slot = await run(activities.reserveSendSlot, { tenantId, channelId: ch });
    expect(slot).toMatchObject({ granted: false, reason: 'paused' });
    expect((slot as { waitMs: number }).waitMs).toBeGreaterThan(8_000);
    expect((slot as { waitMs: number }).waitMs).toBeLessThanOrEqual(10_000);
  });

  it("rate limited with Meta's regain time: that is the delay and the pause", async () => {
    const { channelId: ch, conversationId: conv } = await newChannel();
    const id = await newOutbound({ channelId: ch, conversationId: conv });
    sandbox.setUsage({ businessUseCaseUsage: { '104829376511820': [{ type: 'messenger', call_count: 100, total_cputime: 40, total_time: 40, estimated_time_to_regain_access: 3 }] } });
    sandbox.failNext({ count: 1, preset: 'rate_limit' });
    const f = await failureOf(run(activities.sendOutbound, sendInput(id, { channelId: ch })));
    expect(f.details.retryAfterMs).toBe(180_000);
    const status = await sendBudgetStatus(db.pool, tenantId, ch);
    expect(status!.pausedUntil!.getTime() - Date.now()).toBeGreaterThan(170_000);
    expect(status!.throttleFactor).toBeCloseTo(0.1, 9); // 100 % usage: the floor
  });

  it('feeds the usage headers of a successful send into the budget', async () => {
    const { channelId: ch, conversationId: conv } = await newChannel();
    sandbox.setUsage({ appUsage: { call_count: 87.5, total_time: 10, total_cputime: 10 } });
    await run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch }));
    expect((await sendBudgetStatus(db.pool, tenantId, ch))!.throttleFactor).toBeCloseTo(0.55, 9);

    sandbox.setUsage({});
    await run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch }));
    expect((await sendBudgetStatus(db.pool, tenantId, ch))!.throttleFactor).toBeCloseTo(0.825, 9);
  });

  it('auth errors are not retried and ask for reauthorization', async () => {
    const id = await newOutbound();
    sandbox.failNext({ count: 1, preset: 'token_expired' });
    const f = await failureOf(run(activities.sendOutbound, sendInput(id)));
    expect(f).toMatchObject({ type: 'GraphAuthExpired', nonRetryable: true, details: { errorClass: 'auth', reauth: true, code: 190, subcode: 463 } });
    expect(f.details.fbtraceId).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it.each([
    ['server_error', 'GraphTransient', false],
    ['outside_window', 'OutsideMessagingWindow', true],
    ['user_unavailable', 'RecipientUnavailable', true],
  ] as const)('%s → %s (nonRetryable %s), as classified once', async (preset, type, nonRetryable) => {
    const id = await newOutbound();
    sandbox.failNext({ count: 1, preset });
    expect(await failureOf(run(activities.sendOutbound, sendInput(id)))).toMatchObject({ type, nonRetryable, details: { reauth: false } });
  });

  it('refuses to send on a channel that is not active: reauth_required asks for the reply to be parked, disabled fails it', async () => {
    const { channelId: ch, conversationId: conv } = await newChannel();
    const decrypts = async () => (await db.ownerPool.query<{ n: number }>("SELECT coalesce(sum(count), 0)::int AS n FROM secret_decrypts WHERE tenant_id = $1 AND purpose = 'graph.send'", [tenantId])).rows[0]!.n;
    const before = await decrypts();
    await db.ownerPool.query(`UPDATE channels SET status = 'reauth_required' WHERE id = $1`, [ch]);
    const f = await failureOf(run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch })));
    expect(f).toEqual({ type: 'ChannelReauthRequired', nonRetryable: true, details: { errorClass: 'reauth_required', reauth: true } });
    await db.ownerPool.query(`UPDATE channels SET status = 'disabled' WHERE id = $1`, [ch]);
    const g = await failureOf(run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch })));
    expect(g).toEqual({ type: 'ChannelInactive', nonRetryable: true, details: { errorClass: 'channel_inactive', reauth: false } });
    expect(sends()).toHaveLength(0);
    // Refused before the token is decrypted.
    expect(await decrypts()).toBe(before);
  });

  it('never writes the token or the message text to a log', async () => {
    logs.lines.length = 0;
    const { channelId: ch, conversationId: conv } = await newChannel();
    await run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch }));
    sandbox.failNext({ count: 1, preset: 'rate_limit' });
    await run(activities.sendOutbound, sendInput(await newOutbound({ channelId: ch, conversationId: conv }), { channelId: ch })).catch(() => undefined);
    const all = logs.lines.join('\n');
    expect(all).toContain('"msg":"sent"');
    expect(all).toContain('send throttled by Meta');
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain('Regenjacke');
  });
});

describe('reserveSendSlot', () => {
  it('grants from the channel budget, and fails ChannelMissing (not retried) for an unknown channel', async () => {
    const { channelId: ch } = await newChannel();
    expect(await run(activities.reserveSendSlot, { tenantId, channelId: ch })).toEqual({ granted: true });
    const err = await run(activities.reserveSendSlot, { tenantId, channelId: randomUUID() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'ChannelMissing', nonRetryable: true });
  });
});
