import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { createSession } from '../../src/auth/sessions';
import { connectChannel, findChannelByAccount, type ChannelRoute } from '../../src/db/channels';
import { consumeOAuthState, createOAuthState } from '../../src/db/onboarding';
import { createTenant } from '../../src/db/tenants';
import { dispatchToConversation } from '../../src/gateway/conversation-dispatch';
import { createLogger } from '../../src/logger';
import { GraphClient } from '../../src/meta/graph-client';
import { createOAuthClient } from '../../src/meta/oauth-client';
import { startSmtpCapture, type SmtpCapture } from '../../src/notifications/smtp-capture';
import { dialogUrl } from '../../src/portal/dialog-urls';
import type { MessageEvent } from '../../src/shared/types';
import { DAY_MS, tokenPolicy } from '../../src/shared/token-policy';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { conversationStateQuery } from '../../workflows/definitions';
import type { NotificationResult, notificationWorkflow } from '../../workflows/notification';
import { beginOAuthUpdate } from '../../workflows/onboarding-definitions';
import type { reconnectWorkflow } from '../../workflows/reconnect';
import {
  notificationWorkflowId,
  reconnectOAuthCallbackUpdate,
  reconnectStatusQuery,
  reconnectWorkflowId,
  type ReconnectStatus,
  type TokenRotationTotals,
} from '../../workflows/token-lifecycle-definitions';
import type { tokenRotationWorkflow } from '../../workflows/token-rotation';
import { startSandboxedDatabase, type SandboxedDatabase } from '../support/saga-harness';
import { createTestAccount, eventually, installQuietRuntime, required } from '../support/stack';
import { startTimeSkippingEnv } from '../support/time-skipping';

/**
 * Issue 8's whole episode in one run on Temporal's time-skipping test server, with the REAL
 * workflows and activities against PostgreSQL, the Graph sandbox and a local SMTP capture: an
 * Instagram-Login token due for refresh dies at Meta, the daily sweep's refresh fails with 190, the
 * channel becomes reauth_required once and the tenant is e-mailed once; the customer keeps writing
 * and the replies are parked, not sent; the reconnect saga (through the sandbox's consent dialog)
 * brings the channel back and the parked replies go out once each, in order; the next day's sweep
 * leaves the fresh token alone and opens nothing.
 *
 * Time stands still except where the flow needs it (`pass`): everything here waits through a plain
 * client, because waiting on a workflow result through the environment's client lets the server
 * jump to its next deadline (a conversation's idle timer, the saga's 7-day wait, or years away).
 */

const IDLE_MS = 10 * 60_000;
const policy = tokenPolicy({ refreshWindowDays: 10, expiryWarningDays: 7 });

let sd: SandboxedDatabase;
let mail: SmtpCapture;
let env: TestWorkflowEnvironment;
let bundleCode: string;

beforeAll(async () => {
  installQuietRuntime();
  bundleCode = readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8');
  sd = await startSandboxedDatabase();
  mail = await startSmtpCapture();
  env = await startTimeSkippingEnv();
});

afterAll(async () => {
  await env?.teardown();
  await mail?.close();
  await sd?.close();
});

interface OutboundRow {
  id: string;
  status: string;
  error: { type?: string; reason?: string } | null;
}

