import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createTokenRotationActivities, DEFAULT_GRAPH_CALLS_PER_MINUTE } from '../../activities/token-rotation';
import { PAGE_SUBSCRIBED_FIELDS } from '../../activities/onboarding';
import type { Config } from '../../src/config';
import type { SecretVault } from '../../src/crypto/vault';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { createOAuthClient } from '../../src/meta/oauth-client';
import { openEpisode } from '../../src/notifications/episodes';
import type { GraphSandbox } from '../../src/sandbox/graph-sandbox';
import { DAY_MS, HOUR_MS, tokenPolicy } from '../../src/shared/token-policy';
import { notificationWorkflowId, TOKEN_ROTATION_BUDGET, type TokenCandidate, type TokenCheckInput, type TokenCheckResult } from '../../workflows/token-lifecycle-definitions';
import { startSandboxedDatabase, type SandboxedDatabase } from '../support/saga-harness';
import { LogCapture, required, type TestDatabase } from '../support/stack';

/**
 * The token sweep's activities against a real PostgreSQL and the Graph sandbox, run in a mock
 * activity context whose client is the run's Temporal dev server (requireReauth and the expiry
 * notice start notification workflows through it; no worker polls their queue here).
 */

const LONG_S = 5_183_944;
const policy = tokenPolicy({ refreshWindowDays: 10, expiryWarningDays: 7 });

let db: TestDatabase;
let sandbox: GraphSandbox;
let config: Config;
let vault: SecretVault;
let fixture: SandboxedDatabase;
let temporal: Client;
let connection: Connection;
const logs = new LogCapture();
let acts: ReturnType<typeof createTokenRotationActivities>;
let taskQueue: string;
/** Every token a test seeded: none may appear in a log line or an audit row. */
const issuedTokens: string[] = [];

beforeAll(async () => {
  fixture = await startSandboxedDatabase();
  ({ db, sandbox, config, vault } = fixture);
  acts = createTokenRotationActivities({ pool: db.pool, vault, logger: createLogger('test', 'debug', { destination: logs.stream }), oauth: createOAuthClient(config) });
  connection = await Connection.connect({ address: required('TEST_TEMPORAL_ADDRESS') });
  temporal = new Client({ connection });
  taskQueue = `token-rotation-acts-${randomUUID()}`;
});

afterAll(async () => {
  const allAudit = JSON.stringify((await db.ownerPool.query('SELECT reason, details FROM audit_events')).rows);
  const allLogs = logs.lines.join('\n');
  for (const token of issuedTokens) {
    expect(allAudit).not.toContain(token);
    expect(allLogs).not.toContain(token);
  }
  await connection?.close();
  await fixture?.close();
});

beforeEach(() => sandbox.reset());

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** Runs an activity in a mock activity context; collects its heartbeats. */
async function run<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<{ value: R; heartbeats: unknown[] }> {
  const env = new MockActivityEnvironment({ taskQueue }, { client: temporal, logger: quiet });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  return { value: await env.run(fn, ...args), heartbeats };
}
const check = async (input: TokenCheckInput): Promise<TokenCheckResult> => (await run(acts.checkChannelToken, input)).value;

async function failure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

let nextId = 100_000;
const accountId = (prefix: string) => `${prefix}${nextId++}`;

interface Seeded {
  tenantId: string;
  channelId: string;
  accountId: string;
  token: string;
  candidate: (asOf?: number) => Promise<TokenCandidate>;
}

async function candidateOf(tenantId: string, channelId: string): Promise<TokenCandidate> {
  const { rows } = await db.ownerPool.query('SELECT platform, graph_api, token_expires_at, token_issued_at FROM channels WHERE id = $1', [channelId]);
  const r = rows[0];
  return { channelId, tenantId, platform: r.platform, graphApi: r.graph_api, tokenExpiresAt: r.token_expires_at?.getTime() ?? null, tokenIssuedAt: r.token_issued_at.getTime() };
}

