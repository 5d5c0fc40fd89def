import { randomBytes, randomInt } from 'node:crypto';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { requireReauth, type NotificationStarter } from '../../src/notifications/reauth';
import type { NotificationInput, ReconnectStatus } from '../../workflows/token-lifecycle-definitions';
import { reconnectWorkflowId } from '../../workflows/token-lifecycle-definitions';
import { PortalVisitor, visibleText } from '../support/portal';
import { createTestAccount, eventually, startTestStack, type TestStack } from '../support/stack';

/**
 * The portal's reconnect flow over HTTP against the real stack (gateway → Temporal → the
 * reconnect saga on the real worker → PostgreSQL, the Graph sandbox as Meta): a live tenant's page
 * shows a channel that needs reconnecting with its waiting replies and a Reconnect button; the
 * button starts the saga and leads to the channel's consent dialog with a state bound to the
 * session, the tenant and the channel; the callback goes to that saga; the channel comes back with
 * a new token, its episode closed, and the parked replies go out in order. Denied consent and
 * another account authorized bring the client back to the button, the channel untouched.
 */

let stack: TestStack;
const started: NotificationInput[] = [];
/** The notification workflow is not this test's business: its start is recorded, not run. */
const starter: NotificationStarter = { start: async (input) => void started.push(input) };
const logger = createLogger('test', 'silent');

const pageId = () => `9${String(randomInt(10 ** 9, 10 ** 10 - 1))}${String(randomInt(10 ** 4, 10 ** 5 - 1))}`;
const DEAD_TOKEN = 'EAAB-the-token-meta-no-longer-accepts';

interface Broken {
  tenantId: string;
  channelId: string;
  accountId: string;
  customerId: string;
  owner: { email: string; password: string };
  visitor: PortalVisitor;
}

/**
 * A live tenant whose Page channel Meta stopped accepting: `requireReauth` (the one path there),
 * and replies parked in one conversation (their rows: a new conversation run reloads them).
 */
async function brokenChannel(o: { accountId?: string; parked?: string[]; name?: string } = {}): Promise<Broken> {
  const accountId = o.accountId ?? pageId();
  const tenantId = (await createTenant(stack.db.pool, `Shop ${randomBytes(3).toString('hex')}`)).id;
  const owner = await createTestAccount(stack.db.pool, tenantId, 'owner');
  const { id: channelId } = await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId, accessToken: DEAD_TOKEN });
  await requireReauth(stack.db.pool, starter, logger, { tenantId, channelId, reason: 'GraphAuthExpired (code 190)' });
  const customerId = `71${randomInt(10 ** 9, 10 ** 10 - 1)}`;
  const parked = o.parked ?? [];
  if (parked.length > 0) {
    const conv = await stack.db.ownerPool.query<{ id: string }>(
      `INSERT INTO conversations (tenant_id, channel_id, customer_id, last_inbound_at) VALUES ($1, $2, $3, now()) RETURNING id`,
      [tenantId, channelId, customerId],
    );
    for (const [i, text] of parked.entries()) {
      await stack.db.ownerPool.query(
        `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, text, status, error, created_at)
         VALUES ($1, $2, $3, 'outbound', 'bot', 'text', $4, 'parked', $5, now() - make_interval(secs => $6))`,
        [tenantId, channelId, conv.rows[0]!.id, text, JSON.stringify({ type: 'GraphAuthExpired', reason: 'reauth_required', code: 190 }), parked.length - i],
      );
    }
  }
  const visitor = new PortalVisitor(stack);
  await visitor.signIn(owner.email, owner.password);
  return { tenantId, channelId, accountId, customerId, owner, visitor };
}

/** Presses Reconnect: the dialog URL the portal redirects to. */
async function pressReconnect(b: Broken): Promise<URL> {
  const res = await b.visitor.req('/portal/reconnect', { form: { _csrf: await b.visitor.csrf(), channelId: b.channelId } });
  expect(res.status).toBe(303);
  return new URL(res.headers.get('location')!);
}

/** Meta's answer in the browser: the callback URL followed by the visitor. */
async function answer(b: Broken, dialog: URL, decision: 'allow' | 'cancel'): Promise<Response> {
  const callback = new URL(stack.sandbox.authorize(dialog.href, decision));
  expect(callback.origin + callback.pathname).toBe(stack.config.OAUTH_REDIRECT_URI);
  return b.visitor.req(callback.pathname + callback.search);
}