it('a refresh failing with 190: reauth_required once, one e-mail, three replies parked; after the reconnect they are sent once each, in order; the next sweep opens nothing', async () => {
  const { db, sandbox, config, vault } = sd;
  const taskQueue = `token-episode-${randomBytes(4).toString('hex')}`;
  const activities = createActivities({
    pool: db.pool,
    vault,
    logger: createLogger('test', 'silent'),
    graph: new GraphClient({ graphBase: sandbox.url, instagramBase: sandbox.url, version: config.GRAPH_API_VERSION, timeoutMs: config.GRAPH_API_TIMEOUT_MS }),
    oauth: createOAuthClient(config),
    conversationIdleTimeoutMs: IDLE_MS,
    notifications: { smtpUrl: mail.url, from: 'Switchboard <notifications@switchboard.test>', publicBaseUrl: 'http://127.0.0.1:3000', production: false },
  });
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: { code: bundleCode }, activities });
  // A plain client: waiting on it does not unlock time skipping.
  const client = new Client({ connection: env.connection, namespace: env.namespace ?? 'default' });

  // The sandbox's OAuth clock (token age and expiry at "Meta") follows the server's.
  const syncSandbox = async () => {
    const lag = (await env.currentTimeMs()) - (Date.now() + sandbox.oauthState().clockOffsetMs);
    if (lag > 0) sandbox.advanceOAuthClock(lag);
  };
  const pass = async (ms: number) => {
    await env.sleep(ms);
    await syncSandbox();
  };
  let sweeps = 0;
  const sweep = async (): Promise<TokenRotationTotals> =>
    client.workflow.execute<typeof tokenRotationWorkflow>('tokenRotationWorkflow', { taskQueue, workflowId: `token-episode-sweep-${++sweeps}`, args: [{ policy, concurrency: 4 }] });

  await worker.runUntil(async () => {
    await syncSandbox();
    const t0 = await env.currentTimeMs();

    // An Instagram-Login channel whose 60-day token is 55 days old: inside the 10-day window, well past 24 h.
    const { id: tenantId } = await createTenant(db.pool, 'Atelier episode');
    const owner = await createTestAccount(db.pool, tenantId, 'owner');
    const accountId = `17841460${String(Date.now()).slice(-9)}`;
    const [seeded] = sandbox.seedTokens([{ kind: 'instagram', id: accountId, issuedAt: t0 - 55 * DAY_MS, expiresAt: t0 + 5 * DAY_MS }]);
    const { id: channelId } = await connectChannel(db.pool, vault, { tenantId, platform: 'instagram', accountId, accessToken: seeded!.accessToken, graphApi: 'instagram', tokenExpiresAt: new Date(t0 + 5 * DAY_MS) });
    await db.ownerPool.query('UPDATE channels SET token_issued_at = $2 WHERE id = $1', [channelId, new Date(t0 - 55 * DAY_MS)]);
    // Routed as the gateway routes a webhook to it.
    const route: ChannelRoute | null = await findChannelByAccount(db.pool, 'instagram', accountId);
    if (!route) throw new Error('the channel is not routable');
    expect(route).toMatchObject({ id: channelId, tenantId, status: 'active' });

    const customerId = `9${String(Date.now()).slice(-15)}`;
    const conversation = () => client.workflow.getHandle(conversationWorkflowId(tenantId, channelId, customerId));
    let n = 0;
    /** A customer message, handed to its conversation as the gateway does (signal-with-start). */
    const customerWrites = async (text: string): Promise<string> => {
      const mid = `aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE${randomBytes(6).toString('hex')}_${++n}`;
      const event: MessageEvent = { kind: 'message', platform: 'instagram', accountId, customerId, timestamp: await env.currentTimeMs(), dedupeKey: `mid:${mid}`, mid, text, attachments: [] };
      await dispatchToConversation(client, { taskQueue, idleTimeoutMs: IDLE_MS }, route, event);
      return mid;
    };
    const replyTo = (customerMid: string, status: string) =>
      eventually(async () => {
        const { rows } = await db.ownerPool.query<OutboundRow>(
          `SELECT o.id, o.status, o.error FROM messages o JOIN messages i ON i.id = o.in_reply_to WHERE i.mid = $1 AND o.direction = 'outbound'`,
          [customerMid],
        );
        return rows[0]?.status === status ? rows[0] : undefined;
      }, 30_000);
    const sends = () => sandbox.requests().filter((r) => r.method === 'POST' && r.path.endsWith('/messages'));
    /** Our outbound ids, in the order the sandbox accepted them. */
    const delivered = () =>
      sends()
        .filter((r) => r.status === 200)
        .map((r) => String((r.body as { message?: { metadata?: string } }).message?.metadata ?? '').replace(/^sb:out:/, ''));
    const refreshCalls = () => sandbox.requests().filter((r) => r.path === '/refresh_access_token');
    const count = async (sql: string, params: unknown[]) => (await db.ownerPool.query<{ n: number }>(sql, params)).rows[0]!.n;
    const reauthEvents = () => count(`SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1 AND action = 'channel.reauth_required'`, [tenantId]);
    const episodes = async () =>
      (await db.ownerPool.query<{ id: string; kind: string; closed_at: Date | null; closed_reason: string | null }>('SELECT id, kind, closed_at, closed_reason FROM notification_episodes WHERE channel_id = $1 ORDER BY opened_at', [channelId])).rows;
    const channelRow = async () => (await db.ownerPool.query<{ status: string; status_reason: string | null; access_token_ciphertext: Buffer }>('SELECT status, status_reason, access_token_ciphertext FROM channels WHERE id = $1', [channelId])).rows[0]!;
    // The test server has no visibility (no workflow listing): what notification runs did shows in the audit chain.
    const notificationEvents = async () =>
      (await db.ownerPool.query<{ action: string; resource: string }>(`SELECT action, resource FROM audit_events WHERE tenant_id = $1 AND action LIKE 'notification.%' ORDER BY id`, [tenantId])).rows;

    // While the token works the conversation is answered through the Send API.
    const before = await customerWrites('Hi! Is the linen shirt still available?');
    const answered = await replyTo(before, 'sent');
    expect(delivered()).toEqual([answered.id]);

    // Meta kills the token (a password change); the daily sweep's refresh meets 190.
    sandbox.invalidateTokens(accountId);
    expect(await sweep()).toEqual({ channels: 1, byOutcome: { reauth_required: 1 }, critical: 1 });
    expect(refreshCalls().map((r) => r.status)).toEqual([400]);
    expect(await channelRow()).toMatchObject({ status: 'reauth_required', status_reason: 'token_refresh_failed (code 190/460)' });
    expect(await reauthEvents()).toBe(1);
    const opened = await episodes();
    expect(opened.map((e) => [e.kind, e.closed_at])).toEqual([['reauth_required', null]]);
    const episodeId = opened[0]!.id;

    // The episode's one notification runs for real: one e-mail to the owner, over SMTP.
    const notify: WorkflowHandle<typeof notificationWorkflow> = client.workflow.getHandle(notificationWorkflowId(episodeId));
    await eventually(async () => (await notify.describe()).status.name === 'COMPLETED', 30_000);
    expect(await notify.result()).toEqual<NotificationResult>({ episodeId, outcome: 'notified', email: 'sent', webhook: null });
    expect(mail.messages().map((m) => m.to)).toEqual([[owner.email]]);
    const notified = await notificationEvents();
    expect(notified).toHaveLength(1);
    expect(notified[0]!.action).toBe('notification.sent');

    // The customer writes three more times: each message is stored and answered, each reply parked, none sent.
    const parkedOrder: string[] = [];
    for (const text of ['Hello?', 'Do you ship to Vienna?', 'I would take it in M.']) {
      const mid = await customerWrites(text);
      const row = await replyTo(mid, 'parked');
      expect(row.error).toMatchObject({ type: 'ChannelReauthRequired', reason: 'reauth_required' });
      parkedOrder.push(row.id);
      expect((await db.ownerPool.query('SELECT status, text FROM messages WHERE mid = $1', [mid])).rows).toEqual([{ status: 'received', text }]);
    }
    expect(new Set(parkedOrder).size).toBe(3);
    const state = await conversation().query(conversationStateQuery);
    expect(state.parkedSends).toEqual(parkedOrder.map((outboundId) => ({ outboundId, author: 'bot', waitingUntil: null, reason: 'reauth_required' })));
    expect(delivered()).toEqual([answered.id]);
    expect(sends()).toHaveLength(1);
    // Still one of each: parking is not a new episode.
    expect(await reauthEvents()).toBe(1);
    expect(await episodes()).toHaveLength(1);
    expect(mail.messages()).toHaveLength(1);

    // The owner reconnects: the saga, a state as the portal makes it, the sandbox's consent dialog answered with Allow.
    const deadToken = (await channelRow()).access_token_ciphertext;
    sandbox.setOAuthPersona({ pages: [], instagram: { userId: accountId, username: 'atelier.episode' } });
    const saga: WorkflowHandle<typeof reconnectWorkflow> = await client.workflow.start<typeof reconnectWorkflow>('reconnectWorkflow', {
      taskQueue,
      workflowId: reconnectWorkflowId(channelId),
      args: [{ tenantId, channelId }],
    });
    await eventually(async () => {
      const s = await saga.query(reconnectStatusQuery);
      return s.step === 'awaiting_oauth' && s.status === 'waiting' && s.channel !== undefined;
    });
    const session = await createSession(db.pool, { kind: 'tenant_user', userId: owner.id, tenantId }, { lifetimes: { idleMs: DAY_MS, absoluteMs: DAY_MS } });
    const created = await createOAuthState(db.pool, { tenantId, sessionId: session.id, flow: 'instagram', channelId }, { vault });
    await saga.executeUpdate(beginOAuthUpdate, { args: [{ flow: 'instagram', stateHash: created.stateHash, expiresAt: created.expiresAt }] });
    const callback = new URL(sandbox.authorize(dialogUrl(config, 'instagram', created.state), 'allow'));
    const consumed = await consumeOAuthState(db.pool, tenantId, callback.searchParams.get('state')!, session.id, { vault });
    if ('problem' in consumed) throw new Error(`the callback's state was refused: ${consumed.problem}`);
    expect(consumed).toMatchObject({ flow: 'instagram', channelId, stateHash: created.stateHash });
    const code = callback.searchParams.get('code')!.replace(/#_$/, '');
    expect(await saga.executeUpdate(reconnectOAuthCallbackUpdate, { args: [{ stateHash: consumed.stateHash, code }] })).toMatchObject({ step: 'exchanging_code' });

    const done = await eventually(async () => {
      const s = await saga.query(reconnectStatusQuery);
      return s.step === 'reconnected' || s.status === 'failed' ? s : undefined;
    }, 60_000);
    expect(done).toMatchObject<Partial<ReconnectStatus>>({ step: 'reconnected', status: 'done', resumed: { conversations: 1, parked: 3 } });
    const back = await channelRow();
    expect(back.status).toBe('active');
    expect(back.access_token_ciphertext.equals(deadToken)).toBe(false);
    expect((await episodes()).map((e) => [e.id, e.closed_at !== null, e.closed_reason])).toEqual([[episodeId, true, 'reconnected']]);

    // The parked replies reach the Send API once each, in the order they were parked, and their rows say sent.
    await eventually(async () => delivered().length === 4, 30_000);
    expect(delivered()).toEqual([answered.id, ...parkedOrder]);
    const rows = await eventually(async () => {
      const r = await db.ownerPool.query<{ id: string; status: string; error: unknown }>('SELECT id, status, error FROM messages WHERE id = ANY ($1)', [parkedOrder]);
      return r.rows.every((x) => x.status === 'sent') ? r.rows : undefined;
    });
    expect(rows.map((r) => r.error)).toEqual([null, null, null]);
    expect((await conversation().query(conversationStateQuery)).parkedSends).toEqual([]);
    // Nothing trails behind (a second resume, a duplicate signal): still one request per reply.
    await new Promise((r) => setTimeout(r, 1500));
    expect(sends()).toHaveLength(4);

    // A day later the next sweep finds the reconnected token fresh: no refresh, no episode, no e-mail.
    const refreshesSoFar = refreshCalls().length;
    await pass(DAY_MS);
    expect(await env.currentTimeMs()).toBeGreaterThanOrEqual(t0 + DAY_MS);
    // The reconnect stored Instagram's new 60-day token: far outside the refresh window.
    expect((await db.ownerPool.query<{ token_expires_at: Date }>('SELECT token_expires_at FROM channels WHERE id = $1', [channelId])).rows[0]!.token_expires_at.getTime()).toBeGreaterThan(t0 + 50 * DAY_MS);
    expect(await sweep()).toEqual({ channels: 1, byOutcome: { not_due: 1 }, critical: 0 });
    expect(refreshCalls()).toHaveLength(refreshesSoFar);
    expect(await episodes()).toHaveLength(1);
    expect(await reauthEvents()).toBe(1);
    expect(await notificationEvents()).toEqual(notified);
    expect(mail.messages()).toHaveLength(1);
    expect(sends()).toHaveLength(4);
  });
}, 180_000);