/** An Instagram-Login channel whose token (known to the sandbox) was issued `ageMs` ago and expires `expiresInMs` from now. */
async function instagramChannel(ageMs: number, expiresInMs: number): Promise<Seeded> {
  const { id: tenantId } = await createTenant(db.pool, 'IG shop');
  const now = Date.now();
  const id = accountId('1784140000');
  const [seeded] = sandbox.seedTokens([{ kind: 'instagram', id, issuedAt: now - ageMs, expiresAt: now + expiresInMs }]);
  issuedTokens.push(seeded!.accessToken);
  const { id: channelId } = await connectChannel(db.pool, vault, { tenantId, platform: 'instagram', accountId: id, accessToken: seeded!.accessToken, graphApi: 'instagram', tokenExpiresAt: new Date(now + expiresInMs) });
  await db.ownerPool.query('UPDATE channels SET token_issued_at = $2 WHERE id = $1', [channelId, new Date(now - ageMs)]);
  return { tenantId, channelId, accountId: id, token: seeded!.accessToken, candidate: () => candidateOf(tenantId, channelId) };
}

/** A Messenger channel with a never-expiring Page token, subscribed with the messaging fields unless told otherwise. */
async function pageChannel(opts: { subscribed?: boolean; scopes?: string[] } = {}): Promise<Seeded> {
  const { id: tenantId } = await createTenant(db.pool, 'Page shop');
  const id = accountId('5000000');
  const [seeded] = sandbox.seedTokens([{ kind: 'page', id, ...(opts.subscribed !== false && { subscribedFields: [...PAGE_SUBSCRIBED_FIELDS] }), ...(opts.scopes && { scopes: opts.scopes }) }]);
  issuedTokens.push(seeded!.accessToken);
  const { id: channelId } = await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId: id, accessToken: seeded!.accessToken, graphApi: 'facebook', tokenExpiresAt: null });
  return { tenantId, channelId, accountId: id, token: seeded!.accessToken, candidate: () => candidateOf(tenantId, channelId) };
}

const input = async (s: Seeded, asOf = Date.now(), extra: Partial<TokenCheckInput> = {}): Promise<TokenCheckInput> => ({
  candidate: await s.candidate(),
  policy,
  asOf,
  sweepId: randomUUID(),
  ...extra,
});

async function channel(channelId: string) {
  return (await db.ownerPool.query('SELECT * FROM channels WHERE id = $1', [channelId])).rows[0];
}
async function audit(tenantId: string, action?: string) {
  const { rows } = await db.ownerPool.query('SELECT action, outcome, reason, details FROM audit_events WHERE tenant_id = $1 AND ($2::text IS NULL OR action = $2) ORDER BY seq', [tenantId, action ?? null]);
  return rows;
}
async function episodes(channelId: string) {
  return (await db.ownerPool.query('SELECT id, kind, level, reason, closed_at FROM notification_episodes WHERE channel_id = $1 ORDER BY opened_at', [channelId])).rows;
}
const graphRequests = () => sandbox.requests().map((r) => `${r.method} ${r.path.replace(/^\/v\d+\.\d+/, '')}`);

describe('listTokenCandidates', () => {
  it('pages through active channels across tenants, without tokens', async () => {
    const a = await pageChannel();
    const b = await instagramChannel(2 * DAY_MS, 50 * DAY_MS);
    const all: TokenCandidate[] = [];
    let after: string | null = null;
    for (;;) {
      const { value: page }: { value: TokenCandidate[] } = await run(acts.listTokenCandidates, { after, limit: 1 });
      if (page.length === 0) break;
      all.push(...page);
      after = page[page.length - 1]!.channelId;
    }
    const mine = all.filter((c) => [a.channelId, b.channelId].includes(c.channelId));
    expect(mine).toHaveLength(2);
    expect(mine.find((c) => c.channelId === b.channelId)).toMatchObject({ tenantId: b.tenantId, platform: 'instagram', graphApi: 'instagram', tokenExpiresAt: expect.any(Number) });
    expect(all.map((c) => c.channelId)).toEqual([...all.map((c) => c.channelId)].sort());
    expect(JSON.stringify(all)).not.toContain(a.token);
  });
});