const reconnectStatus = (channelId: string) => stack.client.workflow.getHandle(reconnectWorkflowId(channelId)).query<ReconnectStatus>('getReconnectStatus');
const waitReconnect = (channelId: string, until: (s: ReconnectStatus) => boolean) =>
  eventually(async () => {
    const s = await reconnectStatus(channelId).catch(() => undefined);
    return s && until(s) ? s : undefined;
  }, 30_000);
const channelRow = async (channelId: string) =>
  (await stack.db.ownerPool.query<{ status: string; access_token_ciphertext: Buffer; token_issued_at: Date; webhook_subscribed: boolean | null }>('SELECT status, access_token_ciphertext, token_issued_at, webhook_subscribed FROM channels WHERE id = $1', [channelId])).rows[0]!;
const episodes = async (channelId: string) =>
  (await stack.db.ownerPool.query<{ kind: string; closed_at: Date | null; closed_reason: string | null }>('SELECT kind, closed_at, closed_reason FROM notification_episodes WHERE channel_id = $1 ORDER BY opened_at', [channelId])).rows;
const auditRows = async (tenantId: string, action: string) =>
  (await stack.db.ownerPool.query<{ resource: string; outcome: string; reason: string | null; actor_type: string; details: Record<string, unknown> }>('SELECT resource, outcome, reason, actor_type, details FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY id', [tenantId, action])).rows;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack?.close());

