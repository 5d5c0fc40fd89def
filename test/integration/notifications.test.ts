import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { createNotificationActivities } from '../../activities/notifications';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { closeEpisodes, openEpisode } from '../../src/notifications/episodes';
import { noteTokenExpiring, requireReauth, temporalNotificationStarter, type NotificationStarter } from '../../src/notifications/reauth';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyNotificationSignature, type NotificationEvent } from '../../src/notifications/webhook';
import type { NotificationResult } from '../../workflows/notification';
import { notificationWorkflowId, type NotificationInput } from '../../workflows/token-lifecycle-definitions';
import { createTestAccount, createTestApiKey, eventually, startTestStack, type TestStack } from '../support/stack';

/**
 * Tenant notifications end to end on real parts: requireReauth / noteTokenExpiring open an
 * episode and start `notificationWorkflow` on the Temporal dev server; the worker e-mails over
 * real SMTP into the stack's capture and POSTs the signed webhook to a local receiver.
 */

const TOKEN = 'IGAAT-notification-test-token-not-real';
const ACCOUNTS = { main: '17841400000000101', flaky: '17841400000000102', gone: '17841400000000103', closed: '17841400000000104', expiring: '17841400000000105' };

let stack: TestStack;
let tenantId: string;
let owner: { email: string };
let secret: string;
let starter: NotificationStarter;
/** Short retries for the tests that exercise them (the production default starts at 5 s and lasts 3 days). */
let quickStarter: NotificationStarter;
const channels: Record<keyof typeof ACCOUNTS, string> = { main: '', flaky: '', gone: '', closed: '', expiring: '' };
const logger = createLogger('test', 'silent');

// ---- a local webhook receiver ----------------------------------------------------------------

interface Received {
  headers: IncomingHttpHeaders;
  raw: string;
  event: NotificationEvent;
  status: number;
}
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];
/** Per channel id: the statuses to answer, in order (then 200). */
const script = new Map<string, number[]>();

