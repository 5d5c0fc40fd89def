import { MockActivityEnvironment } from '@temporalio/testing';
import { createParkedSendActivities } from '../../activities/parked-sends';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { DAY_MS } from '../../src/shared/outbound';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { conversationStateQuery } from '../../workflows/definitions';
import { notificationWorkflowId } from '../../workflows/token-lifecycle-definitions';
import { createTestApiKey, eventually, startTestStack, type TestStack } from '../support/stack';
import { PAGE_A, postWebhook, textDelivery } from '../support/webhooks';

/**
 * Replies parked while a channel needs reauthorization (issue 8), on the real path: the gateway,
 * the Temporal dev server, the worker with its real activities, PostgreSQL and the Graph sandbox.
 * Conversation runs idle out after 5 s here (testConfig), so the later steps also prove that a
 * new run picks the parked replies up from the database.
 */

const TOKEN = 'EAAB-page-token-parked-sends';
const NEW_TOKEN = 'EAAB-page-token-after-reconnect';

interface OutboundRow {
  id: string;
  status: string;
  error: { type?: string; reason?: string; code?: number; subcode?: number; fbtraceId?: string } | null;
  in_reply_to: string | null;
  created_at: Date;
}

describe('replies parked while the channel needs reauthorization', () => {
  let stack: TestStack;
  let tenantId: string;
  let channelId: string;
  let apiKey: string;
  let n = 0;
  const mid = () => `m_parked_${Date.now()}_${++n}`;

  const sends = () => stack.sandbox.requests().filter((r) => r.method === 'POST' && r.path.endsWith('/messages'));
  /** Our outbound ids, in the order the sandbox accepted them. */
  const delivered = () =>
    sends()
      .filter((r) => r.status === 200)
      .map((r) => String((r.body as { message?: { metadata?: string } }).message?.metadata ?? '').replace(/^sb:out:/, ''));
  const channelStatus = async () => (await stack.db.ownerPool.query<{ status: string }>('SELECT status FROM channels WHERE id = $1', [channelId])).rows[0]!.status;
  const count = async (sql: string, params: unknown[]) => (await stack.db.ownerPool.query<{ n: number }>(sql, params)).rows[0]!.n;
  const reauthEvents = () => count(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'channel.reauth_required' AND resource = $1`, [`channel:${channelId}`]);
  const episodes = () => count(`SELECT count(*)::int AS n FROM notification_episodes WHERE channel_id = $1 AND kind = 'reauth_required'`, [channelId]);

  /** The reply to one customer message (its newest), once it reached `status`. */
  async function replyTo(customerMid: string, status: string): Promise<OutboundRow> {
    return eventually(async () => {
      const { rows } = await stack.db.ownerPool.query<OutboundRow>(
        `SELECT o.id, o.status, o.error, o.in_reply_to, o.created_at FROM messages o JOIN messages i ON i.id = o.in_reply_to
          WHERE i.mid = $1 AND o.direction = 'outbound'`,
        [customerMid],
      );
      return rows[0]?.status === status ? rows[0] : undefined;
    }, 30_000);
  }

  async function customerWrites(customerId: string, text: string, timestamp = Date.now()): Promise<string> {
    const m = mid();
    const res = await postWebhook(stack.gatewayUrl, textDelivery({ pageId: PAGE_A, customerId, mid: m, text, timestamp }));
    expect(res.status).toBe(200);
    return m;
  }

  /** What the reconnect saga does once the new token is stored: flip to active (connectChannel), then resume. */
  async function reconnect(): Promise<{ conversations: number; parked: number }> {
    await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: NEW_TOKEN });
    return resume();
  }

  function resume(): Promise<{ conversations: number; parked: number }> {
    const activities = createParkedSendActivities({ pool: stack.db.pool, logger: createLogger('test', 'silent'), conversationIdleTimeoutMs: stack.config.CONVERSATION_IDLE_TIMEOUT_MS });
    // The activity's own context: the worker's task queue and a client of the same namespace.
    const env = new MockActivityEnvironment({ taskQueue: stack.config.TEMPORAL_TASK_QUEUE, isLocal: false }, { client: stack.client });
    return env.run(activities.resumeParkedSends, { tenantId, channelId });
  }

  async function apiMessages(conversationId: string) {
    const res = await fetch(`${stack.gatewayUrl}/api/v1/tenants/${tenantId}/conversations/${conversationId}`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { messages: Array<{ id: string; status: string; statusReason: string | null }> }).messages;
  }

  async function conversationOf(outboundId: string): Promise<string> {
    return (await stack.db.ownerPool.query<{ conversation_id: string }>('SELECT conversation_id FROM messages WHERE id = $1', [outboundId])).rows[0]!.conversation_id;
  }

  beforeAll(async () => {
    stack = await startTestStack();
    tenantId = (await createTenant(stack.db.pool, 'Parking shop')).id;
    channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN })).id;
    apiKey = await createTestApiKey(stack.db.pool, tenantId, 'developer');
  });
  afterAll(() => stack.close());

  describe('one conversation through a token that dies and a reconnect', () => {
    const customer = '7291845503617001';
    const parkedOrder: string[] = [];

    it('(a) a 190 on a send marks the channel reauth_required once and parks the reply with its reason, visible in the query', async () => {
      stack.sandbox.failNext({ count: 1, preset: 'token_expired', match: '/messages' });
      const first = await customerWrites(customer, 'Do you have the rain jacket?');
      const row = await replyTo(first, 'parked');
      parkedOrder.push(row.id);

      expect(row.error).toEqual({ type: 'GraphAuthExpired', reason: 'reauth_required', code: 190, subcode: 463, fbtraceId: expect.any(String) });
      expect(await channelStatus()).toBe('reauth_required');
      expect(await reauthEvents()).toBe(1);
      expect(await episodes()).toBe(1);
      // The reauth path ran inside a local activity with the worker's client: the episode's notification was started.
      const episode = (await stack.db.ownerPool.query<{ id: string; reason: string }>('SELECT id, reason FROM notification_episodes WHERE channel_id = $1', [channelId])).rows[0]!;
      expect(episode.reason).toBe('GraphAuthExpired (code 190)');
      await expect(stack.client.workflow.getHandle(notificationWorkflowId(episode.id)).describe()).resolves.toMatchObject({ workflowId: notificationWorkflowId(episode.id) });
      expect(sends()).toHaveLength(1);

      const state = await eventually(async () => {
        const s = await stack.client.workflow.getHandle(conversationWorkflowId(tenantId, channelId, customer)).query(conversationStateQuery);
        return s.parkedSends.length === 1 ? s : undefined;
      });
      expect(state.parkedSends).toEqual([{ outboundId: row.id, author: 'bot', waitingUntil: null, reason: 'reauth_required' }]);

      // The tenant sees it parked, with the reason.
      const reply = (await apiMessages(await conversationOf(row.id))).find((m) => m.id === row.id)!;
      expect(reply.status).toBe('parked');
      expect(reply.statusReason).toMatch(/^Parked: the channel needs reauthorization \(GraphAuthExpired, Meta error 190\/463\)/);
    });

    it('(b) three more customer messages are accepted, stored and answered into the parked list, with no Graph send', async () => {
      for (const text of ['hello?', 'is anyone there?', 'I need the jacket in M']) {
        const m = await customerWrites(customer, text);
        const row = await replyTo(m, 'parked');
        parkedOrder.push(row.id);
        expect(row.error).toMatchObject({ reason: 'reauth_required' });
        const inbound = await stack.db.ownerPool.query<{ status: string; text: string }>('SELECT status, text FROM messages WHERE mid = $1', [m]);
        expect(inbound.rows).toEqual([{ status: 'received', text }]);
      }
      expect(sends()).toHaveLength(1);
      expect(await reauthEvents()).toBe(1);
      expect(await episodes()).toBe(1);
      const stored = await stack.db.ownerPool.query<{ id: string }>(
        `SELECT id FROM messages WHERE channel_id = $1 AND status = 'parked' ORDER BY created_at`,
        [channelId],
      );
      expect(stored.rows.map((r) => r.id)).toEqual(parkedOrder);
    });

    it('(c) after the reconnect they are sent exactly once each, in the order they were parked', async () => {
      expect(await reconnect()).toEqual({ conversations: 1, parked: 4 });
      await eventually(async () => delivered().length === 4, 30_000);
      expect(delivered()).toEqual(parkedOrder);
      const { rows } = await stack.db.ownerPool.query<{ id: string; status: string; error: unknown }>('SELECT id, status, error FROM messages WHERE id = ANY ($1)', [parkedOrder]);
      expect(rows.map((r) => [r.status, r.error])).toEqual(parkedOrder.map(() => ['sent', null]));

      // A second resume (a retried saga step) finds nothing parked and sends nothing more.
      expect(await resume()).toEqual({ conversations: 0, parked: 0 });
      await new Promise((r) => setTimeout(r, 1500));
      expect(delivered()).toEqual(parkedOrder);
      expect(sends()).toHaveLength(5);
    });
  });

  it('(d) a reply whose window closed while it was parked is recorded as expired with that reason', async () => {
    await stack.db.ownerPool.query(`UPDATE channels SET status = 'reauth_required' WHERE id = $1`, [channelId]);
    stack.sandbox.reset();
    // Meta's timestamp sets the window: the message is 24 h old a few seconds from now.
    const writtenAt = Date.now() - DAY_MS + 10_000;
    const m = await customerWrites('7291845503617002', 'still there?', writtenAt);
    const row = await replyTo(m, 'parked');
    expect(row.error).toMatchObject({ type: 'ChannelReauthRequired', reason: 'reauth_required' });

    await new Promise((r) => setTimeout(r, Math.max(0, writtenAt + DAY_MS + 1000 - Date.now())));
    expect(await reconnect()).toEqual({ conversations: 1, parked: 1 });
    const expired = await replyTo(m, 'outside_window');
    expect(expired.error).toEqual({ type: 'OutsideWindow', reason: expect.stringContaining('parked while the channel needed reauthorization, and the messaging window closed meanwhile') });
    expect(expired.error!.reason).toContain('24-hour window is closed');
    expect(sends()).toHaveLength(0);

    const shown = (await apiMessages(await conversationOf(row.id))).find((x) => x.id === row.id)!;
    expect(shown.status).toBe('outside_window');
    expect(shown.statusReason).toMatch(/^Not sent: parked while the channel needed reauthorization, and the messaging window closed meanwhile/);
  });

  it('(e) a run that completed idle with a parked reply is started again by resumeParkedSends and delivers it', async () => {
    await stack.db.ownerPool.query(`UPDATE channels SET status = 'reauth_required' WHERE id = $1`, [channelId]);
    stack.sandbox.reset();
    const customer = '7291845503617003';
    const m = await customerWrites(customer, 'any news on my order?');
    const row = await replyTo(m, 'parked');
    const handle = stack.client.workflow.getHandle(conversationWorkflowId(tenantId, channelId, customer));
    const idleRun = await eventually(async () => {
      const d = await handle.describe();
      return d.status.name === 'COMPLETED' ? d.runId : undefined;
    }, 30_000);

    expect(await reconnect()).toEqual({ conversations: 1, parked: 1 });
    await replyTo(m, 'sent');
    expect(delivered()).toEqual([row.id]);
    expect((await handle.describe()).runId).not.toBe(idleRun);
  });
});