describe('the live page', () => {
  it('shows a channel that needs reconnecting, with its waiting replies and a Reconnect button; a viewer sees who can', async () => {
    const b = await brokenChannel({ parked: ['First', 'Second'] });
    const html = await b.visitor.text();
    const text = visibleText(html);
    expect(text).toContain("You're live");
    expect(text).toContain(`Facebook Page ${b.accountId} needs to be reconnected — 2 replies are waiting.`);
    expect(html).toMatch(new RegExp(`<input type="hidden" name="channelId" value="${b.channelId}">`));
    expect(html).toMatch(/<button type="submit" class="primary" aria-describedby="reconnect-[0-9a-f-]+-why">Reconnect<span class="visually-hidden">/);
    expect(text).toContain('waiting to be reconnected');
    // No onboarding was started for a tenant whose only channel waits to be reconnected.
    await expect(stack.client.workflow.getHandle(`onboarding/${b.tenantId}`).describe()).rejects.toThrow();

    const viewer = await createTestAccount(stack.db.pool, b.tenantId, 'viewer');
    const v = new PortalVisitor(stack);
    await v.signIn(viewer.email, viewer.password);
    const seen = await v.text();
    expect(visibleText(seen)).toContain('Ask the owner or an admin of your business to reconnect it.');
    expect(seen).not.toContain('action="/portal/reconnect"');
    const refused = await v.req('/portal/reconnect', { form: { _csrf: await v.csrf(), channelId: b.channelId } });
    expect(refused.status).toBe(403);
  });

  it('Reconnect needs the CSRF token, one of the tenant’s channels, and a channel that needs it', async () => {
    const b = await brokenChannel();
    expect((await b.visitor.req('/portal/reconnect', { form: { _csrf: 'forged', channelId: b.channelId } })).status).toBe(403);
    const other = await brokenChannel();
    const foreign = await b.visitor.req('/portal/reconnect', { form: { _csrf: await b.visitor.csrf(), channelId: other.channelId } });
    expect(foreign.status).toBe(404);
    expect((await b.visitor.req('/portal/reconnect', { form: { _csrf: await b.visitor.csrf(), channelId: 'not-a-uuid' } })).status).toBe(404);
    // Nothing started, no state stored.
    await expect(stack.client.workflow.getHandle(reconnectWorkflowId(b.channelId)).describe()).rejects.toThrow();
    await expect(stack.client.workflow.getHandle(reconnectWorkflowId(other.channelId)).describe()).rejects.toThrow();
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM oauth_states WHERE tenant_id = ANY($1)', [[b.tenantId, other.tenantId]])).rows[0].n).toBe(0);

    // A channel that works: no dialog, the page shows where it stands.
    const { id: working } = await connectChannel(stack.db.pool, stack.vault, { tenantId: b.tenantId, platform: 'messenger', accountId: pageId(), accessToken: 'EAAB-working' });
    const res = await b.visitor.req('/portal/reconnect', { form: { _csrf: await b.visitor.csrf(), channelId: working } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/portal?reconnect=${working}`);
  });
});

describe('reconnecting through the consent dialog', () => {
  it('Allow: new token, channel active, subscription verified, episode closed, parked replies delivered once in order; the page follows', async () => {
    const b = await brokenChannel({ parked: ['Yes, the rain jacket comes in M.', 'It is 89.90 EUR.', 'Shall I reserve one?'] });
    stack.sandbox.setOAuthPersona({ pages: [{ id: b.accountId, name: 'Alpen Outfitters' }] });
    const before = await channelRow(b.channelId);

    const dialog = await pressReconnect(b);
    expect(dialog.origin + dialog.pathname).toBe(`${stack.config.FACEBOOK_DIALOG_BASE}/${stack.config.GRAPH_API_VERSION}/dialog/oauth`);
    expect(dialog.searchParams.get('redirect_uri')).toBe(stack.config.OAUTH_REDIRECT_URI);
    expect(dialog.searchParams.get('code_challenge_method')).toBe('S256');
    const states = await stack.db.ownerPool.query<{ channel_id: string; flow: string; used_at: Date | null }>('SELECT channel_id, flow, used_at FROM oauth_states WHERE tenant_id = $1', [b.tenantId]);
    expect(states.rows).toEqual([{ channel_id: b.channelId, flow: 'facebook', used_at: null }]);
    expect(await reconnectStatus(b.channelId)).toMatchObject({ step: 'awaiting_oauth', status: 'waiting', flow: 'facebook' });
    expect((await auditRows(b.tenantId, 'channel.reconnect_started')).map((r) => [r.resource, r.actor_type, r.details.parked])).toEqual([[`channel:${b.channelId}`, 'tenant_user', 3]]);

    const sendsBefore = stack.sandbox.requests().length;
    const back = await answer(b, dialog, 'allow');
    expect(back.status).toBe(303);
    expect(back.headers.get('location')).toBe(`/portal?reconnect=${b.channelId}`);

    const done = await waitReconnect(b.channelId, (s) => s.step === 'reconnected');
    expect(done).toMatchObject({ status: 'done', resumed: { conversations: 1, parked: 3 } });
    const after = await channelRow(b.channelId);
    expect(after.status).toBe('active');
    expect(after.webhook_subscribed).toBe(true);
    expect(after.access_token_ciphertext.equals(before.access_token_ciphertext)).toBe(false);
    expect(after.token_issued_at.getTime()).toBeGreaterThan(before.token_issued_at.getTime());
    const creds = await loadChannelCredentials(stack.db.pool, stack.vault, { tenantId: b.tenantId, channelId: b.channelId }, 'graph.send');
    expect(creds.accessToken).not.toBe(DEAD_TOKEN);
    expect(await episodes(b.channelId)).toEqual([{ kind: 'reauth_required', closed_at: expect.any(Date), closed_reason: 'reconnected' }]);
    expect((await auditRows(b.tenantId, 'channel.reconnected')).map((r) => r.resource)).toEqual([`channel:${b.channelId}`]);
    expect((await auditRows(b.tenantId, 'token.stored')).map((r) => r.details.reconnect)).toEqual([false, true]);
    expect((await auditRows(b.tenantId, 'onboarding.oauth_callback')).map((r) => [r.resource, r.details.channel])).toEqual([[`channel:${b.channelId}`, b.channelId]]);
    // The grant (the sealed user token) is gone.
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM onboarding_grants WHERE tenant_id = $1', [b.tenantId])).rows[0].n).toBe(0);

    // The three parked replies reach the Send API once each, in order, with the new token.
    const sends = await eventually(async () => {
      const s = stack.sandbox.requests().slice(sendsBefore).filter((r) => r.method === 'POST' && r.path.endsWith('/messages') && (r.body as { recipient?: { id?: string } })?.recipient?.id === b.customerId);
      return s.length >= 3 ? s : undefined;
    }, 30_000);
    expect(sends.map((r) => (r.body as { message: { text: string } }).message.text)).toEqual(['Yes, the rain jacket comes in M.', 'It is 89.90 EUR.', 'Shall I reserve one?']);
    expect(sends.every((r) => r.status === 200)).toBe(true);
    const rows = await eventually(async () => {
      const r = await stack.db.ownerPool.query<{ status: string }>("SELECT status FROM messages WHERE channel_id = $1 AND direction = 'outbound' ORDER BY created_at", [b.channelId]);
      return r.rows.every((x) => x.status === 'sent') ? r.rows : undefined;
    });
    expect(rows).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 1000));
    expect(stack.sandbox.requests().slice(sendsBefore).filter((r) => r.method === 'POST' && r.path.endsWith('/messages') && (r.body as { recipient?: { id?: string } })?.recipient?.id === b.customerId)).toHaveLength(3);

    // The page: "Reconnected — 3 waiting replies are being sent", no notice, no button.
    const page = await b.visitor.text(`/portal?reconnect=${b.channelId}`);
    expect(visibleText(page)).toContain('Reconnected — 3 waiting replies are being sent.');
    expect(page).not.toContain('needs to be reconnected');
    expect(page).not.toContain('action="/portal/reconnect"');
    const status = await b.visitor.json<{ key: string; working: boolean; reconnect: { step: string; resumed: { parked: number } } }>(`/portal/status.json?reconnect=${b.channelId}`);
    expect(status).toMatchObject({ working: false, reconnect: { step: 'reconnected', resumed: { parked: 3 } } });
    expect(status.key).toContain('reconnect:reconnected:done');

    // The callback URL again: used.
    const replay = await b.visitor.req(`/portal/oauth/callback?state=${dialog.searchParams.get('state')}&code=again`);
    expect(replay.status).toBe(400);
    expect(started.filter((s) => s.tenantId === b.tenantId)).toHaveLength(1);
  }, 90_000);

  it('while the saga works the page says Reconnecting… and polls; the status answers for the reconnect', async () => {
    const b = await brokenChannel();
    stack.sandbox.setOAuthPersona({ pages: [{ id: b.accountId, name: 'Slow Page' }] });
    const dialog = await pressReconnect(b);
    // Meta is slow to subscribe: the saga stays at that step for a while.
    stack.sandbox.failNext({ count: 1, preset: 'timeout', match: 'subscribed_apps', delayMs: 3000 });
    await answer(b, dialog, 'allow');
    // The first subscribe call hangs 3 s before it fails (then is retried): the page is read meanwhile.
    await waitReconnect(b.channelId, (s) => s.step === 'subscribing');
    const page = await b.visitor.text(`/portal?reconnect=${b.channelId}`);
    expect(visibleText(page)).toContain(`Reconnecting Facebook Page ${b.accountId}…`);
    expect(visibleText(page)).toContain('Checking message delivery for the account…');
    expect(page).toContain('data-working="yes"');
    expect(page).toContain('http-equiv="refresh"');
    // The notice stays (the channel is not back yet) but offers no second Reconnect meanwhile.
    expect(page).not.toContain('action="/portal/reconnect"');
    const polled = await b.visitor.json<{ working: boolean; reconnect: { step: string } }>(`/portal/status.json?reconnect=${b.channelId}`);
    expect(polled).toMatchObject({ working: true, reconnect: { step: 'subscribing' } });
    await waitReconnect(b.channelId, (s) => s.step === 'reconnected');
    const json = await b.visitor.json<{ working: boolean }>(`/portal/status.json?reconnect=${b.channelId}`);
    expect(json.working).toBe(false);
  }, 60_000);

  it('Cancel on the consent page: back to the Reconnect button with what to do, the channel untouched', async () => {
    const b = await brokenChannel({ parked: ['One'] });
    stack.sandbox.setOAuthPersona({ pages: [{ id: b.accountId, name: 'Cancelled Page' }] });
    const dialog = await pressReconnect(b);
    const res = await answer(b, dialog, 'cancel');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/portal?reconnect=${b.channelId}`);
    const s = await waitReconnect(b.channelId, (x) => x.problem?.code === 'oauth_denied');
    expect(s).toMatchObject({ step: 'awaiting_oauth', status: 'waiting' });
    const page = await b.visitor.text(res.headers.get('location')!);
    expect(visibleText(page)).toContain('You cancelled the reconnection on Facebook. To reconnect, click Reconnect again and choose Allow.');
    expect(page).toContain('action="/portal/reconnect"');
    expect(page).toMatch(/role="alert"[^>]*data-focus/);
    expect((await channelRow(b.channelId)).status).toBe('reauth_required');
    expect((await episodes(b.channelId)).map((e) => e.closed_at)).toEqual([null]);
    expect((await auditRows(b.tenantId, 'onboarding.oauth_denied')).map((r) => r.resource)).toEqual([`channel:${b.channelId}`]);

    // Reconnect again: the same saga (one run), a new attempt.
    const again = await pressReconnect(b);
    expect(again.searchParams.get('state')).not.toBe(dialog.searchParams.get('state'));
    const runs: string[] = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = '${reconnectWorkflowId(b.channelId)}'` })) runs.push(w.runId);
    expect(runs).toHaveLength(1);
    expect((await reconnectStatus(b.channelId)).problem).toBeUndefined();
  }, 60_000);

  it('Meta refusing the subscription after the token was stored: the channel goes back to reauth_required, the episode stays open, the problem is shown', async () => {
    const b = await brokenChannel({ parked: ['Held back'] });
    stack.sandbox.setOAuthPersona({ pages: [{ id: b.accountId, name: 'Refusing Page' }] });
    const dialog = await pressReconnect(b);
    // Non-retryable: the first subscribe call is the only one.
    stack.sandbox.failNext({ count: 1, preset: 'permission_denied', match: 'subscribed_apps' });
    await answer(b, dialog, 'allow');
    const s = await waitReconnect(b.channelId, (x) => x.problem?.code === 'subscription_failed' && x.status === 'waiting');
    expect(s.step).toBe('awaiting_oauth');
    // The token was stored (the channel was active for a moment), then the compensation put it back.
    expect((await auditRows(b.tenantId, 'token.stored')).map((r) => r.details.reconnect)).toEqual([false, true]);
    expect((await channelRow(b.channelId)).status).toBe('reauth_required');
    expect((await auditRows(b.tenantId, 'channel.reauth_required')).map((r) => r.reason)).toEqual(['GraphAuthExpired (code 190)', 'reconnect not completed']);
    expect((await episodes(b.channelId)).map((e) => e.closed_at)).toEqual([null]);
    expect(await auditRows(b.tenantId, 'channel.reconnected')).toEqual([]);
    expect((await stack.db.ownerPool.query("SELECT count(*)::int AS n FROM messages WHERE channel_id = $1 AND status = 'parked'", [b.channelId])).rows[0].n).toBe(1);
    const page = visibleText(await b.visitor.text(`/portal?reconnect=${b.channelId}`));
    expect(page).toContain("Facebook didn't switch message delivery back on for the account. Check that you have full control of it, then click Reconnect.");
    expect(page).toContain('needs to be reconnected — 1 reply is waiting.');
  }, 60_000);

  it('another account authorized: the page names it and the one to choose; nothing stored; the next attempt with the right one works', async () => {
    const b = await brokenChannel();
    const other = pageId();
    stack.sandbox.setOAuthPersona({ pages: [{ id: other, name: 'Somebody Else’s Page' }] });
    const before = await channelRow(b.channelId);
    await answer(b, await pressReconnect(b), 'allow');
    const s = await waitReconnect(b.channelId, (x) => x.problem?.code === 'wrong_account' && x.status === 'waiting');
    expect(s.problem!.message).toBe(`You authorized a different account (Page “Somebody Else’s Page”). Reconnect with the account Facebook Page ${b.accountId}.`);
    const page = visibleText(await b.visitor.text(`/portal?reconnect=${b.channelId}`));
    expect(page).toContain(`You authorized a different account (Page “Somebody Else’s Page”). Reconnect with the account Facebook Page ${b.accountId}.`);
    const row = await channelRow(b.channelId);
    expect(row.status).toBe('reauth_required');
    expect(row.access_token_ciphertext.equals(before.access_token_ciphertext)).toBe(true);
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM onboarding_grants WHERE tenant_id = $1', [b.tenantId])).rows[0].n).toBe(0);
    // The other Page was not taken.
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM channels WHERE account_id = $1', [other])).rows[0].n).toBe(0);

    stack.sandbox.setOAuthPersona({ pages: [{ id: b.accountId, name: 'The Right Page' }] });
    await answer(b, await pressReconnect(b), 'allow');
    await waitReconnect(b.channelId, (x) => x.step === 'reconnected');
    expect((await channelRow(b.channelId)).status).toBe('active');
  }, 60_000);
});