describe('checkChannelToken: Instagram Login', () => {
  it('refreshes a due token: new sealed token, expiry from asOf + expires_in, issue time = asOf, open expiry episode closed, one audit event', async () => {
    const s = await instagramChannel(55 * DAY_MS, 5 * DAY_MS);
    await openEpisode(db.pool, s.tenantId, { channelId: s.channelId, kind: 'token_expiring', level: 'warning', reason: 'token_expiring (test)' });
    const before = await channel(s.channelId);
    const asOf = Date.now();
    const i = await input(s, asOf);
    const r = await check(i);
    expect(r).toEqual({ channelId: s.channelId, outcome: 'refreshed', tokenExpiresAt: asOf + LONG_S * 1000, alert: 'none', graphCalls: 1 });
    expect(graphRequests()).toEqual(['GET /refresh_access_token']);

    const after = await channel(s.channelId);
    expect(after.access_token_ciphertext.equals(before.access_token_ciphertext)).toBe(false);
    expect(after.token_expires_at.getTime()).toBe(asOf + LONG_S * 1000);
    expect(after.token_issued_at.getTime()).toBe(asOf);
    expect(after.token_check_failures).toBe(0);
    const creds = await loadChannelCredentials(db.pool, vault, { tenantId: s.tenantId, channelId: s.channelId }, 'graph.send');
    issuedTokens.push(creds.accessToken);
    expect(creds.accessToken).not.toBe(s.token);
    expect(creds.accessToken).toMatch(/^IGAA/);
    // The sandbox minted it: the stored token works.
    const me = await fetch(`${sandbox.url}/v23.0/me?fields=user_id&access_token=${creds.accessToken}`);
    expect(await me.json()).toEqual({ user_id: s.accountId });

    expect((await episodes(s.channelId)).map((e) => [e.kind, e.closed_at !== null])).toEqual([['token_expiring', true]]);
    const events = await audit(s.tenantId, 'token.refreshed');
    expect(events).toEqual([{ action: 'token.refreshed', outcome: 'success', reason: null, details: expect.objectContaining({ channel: s.channelId, sweep: i.sweepId, expiresAt: new Date(asOf + LONG_S * 1000).toISOString() }) }]);

    // A retry of the same check (same sweep) finds the fresh token: nothing more happens.
    expect((await check(i)).outcome).toBe('not_due');
    expect(await audit(s.tenantId, 'token.refreshed')).toHaveLength(1);
    expect(graphRequests()).toEqual(['GET /refresh_access_token', 'GET /me']); // the /me is this test's
  });

  it('not due (outside the window, or younger than 24 h): no Graph call, no change', async () => {
    const outside = await instagramChannel(10 * DAY_MS, 50 * DAY_MS);
    const young = await instagramChannel(2 * HOUR_MS, 9 * DAY_MS);
    for (const s of [outside, young]) {
      const before = await channel(s.channelId);
      expect(await check(await input(s))).toMatchObject({ outcome: 'not_due', alert: 'none', graphCalls: 0 });
      expect((await channel(s.channelId)).access_token_ciphertext.equals(before.access_token_ciphertext)).toBe(true);
      expect(await audit(s.tenantId, 'token.refreshed')).toEqual([]);
    }
    expect(sandbox.requests()).toEqual([]);
  });

  it('a young token close to expiry is not refreshed but the tenant is warned once (critical within two sweeps)', async () => {
    const s = await instagramChannel(2 * HOUR_MS, 36 * HOUR_MS);
    const r = await check(await input(s));
    expect(r).toMatchObject({ outcome: 'not_due', alert: 'critical', graphCalls: 0 });
    await check(await input(s));
    const eps = await episodes(s.channelId);
    expect(eps.map((e) => [e.kind, e.level, e.closed_at])).toEqual([['token_expiring', 'critical', null]]);
    expect(sandbox.requests()).toEqual([]);
    const started = await temporal.workflow.getHandle(notificationWorkflowId(eps[0].id)).describe();
    expect(started.type).toBe('notificationWorkflow');
  });

  it('a refresh refused with 190 (password changed) makes the channel reauth_required once, with one episode and one notification', async () => {
    const s = await instagramChannel(55 * DAY_MS, 5 * DAY_MS);
    sandbox.invalidateTokens(s.accountId);
    const i = await input(s);
    expect(await check(i)).toMatchObject({ outcome: 'reauth_required', alert: 'critical', graphCalls: 1 });
    const row = await channel(s.channelId);
    expect(row.status).toBe('reauth_required');
    expect(row.status_reason).toBe('token_refresh_failed (code 190/460)');
    const eps = await episodes(s.channelId);
    expect(eps.map((e) => [e.kind, e.reason])).toEqual([['reauth_required', 'token_refresh_failed (code 190/460)']]);
    expect((await temporal.workflow.getHandle(notificationWorkflowId(eps[0].id)).describe()).type).toBe('notificationWorkflow');
    expect(await audit(s.tenantId, 'channel.reauth_required')).toHaveLength(1);
    expect(await audit(s.tenantId, 'token.check_failed')).toEqual([
      { action: 'token.check_failed', outcome: 'failure', reason: 'token_refresh_failed (code 190/460)', details: expect.objectContaining({ outcome: 'reauth_required', sweep: i.sweepId }) },
    ]);

    // A second check (a retry, or another sweep) changes nothing and calls nobody.
    expect(await check(await input(s))).toMatchObject({ outcome: 'reauth_required', graphCalls: 0 });
    expect(await audit(s.tenantId, 'channel.reauth_required')).toHaveLength(1);
    expect(await episodes(s.channelId)).toHaveLength(1);
    expect(sandbox.requests()).toHaveLength(1);
  });

  it('a refresh failing with 500 is retryable, and recordTokenCheckFailure counts it once per sweep', async () => {
    const s = await instagramChannel(55 * DAY_MS, 5 * DAY_MS);
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/refresh_access_token' });
    const i = await input(s);
    const f = await failure(check(i));
    expect(f.nonRetryable).toBe(false);
    expect(f.type).toBe('GraphTransient');
    sandbox.failNext({ count: 1, preset: 'rate_limit', match: '/refresh_access_token' });
    const throttled = await failure(check(i));
    expect(throttled).toMatchObject({ nonRetryable: false, type: 'GraphRateLimited' });
    expect(throttled.nextRetryDelay).toBeDefined();

    const recorded = await run(acts.recordTokenCheckFailure, { ...i, failureType: 'GraphTransient' });
    expect(recorded.value).toMatchObject({ outcome: 'transient_failure', alert: 'warning' });
    await run(acts.recordTokenCheckFailure, { ...i, failureType: 'GraphTransient' }); // the same sweep again: counted once
    expect((await channel(s.channelId)).token_check_failures).toBe(1);
    expect((await channel(s.channelId)).status).toBe('active');
    expect(await audit(s.tenantId, 'token.check_failed')).toEqual([expect.objectContaining({ reason: 'check_failed (GraphTransient)', details: expect.objectContaining({ outcome: 'transient_failure' }) })]);
    // The next sweep counts again, and a successful check resets the count.
    await run(acts.recordTokenCheckFailure, { ...i, sweepId: randomUUID(), failureType: 'GraphTransient' });
    expect((await channel(s.channelId)).token_check_failures).toBe(2);
    expect((await check(await input(s))).outcome).toBe('refreshed');
    expect((await channel(s.channelId)).token_check_failures).toBe(0);
  });
});