async function startReceiver(): Promise<void> {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const event = JSON.parse(raw) as NotificationEvent;
      const status = script.get(event.channel.id)?.shift() ?? 200;
      received.push({ headers: req.headers, raw, event, status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/switchboard-hook`;
}

/** A port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

const deliveriesFor = (channelId: string) => received.filter((r) => r.event.channel.id === channelId);
const mailsAbout = (account: string) => stack.mail.messages().filter((m) => m.subject.includes(account) || m.text.includes(account));

async function resultOf(episodeId: string): Promise<NotificationResult> {
  return (await stack.client.workflow.getHandle(notificationWorkflowId(episodeId)).result()) as NotificationResult;
}

async function episodeRow(id: string) {
  return (
    await stack.db.ownerPool.query<{ email_sent_at: Date | null; email_error: string | null; webhook_sent_at: Date | null; webhook_attempts: number; webhook_error: string | null }>(
      'SELECT email_sent_at, email_error, webhook_sent_at, webhook_attempts, webhook_error FROM notification_episodes WHERE id = $1',
      [id],
    )
  ).rows[0]!;
}

async function notificationAudit(episodeId: string) {
  return (
    await stack.db.ownerPool.query<{ action: string; outcome: string; reason: string | null; details: Record<string, unknown>; chain_id: string }>(
      `SELECT action, outcome, reason, details, chain_id FROM audit_events WHERE action LIKE 'notification.%' AND details->>'episode' = $1 ORDER BY seq`,
      [episodeId],
    )
  ).rows;
}

beforeAll(async () => {
  await startReceiver();
  stack = await startTestStack();
  tenantId = (await createTenant(stack.db.pool, 'Notified Shop')).id;
  owner = await createTestAccount(stack.db.pool, tenantId, 'owner');
  // A second owner, disabled: disabled accounts are not e-mailed.
  const former = await createTestAccount(stack.db.pool, tenantId, 'owner');
  await stack.db.ownerPool.query('UPDATE tenant_users SET disabled_at = now() WHERE id = $1', [former.id]);
  await createTestAccount(stack.db.pool, tenantId, 'admin');
  for (const [name, accountId] of Object.entries(ACCOUNTS) as Array<[keyof typeof ACCOUNTS, string]>) {
    channels[name] = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'instagram', graphApi: 'instagram', accountId, accessToken: TOKEN })).id;
  }
  // The webhook is configured the way a tenant does it: through the API, which shows the secret once.
  const key = await createTestApiKey(stack.db.pool, tenantId, 'owner');
  const res = await fetch(`${stack.gatewayUrl}/api/v1/tenants/${tenantId}/notifications`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ webhookUrl: receiverUrl }),
  });
  expect(res.status).toBe(200);
  secret = ((await res.json()) as { webhookSecret: string }).webhookSecret;
  expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

  starter = temporalNotificationStarter(stack.client, stack.config.TEMPORAL_TASK_QUEUE);
  quickStarter = {
    async start(input: NotificationInput) {
      await stack.client.workflow.start('notificationWorkflow', {
        workflowId: notificationWorkflowId(input.episodeId),
        taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
        args: [{ ...input, webhookRetry: { initialIntervalMs: 200, maximumIntervalMs: 400, expireAfterMs: 60_000 } }],
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
      });
    },
  };
}, 60_000);

afterAll(async () => {
  await stack?.close();
  receiver?.closeAllConnections();
  await new Promise((r) => receiver?.close(r));
});

it('a channel reported dead twice: ONE e-mail to the owner and ONE signed webhook, each audited once', async () => {
  const reason = 'GraphAuthExpired (code 190)';
  const first = await requireReauth(stack.db.pool, starter, logger, { tenantId, channelId: channels.main, reason });
  const second = await requireReauth(stack.db.pool, starter, logger, { tenantId, channelId: channels.main, reason: 'GraphAuthExpired (code 190/463)' });
  expect(first.changed).toBe(true);
  expect(second.changed).toBe(false);
  expect(second.episode!.id).toBe(first.episode!.id);
  const episodeId = first.episode!.id;

  await expect(resultOf(episodeId)).resolves.toEqual({ episodeId, outcome: 'notified', email: 'sent', webhook: 'sent' });
  // A third report after the run finished starts nothing new (one run per episode, ever).
  await requireReauth(stack.db.pool, starter, logger, { tenantId, channelId: channels.main, reason });

  const mails = mailsAbout(ACCOUNTS.main);
  expect(mails).toHaveLength(1);
  const mail = mails[0]!;
  expect(mail.to).toEqual([owner.email]);
  expect(mail.envelope.to).toEqual([owner.email]);
  expect(mail.subject).toBe(`Action needed: reconnect your Instagram account ${ACCOUNTS.main}`);
  expect(mail.text).toContain(`Your Instagram account ${ACCOUNTS.main} needs to be reconnected: replies to your customers are on hold until you do.`);
  expect(mail.text).toContain('still being received and collected');
  expect(mail.text).toContain(`${stack.gatewayUrl}/portal`);
  expect(mail.html).toContain(`href="${stack.gatewayUrl}/portal"`);
  expect(mail.text).toContain(reason);
  expect(`${mail.subject}${mail.text}${mail.html}`).not.toContain(TOKEN);

  const deliveries = deliveriesFor(channels.main);
  expect(deliveries).toHaveLength(1);
  const d = deliveries[0]!;
  expect(verifyNotificationSignature(secret, d.headers[SIGNATURE_HEADER.toLowerCase()] as string, d.raw)).toEqual({ ok: true, timestampS: Number(d.headers[TIMESTAMP_HEADER.toLowerCase()]) });
  expect(verifyNotificationSignature('another-secret', d.headers[SIGNATURE_HEADER.toLowerCase()] as string, d.raw)).toEqual({ ok: false, reason: 'mismatch' });
  expect(d.headers[EVENT_ID_HEADER.toLowerCase()]).toBe(episodeId);
  expect(d.headers['content-type']).toBe('application/json');
  expect(d.event).toEqual({
    id: episodeId,
    type: 'channel.reauth_required',
    tenantId,
    channel: { id: channels.main, platform: 'instagram', accountId: ACCOUNTS.main },
    level: 'critical',
    reason,
    occurredAt: expect.any(String),
  });
  expect(d.raw).not.toContain(TOKEN);

  expect(await episodeRow(episodeId)).toMatchObject({ email_sent_at: expect.any(Date), email_error: null, webhook_sent_at: expect.any(Date), webhook_attempts: 1, webhook_error: null });
  const audit = await notificationAudit(episodeId);
  expect(audit.map((a) => [a.action, a.details.via, a.chain_id]).sort()).toEqual([
    ['notification.sent', 'email', tenantId],
    ['notification.sent', 'webhook', tenantId],
  ]);
  expect(audit.find((a) => a.details.via === 'email')!.details).toMatchObject({ recipients: 1, kind: 'reauth_required' });
  expect(JSON.stringify(audit)).not.toContain(owner.email);
  // The secret was decrypted for the delivery only, counted and audited.
  const decrypts = await stack.db.ownerPool.query("SELECT count::int AS n FROM secret_decrypts WHERE tenant_id = $1 AND purpose = 'notify.webhook'", [tenantId]);
  expect(decrypts.rows[0].n).toBeGreaterThanOrEqual(1);
  const { rows: auditText } = await stack.db.ownerPool.query("SELECT row_to_json(a)::text AS t FROM audit_events a WHERE chain_id = $1", [tenantId]);
  expect(auditText.map((r) => r.t).join('\n')).not.toContain(secret);
}, 60_000);

it('a receiver failing with 500 twice then 200: delivered on the 3rd attempt, each attempt counted', async () => {
  script.set(channels.flaky, [500, 500]);
  const { episode } = await requireReauth(stack.db.pool, quickStarter, logger, { tenantId, channelId: channels.flaky, reason: 'token_refresh_failed (code 190/460)' });
  const result = await resultOf(episode!.id);
  expect(result).toMatchObject({ outcome: 'notified', webhook: 'sent', email: 'sent' });
  expect(deliveriesFor(channels.flaky).map((r) => r.status)).toEqual([500, 500, 200]);
  // The body is the same every time (receivers deduplicate on its id); each attempt is signed afresh.
  expect(new Set(deliveriesFor(channels.flaky).map((r) => r.raw)).size).toBe(1);
  for (const r of deliveriesFor(channels.flaky)) expect(verifyNotificationSignature(secret, r.headers[SIGNATURE_HEADER.toLowerCase()] as string, r.raw).ok).toBe(true);
  expect(await episodeRow(episode!.id)).toMatchObject({ webhook_attempts: 3, webhook_sent_at: expect.any(Date), webhook_error: null });
  const sent = (await notificationAudit(episode!.id)).find((a) => a.details.via === 'webhook')!;
  expect(sent).toMatchObject({ action: 'notification.sent', details: expect.objectContaining({ attempts: 3, httpStatus: 200 }) });
}, 60_000);

it('a receiver answering 410: not retried, the failure recorded on the episode and in the audit trail', async () => {
  script.set(channels.gone, [410, 200, 200]);
  const { episode } = await requireReauth(stack.db.pool, quickStarter, logger, { tenantId, channelId: channels.gone, reason: 'debug_token invalid' });
  expect(await resultOf(episode!.id)).toMatchObject({ outcome: 'notified', webhook: 'failed', email: 'sent' });
  expect(deliveriesFor(channels.gone).map((r) => r.status)).toEqual([410]);
  expect(await episodeRow(episode!.id)).toMatchObject({ webhook_attempts: 1, webhook_sent_at: null, webhook_error: 'HTTP 410' });
  const failed = (await notificationAudit(episode!.id)).find((a) => a.details.via === 'webhook')!;
  expect(failed).toMatchObject({ action: 'notification.failed', outcome: 'failure', reason: expect.stringContaining('HTTP 410') });
}, 60_000);

it('an episode closed before its notification ran: no e-mail, no webhook, recorded as skipped', async () => {
  const { episode } = await openEpisode(stack.db.pool, tenantId, { channelId: channels.closed, kind: 'reauth_required', level: 'critical', reason: 'GraphAuthExpired (code 190)' });
  await closeEpisodes(stack.db.pool, tenantId, channels.closed, ['reauth_required'], 'reconnected');
  await starter.start({ tenantId, episodeId: episode.id });
  expect(await resultOf(episode.id)).toEqual({ episodeId: episode.id, outcome: 'closed', email: null, webhook: null });
  expect(mailsAbout(ACCOUNTS.closed)).toEqual([]);
  expect(deliveriesFor(channels.closed)).toEqual([]);
  expect(await episodeRow(episode.id)).toMatchObject({ email_sent_at: null, webhook_attempts: 0 });
  expect((await notificationAudit(episode.id)).map((a) => [a.action, a.details.via, a.reason])).toEqual([['notification.skipped', 'episode', 'episode closed']]);
}, 60_000);

it('a token about to expire: its own single e-mail (to notify_email once set), distinct subject, and a token_expiring webhook', async () => {
  const key = await createTestApiKey(stack.db.pool, tenantId, 'admin');
  const put = await fetch(`${stack.gatewayUrl}/api/v1/tenants/${tenantId}/notifications`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ notifyEmail: 'alerts@shop.example' }),
  });
  expect(put.status).toBe(200);
  expect(await put.json()).not.toHaveProperty('webhookSecret');

  const expiresAt = new Date('2026-12-03T08:00:00Z');
  const first = await noteTokenExpiring(stack.db.pool, starter, { tenantId, channelId: channels.expiring, level: 'warning', reason: 'token expires 2026-12-03', expiresAt });
  const again = await noteTokenExpiring(stack.db.pool, starter, { tenantId, channelId: channels.expiring, level: 'warning', reason: 'token expires 2026-12-03', expiresAt });
  expect(again.episode.id).toBe(first.episode.id);
  expect(await resultOf(first.episode.id)).toMatchObject({ outcome: 'notified', email: 'sent', webhook: 'sent' });

  const mails = mailsAbout(ACCOUNTS.expiring);
  expect(mails).toHaveLength(1);
  expect(mails[0]!.to).toEqual(['alerts@shop.example']);
  expect(mails[0]!.subject).toBe(`The connection to your Instagram account ${ACCOUNTS.expiring} expires on 2026-12-03`);
  expect(mails[0]!.text).toContain('expires on 2026-12-03');
  expect(mails[0]!.text).toContain(`${stack.gatewayUrl}/portal`);
  expect(mails[0]!.text).not.toContain(TOKEN);

  const deliveries = deliveriesFor(channels.expiring);
  expect(deliveries).toHaveLength(1);
  expect(deliveries[0]!.event).toMatchObject({ id: first.episode.id, type: 'channel.token_expiring', level: 'warning', expiresAt: expiresAt.toISOString() });

  // The reauth e-mail of the first test is still the only one about that account: kinds do not mix.
  expect(mailsAbout(ACCOUNTS.main)).toHaveLength(1);
}, 60_000);

it('without SMTP configured the e-mail is recorded as not sent (smtp not configured) and the run goes on', async () => {
  const other = await startTestStack({ SMTP_URL: '' });
  try {
    const t = (await createTenant(other.db.pool, 'No Mail Shop')).id;
    await createTestAccount(other.db.pool, t, 'owner');
    const channelId = (await connectChannel(other.db.pool, other.vault, { tenantId: t, platform: 'messenger', accountId: '104829376519999', accessToken: TOKEN })).id;
    const s = temporalNotificationStarter(other.client, other.config.TEMPORAL_TASK_QUEUE);
    const { episode } = await requireReauth(other.db.pool, s, logger, { tenantId: t, channelId, reason: 'GraphAuthExpired (code 190)' });
    const result = (await other.client.workflow.getHandle(notificationWorkflowId(episode!.id)).result()) as NotificationResult;
    expect(result).toMatchObject({ email: 'not_configured', webhook: null });
    const row = await other.db.ownerPool.query('SELECT email_sent_at, email_error FROM notification_episodes WHERE id = $1', [episode!.id]);
    expect(row.rows[0]).toEqual({ email_sent_at: null, email_error: 'smtp not configured' });
    expect(other.mail.messages()).toEqual([]);
    await eventually(async () => {
      const { rows } = await other.db.ownerPool.query("SELECT reason FROM audit_events WHERE action = 'notification.skipped' AND details->>'episode' = $1", [episode!.id]);
      return rows[0]?.reason === 'smtp not configured';
    });
  } finally {
    await other.close();
  }
}, 90_000);

it('the e-mail activity: a retry after the mail went out sends nothing more; an unreachable SMTP server is a retryable failure, recorded', async () => {
  const channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: '104829376510042', accessToken: TOKEN })).id;
  const { episode } = await openEpisode(stack.db.pool, tenantId, { channelId, kind: 'reauth_required', level: 'critical', reason: 'GraphAuthExpired (code 190)' });
  const input = { tenantId, episodeId: episode.id };
  const deps = { from: 'Switchboard <n@switchboard.test>', publicBaseUrl: 'https://switchboard.example', production: false };

  const down = createNotificationActivities({ pool: stack.db.pool, vault: stack.vault, logger, notifications: { ...deps, smtpUrl: `smtp://127.0.0.1:${await closedPort()}` } });
  const failure = await down.sendEpisodeEmail(input).then(() => null, (err: unknown) => err);
  expect(failure).toBeInstanceOf(ApplicationFailure);
  expect(failure).toMatchObject({ type: 'NotificationEmailFailed', nonRetryable: false });
  expect((await episodeRow(episode.id)).email_error).toMatch(/^SMTP /);

  const up = createNotificationActivities({ pool: stack.db.pool, vault: stack.vault, logger, notifications: { ...deps, smtpUrl: stack.mail.url } });
  await expect(up.sendEpisodeEmail(input)).resolves.toEqual({ status: 'sent', recipients: 1 });
  await expect(up.sendEpisodeEmail(input)).resolves.toEqual({ status: 'already_sent' });
  const mails = mailsAbout('104829376510042');
  expect(mails).toHaveLength(1);
  expect(mails[0]!.subject).toBe('Action needed: reconnect your Facebook Page 104829376510042');
  expect(mails[0]!.text).toContain('https://switchboard.example/portal');
  expect(mails[0]!.messageId).toBe(`<episode-${episode.id}@switchboard>`);
  expect(await episodeRow(episode.id)).toMatchObject({ email_sent_at: expect.any(Date), email_error: null });
}, 60_000);