describe('checkChannelToken: Page tokens', () => {
  it('valid: debug_token and subscribed_apps, expiry "never", subscription confirmed, token.validated', async () => {
    const s = await pageChannel();
    const i = await input(s);
    expect(await check(i)).toEqual({ channelId: s.channelId, outcome: 'valid', tokenExpiresAt: null, alert: 'none', graphCalls: 2 });
    expect(graphRequests()).toEqual(['GET /debug_token', `GET /${s.accountId}/subscribed_apps`]);
    const row = await channel(s.channelId);
    expect(row).toMatchObject({ status: 'active', webhook_subscribed: true, token_expires_at: null, token_check_failures: 0 });
    expect(row.token_checked_at).toBeInstanceOf(Date);
    expect(await audit(s.tenantId, 'token.validated')).toEqual([expect.objectContaining({ outcome: 'success', details: expect.objectContaining({ sweep: i.sweepId, graphCalls: 2 }) })]);
  });

  it('a subscription dropped (DELETE in the sandbox) is re-created: resubscribed, and the sandbox lists the app again', async () => {
    const s = await pageChannel();
    const del = await fetch(`${sandbox.url}/v23.0/${s.accountId}/subscribed_apps?access_token=${s.token}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(sandbox.oauthState().subscriptions[s.accountId]).toBeUndefined();
    await fetch(`${sandbox.url}/_sandbox/requests`, { method: 'DELETE' });
    expect(await check(await input(s))).toMatchObject({ outcome: 'resubscribed', graphCalls: 3 });
    expect(graphRequests()).toEqual(['GET /debug_token', `GET /${s.accountId}/subscribed_apps`, `POST /${s.accountId}/subscribed_apps`]);
    const subs = sandbox.oauthState().subscriptions[s.accountId]!;
    expect(subs).toHaveLength(1);
    expect(subs[0]!.subscribedFields.sort()).toEqual([...PAGE_SUBSCRIBED_FIELDS].sort());
    expect((await channel(s.channelId)).webhook_subscribed).toBe(true);
    expect(await audit(s.tenantId, 'token.resubscribed')).toEqual([expect.objectContaining({ details: expect.objectContaining({ fieldsMissing: expect.arrayContaining(['messages']) }) })]);
    // The next check finds it in place.
    expect((await check(await input(s))).outcome).toBe('valid');
  });

  it('an invalidated Page token (debug_token is_valid:false) → reauth_required exactly once', async () => {
    const s = await pageChannel();
    sandbox.invalidateTokens(s.accountId);
    expect(await check(await input(s))).toMatchObject({ outcome: 'reauth_required', graphCalls: 1 });
    expect(await check(await input(s))).toMatchObject({ outcome: 'reauth_required', graphCalls: 0 });
    expect((await channel(s.channelId)).status_reason).toBe('debug_token_invalid');
    expect(await audit(s.tenantId, 'channel.reauth_required')).toHaveLength(1);
    expect(await episodes(s.channelId)).toHaveLength(1);
    expect(graphRequests()).toEqual(['GET /debug_token']);
  });

  it('a Page token without the messaging scopes → reauth_required naming the missing scopes', async () => {
    const s = await pageChannel({ scopes: ['pages_show_list', 'pages_manage_metadata'] });
    expect(await check(await input(s))).toMatchObject({ outcome: 'reauth_required' });
    expect((await channel(s.channelId)).status_reason).toBe('scopes_missing (pages_messaging)');
  });

  it('190 from subscribed_apps → reauth_required; debug_token answering 500 is retryable and changes nothing', async () => {
    const s = await pageChannel();
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/debug_token' });
    expect(await failure(check(await input(s)))).toMatchObject({ nonRetryable: false });
    expect((await channel(s.channelId)).status).toBe('active');
    sandbox.failNext({ count: 1, preset: 'token_expired', match: '/subscribed_apps' });
    expect(await check(await input(s))).toMatchObject({ outcome: 'reauth_required', graphCalls: 2 });
    expect((await channel(s.channelId)).status_reason).toBe('token_invalid (code 190/463)');
  });

  it('a wrong app secret (debug_token 190 on the APP token) never blames the channel', async () => {
    const s = await pageChannel();
    const wrong = createTokenRotationActivities({ pool: db.pool, vault, logger: createLogger('test', 'silent'), oauth: createOAuthClient({ ...config, META_APP_SECRET: 'not-the-app-secret' }) });
    const f = await failure(run(wrong.checkChannelToken, await input(s)).then((r) => r.value));
    expect(f.nonRetryable).toBe(true);
    expect((await channel(s.channelId)).status).toBe('active');
  });
});

describe('the Graph call budget', () => {
  it('every call takes a token from the shared budget; an empty bucket makes the check wait, heartbeating', async () => {
    const s = await pageChannel();
    const perMinute = 120; // capacity 2, ~1.95 tokens/s
    await db.ownerPool.query(
      `INSERT INTO graph_call_budgets (name, tokens, refilled_at) VALUES ($1, 0, clock_timestamp())
       ON CONFLICT (name) DO UPDATE SET tokens = 0, refilled_at = clock_timestamp()`,
      [TOKEN_ROTATION_BUDGET],
    );
    const { value, heartbeats } = await run(acts.checkChannelToken, await input(s, Date.now(), { graphCallsPerMinute: perMinute }));
    expect(value).toMatchObject({ outcome: 'valid', graphCalls: 2 });
    expect(heartbeats.length).toBeGreaterThanOrEqual(1);
    expect(heartbeats[0]).toEqual({ waitingForBudgetMs: expect.any(Number) });
    // From an empty bucket at ~1.95 tokens/s the two calls are granted ~0.5 s apart (a lower bound the bucket guarantees).
    const [first, second] = sandbox.requests();
    expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(250);
    await db.ownerPool.query('DELETE FROM graph_call_budgets WHERE name = $1', [TOKEN_ROTATION_BUDGET]);
  });

  it('the default budget is the configuration default', () => {
    expect(DEFAULT_GRAPH_CALLS_PER_MINUTE).toBe(config.TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE);
  });
});
