import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { createReconnectActivities } from '../../activities/reconnect';
import { createOnboardingActivities, INSTAGRAM_SUBSCRIBED_FIELDS, PAGE_SUBSCRIBED_FIELDS, type PlannedChannel } from '../../activities/onboarding';
import { createSession } from '../../src/auth/sessions';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { DataKeyMissingError, SecretVault } from '../../src/crypto/vault';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { consumeOAuthState, createOAuthState, hashOAuthState } from '../../src/db/onboarding';
import { createTenant } from '../../src/db/tenants';
import { withTenant } from '../../src/db/tenant-scope';
import { createLogger } from '../../src/logger';
import { createOAuthClient } from '../../src/meta/oauth-client';
import { ONBOARDING_STEP } from '../../src/temporal/search-attributes';
import { dialogUrl } from '../../src/portal/dialog-urls';
import type { GraphSandbox } from '../../src/sandbox/graph-sandbox';
import { DEFAULT_OAUTH_PERSONA } from '../../src/sandbox/oauth-store';
import { onboardingWorkflow } from '../../workflows/onboarding';
import {
  beginOAuthUpdate,
  configureAssistantUpdate,
  oauthCallbackUpdate,
  onboardingStatusQuery,
  onboardingWorkflowId,
  selectAssetsUpdate,
  type LoginFlow,
  type OnboardingStep,
} from '../../workflows/onboarding-definitions';
import {
  createTestAccount,
  eventually,
  LogCapture,
  startTestStack,
  type TestStack,
  TEST_APP_SECRET,
  TEST_INSTAGRAM_APP_SECRET,
  type TestDatabase,
} from '../support/stack';
import { startSandboxedDatabase, type SandboxedDatabase } from '../support/saga-harness';

/**
 * The onboarding saga's activities for real: PostgreSQL (row-level security, the vault) and the
 * Graph API sandbox's OAuth side (dialogs answered with `sandbox.authorize`, token endpoints of both
 * flows, `/me/accounts`, `/me`, `subscribed_apps`, `debug_token`, `appsecret_proof`, faults). The
 * workflow's decisions are in test/workflows/onboarding.test.ts.
 */

const PERSONA_PAGE = DEFAULT_OAUTH_PERSONA.pages[0]!;
const PERSONA_PAGE_2 = DEFAULT_OAUTH_PERSONA.pages[1]!;
const PERSONA_IG = DEFAULT_OAUTH_PERSONA.instagram!;
const fingerprint = (token: string) => `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 16)}`;

let db: TestDatabase;
let sandbox: GraphSandbox;
let config: Config;
let vault: SecretVault;
let fixture: SandboxedDatabase;
const logs = new LogCapture();
let acts: ReturnType<typeof createOnboardingActivities>;

beforeAll(async () => {
  fixture = await startSandboxedDatabase();
  ({ db, sandbox, config, vault } = fixture);
  acts = createOnboardingActivities({ pool: db.pool, vault, logger: createLogger('test', 'debug', { destination: logs.stream }), oauth: createOAuthClient(config) });
});

afterAll(async () => {
  await fixture?.close();
});

beforeEach(() => sandbox.reset());
// The persona's accounts are the same in every test: each test starts with no channel owning them.
afterEach(() => db.ownerPool.query('DELETE FROM channels'));

/** A tenant with an owner signed in (a portal session, which an OAuth state is bound to). */
async function newTenant(name = 'Shop'): Promise<{ tenantId: string; sessionId: string }> {
  const { id: tenantId } = await createTenant(db.pool, name);
  const user = await createTestAccount(db.pool, tenantId, 'owner');
  const session = await createSession(db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes: { idleMs: 3_600_000, absoluteMs: 3_600_000 } });
  return { tenantId, sessionId: session.id };
}

/** What the portal does up to the callback: a state, the dialog (answered by the sandbox), the state consumed. */
async function consent(t: { tenantId: string; sessionId: string }, flow: LoginFlow, opts: { decision?: 'allow' | 'cancel'; pageIds?: string[] } = {}) {
  const created = await createOAuthState(db.pool, { tenantId: t.tenantId, sessionId: t.sessionId, flow }, { vault });
  const location = new URL(sandbox.authorize(dialogUrl(config, flow, created.state, created.codeVerifier), opts.decision ?? 'allow', opts.pageIds));
  const consumed = await consumeOAuthState(db.pool, t.tenantId, location.searchParams.get('state')!, t.sessionId, { vault });
  if ('problem' in consumed) throw new Error(`state refused: ${consumed.problem}`);
  return { code: location.searchParams.get('code'), error: location.searchParams.get('error'), codeVerifier: consumed.codeVerifier, created, location };
}

/** Runs an activity expecting an ApplicationFailure; answers it. */
async function failure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}
const problemCode = (f: ApplicationFailure) => (f.details?.[0] as { problem?: { code: string } } | undefined)?.problem?.code;

async function grantRow(tenantId: string, grantId: string) {
  const { rows } = await db.ownerPool.query<{ tenant_id: string; flow: string; token_kind: string; token_ciphertext: Buffer; token_expires_at: Date | null }>(
    'SELECT tenant_id, flow, token_kind, token_ciphertext, token_expires_at FROM onboarding_grants WHERE id = $1',
    [grantId],
  );
  return rows[0];
}

async function channelRows(tenantId: string) {
  const { rows } = await db.ownerPool.query<{
    id: string; platform: string; account_id: string; graph_api: string; status: string; status_reason: string | null;
    access_token_ciphertext: Buffer; token_expires_at: Date | null; webhook_subscribed: boolean | null; webhook_checked_at: Date | null;
  }>('SELECT * FROM channels WHERE tenant_id = $1 ORDER BY account_id', [tenantId]);
  return rows;
}

async function auditActions(tenantId: string): Promise<Array<{ action: string; resource: string | null; details: Record<string, unknown> }>> {
  return (await db.ownerPool.query('SELECT action, resource, details FROM audit_events WHERE tenant_id = $1 ORDER BY seq', [tenantId])).rows;
}

/** A Facebook connection exchanged and listed: the grant id and the plan for the first Page and its Instagram account. */
async function facebookGrant(t: { tenantId: string; sessionId: string }) {
  const c = await consent(t, 'facebook');
  const grantId = crypto.randomUUID();
  await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier });
  await acts.extendOAuthGrant({ tenantId: t.tenantId, grantId });
  const plan: PlannedChannel[] = [
    { channelId: crypto.randomUUID(), accountId: PERSONA_PAGE.id, platform: 'messenger', graphApi: 'facebook' },
    { channelId: crypto.randomUUID(), accountId: PERSONA_PAGE.instagram!.id, platform: 'instagram', graphApi: 'facebook', pageId: PERSONA_PAGE.id },
  ];
  return { grantId, plan };
}

describe('OAuth state store', () => {
  it('stores only the hash, binds to the session, is single use, and seals the PKCE verifier', async () => {
    const t = await newTenant();
    const created = await createOAuthState(db.pool, { tenantId: t.tenantId, sessionId: t.sessionId, flow: 'facebook' }, { vault });
    expect(created.state).toMatch(/^[A-Za-z0-9_-]{22}$/); // 128 bits
    expect(created.stateHash).toBe(hashOAuthState(created.state));
    expect(created.expiresAt - Date.now()).toBeGreaterThan(9 * 60_000);
    expect(created.expiresAt - Date.now()).toBeLessThanOrEqual(10 * 60_000 + 5_000);
    expect(created.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43,128}$/);
    expect(created.codeChallenge).toBe(createHash('sha256').update(created.codeVerifier!).digest('base64url'));

    const { rows } = await db.ownerPool.query<{ state_hash: Buffer; code_verifier_ciphertext: Buffer; session_id: string }>('SELECT * FROM oauth_states WHERE tenant_id = $1', [t.tenantId]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.state_hash.toString('base64url')).toBe(created.stateHash);
    const raw = JSON.stringify(rows) + rows[0]!.code_verifier_ciphertext.toString('latin1');
    expect(raw).not.toContain(created.state);
    expect(raw).not.toContain(created.codeVerifier);

    // Another session of the same tenant: refused, and not burnt.
    const other = await createSession(db.pool, { kind: 'tenant_user', userId: (await createTestAccount(db.pool, t.tenantId, 'admin')).id, tenantId: t.tenantId }, { lifetimes: { idleMs: 60_000, absoluteMs: 60_000 } });
    expect(await consumeOAuthState(db.pool, t.tenantId, created.state, other.id, { vault })).toEqual({ problem: 'other_session' });
    // Another tenant cannot see it at all.
    const stranger = await newTenant('Stranger');
    expect(await consumeOAuthState(db.pool, stranger.tenantId, created.state, stranger.sessionId, { vault })).toEqual({ problem: 'unknown' });

    expect(await consumeOAuthState(db.pool, t.tenantId, created.state, t.sessionId, { vault })).toEqual({ flow: 'facebook', stateHash: created.stateHash, codeVerifier: created.codeVerifier });
    expect(await consumeOAuthState(db.pool, t.tenantId, created.state, t.sessionId, { vault })).toEqual({ problem: 'used' });
    expect(await consumeOAuthState(db.pool, t.tenantId, randomBytes(16).toString('base64url'), t.sessionId, { vault })).toEqual({ problem: 'unknown' });
    expect(await consumeOAuthState(db.pool, t.tenantId, "'; DROP TABLE oauth_states; --", t.sessionId, { vault })).toEqual({ problem: 'unknown' });
  });

  it('expires; Instagram Login gets no PKCE verifier; concurrent consumers: exactly one wins', async () => {
    const t = await newTenant();
    const short = await createOAuthState(db.pool, { tenantId: t.tenantId, sessionId: t.sessionId, flow: 'instagram' }, { vault, ttlMs: 300 });
    expect(short.codeVerifier).toBeUndefined();
    await new Promise((r) => setTimeout(r, 600));
    expect(await consumeOAuthState(db.pool, t.tenantId, short.state, t.sessionId, { vault })).toEqual({ problem: 'expired' });

    const raced = await createOAuthState(db.pool, { tenantId: t.tenantId, sessionId: t.sessionId, flow: 'instagram' });
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => consumeOAuthState(db.pool, t.tenantId, raced.state, t.sessionId)));
    expect(outcomes.filter((o) => 'flow' in o)).toHaveLength(1);
    expect(outcomes.filter((o) => 'problem' in o && o.problem === 'used')).toHaveLength(4);
  });
});

describe('Facebook Login', () => {
  it('exchanges the code (PKCE) for a long-lived user token, sealed; a retry does not spend the code again', async () => {
    const t = await newTenant();
    const c = await consent(t, 'facebook');
    expect(c.codeVerifier).toBeDefined();
    const grantId = crypto.randomUUID();
    expect(await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier })).toEqual({ kind: 'short' });
    const short = await grantRow(t.tenantId, grantId);
    expect(short).toMatchObject({ tenant_id: t.tenantId, flow: 'facebook', token_kind: 'short' });
    expect(short!.token_expires_at!.getTime() - Date.now()).toBeGreaterThan(5000 * 1000);

    // A retry after success (the answer was lost): no second code exchange.
    const exchangesBefore = sandbox.requests().filter((r) => r.path.endsWith('/oauth/access_token')).length;
    expect(await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier })).toEqual({ kind: 'short' });
    expect(sandbox.requests().filter((r) => r.path.endsWith('/oauth/access_token'))).toHaveLength(exchangesBefore);

    const long = await acts.extendOAuthGrant({ tenantId: t.tenantId, grantId });
    expect(long.expiresAt! - Date.now()).toBeGreaterThan(5_183_944_000 - 60_000);
    expect((await grantRow(t.tenantId, grantId))!.token_kind).toBe('long');
    expect(await acts.extendOAuthGrant({ tenantId: t.tenantId, grantId })).toEqual(long);

    const exchange = sandbox.requests().find((r) => r.path.endsWith('/oauth/access_token') && r.query['code'])!;
    expect(exchange.query).toMatchObject({ client_id: config.META_APP_ID, redirect_uri: config.OAUTH_REDIRECT_URI, code_verifier: expect.stringMatching(/^sha256:/) });
    // The sealed row holds none of the tokens the sandbox issued.
    const issued = sandbox.oauthState().tokens.filter((x) => x.kind === 'user').map((x) => x.fingerprint);
    expect(issued).toHaveLength(2);
  });

  it('a spent, foreign or PKCE-less code is refused as code_rejected (not retried)', async () => {
    const t = await newTenant();
    const c = await consent(t, 'facebook');
    const f1 = await failure(acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId: crypto.randomUUID(), flow: 'facebook', code: c.code! }));
    expect(f1).toMatchObject({ type: 'OAuthCodeRejected', nonRetryable: true });
    expect(problemCode(f1)).toBe('code_rejected');
    await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId: crypto.randomUUID(), flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier });
    const f2 = await failure(acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId: crypto.randomUUID(), flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier }));
    expect(problemCode(f2)).toBe('code_rejected');
  });

  it('a transient Meta error is retryable and leaves the code usable', async () => {
    const t = await newTenant();
    const c = await consent(t, 'facebook');
    const grantId = crypto.randomUUID();
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/oauth/access_token' });
    const f = await failure(acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier }));
    expect(f.nonRetryable).toBe(false);
    expect(problemCode(f)).toBe('meta_unavailable');
    expect(await grantRow(t.tenantId, grantId)).toBeUndefined();
    expect(await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier })).toEqual({ kind: 'short' });

    sandbox.failNext({ count: 1, preset: 'rate_limit', match: '/oauth/access_token' });
    const throttled = await failure(acts.extendOAuthGrant({ tenantId: t.tenantId, grantId }));
    expect(throttled).toMatchObject({ nonRetryable: false, type: 'GraphRateLimited' });
    expect(throttled.nextRetryDelay).toBeDefined();
  });

  it('lists the granted Pages and linked Instagram accounts, marking those another tenant owns; no token in the answer', async () => {
    const t = await newTenant();
    const { grantId } = await facebookGrant(t);
    const other = await newTenant('Other');
    await connectChannel(db.pool, vault, { tenantId: other.tenantId, platform: 'messenger', accountId: PERSONA_PAGE_2.id, accessToken: 'EAAB-other-tenant' });

    const { assets } = await acts.listGrantedAssets({ tenantId: t.tenantId, grantId });
    expect(assets).toEqual([
      {
        accountId: PERSONA_PAGE.id,
        platform: 'messenger',
        graphApi: 'facebook',
        name: PERSONA_PAGE.name,
        connectedElsewhere: false,
        linkedInstagram: { accountId: PERSONA_PAGE.instagram!.id, username: PERSONA_PAGE.instagram!.username, connectedElsewhere: false },
      },
      { accountId: PERSONA_PAGE_2.id, platform: 'messenger', graphApi: 'facebook', name: PERSONA_PAGE_2.name, connectedElsewhere: true },
    ]);
    expect(JSON.stringify(assets)).not.toMatch(/EAAB|access_token/);
    // `/me/accounts` was called with the user token in the header and the appsecret_proof.
    const call = sandbox.requests().filter((r) => r.path.endsWith('/me/accounts')).pop()!;
    expect(call.query.appsecret_proof).toMatch(/^[0-9a-f]{64}$/);
    expect(call.status).toBe(200);
    // The decrypt of the sealed grant is counted and audited.
    expect((await auditActions(t.tenantId)).filter((a) => a.action === 'token.decrypted' && a.resource === `onboarding_grant:${grantId}`).map((a) => a.details.purpose)).toEqual([
      'onboarding.exchange',
      'onboarding.assets',
    ]);
  });

  it('no Page granted → no_pages; a user who cannot manage messages → not_page_admin', async () => {
    const t = await newTenant();
    const c = await consent(t, 'facebook', { pageIds: [] });
    const grantId = crypto.randomUUID();
    await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier });
    expect(problemCode(await failure(acts.listGrantedAssets({ tenantId: t.tenantId, grantId })))).toBe('no_pages');

    sandbox.setOAuthPersona({ pages: [{ id: '555000111222333', name: 'Analyst only', tasks: ['ANALYZE'] }] });
    const c2 = await consent(t, 'facebook');
    const g2 = crypto.randomUUID();
    await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId: g2, flow: 'facebook', code: c2.code!, codeVerifier: c2.codeVerifier });
    expect(problemCode(await failure(acts.listGrantedAssets({ tenantId: t.tenantId, grantId: g2 })))).toBe('not_page_admin');
  });

  it('stores the Page and its Instagram account sealed and pending; subscribes the Page once, verified; compensations undo each part', async () => {
    const t = await newTenant();
    const { grantId, plan } = await facebookGrant(t);
    const { channels } = await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: plan });
    expect(channels).toEqual([
      { channelId: plan[0]!.channelId, accountId: PERSONA_PAGE.id, platform: 'messenger', graphApi: 'facebook', created: true, tokenExpiresAt: null },
      { channelId: plan[1]!.channelId, accountId: PERSONA_PAGE.instagram!.id, platform: 'instagram', graphApi: 'facebook', created: true, tokenExpiresAt: null },
    ]);
    const rows = await channelRows(t.tenantId);
    // Page tokens from a long-lived user token never expire (debug_token: expires_at 0): no expiry stored.
    expect(rows.map((r) => [r.id, r.status, r.status_reason, r.token_expires_at])).toEqual([
      [plan[0]!.channelId, 'disabled', 'onboarding', null],
      [plan[1]!.channelId, 'disabled', 'onboarding', null],
    ]);
    // Sealed: the stored token is the sandbox's Page token, which is nowhere in clear.
    const creds = await loadChannelCredentials(db.pool, vault, { tenantId: t.tenantId, channelId: plan[0]!.channelId }, 'graph.validate');
    const pageTokens = sandbox.oauthState().tokens.filter((x) => x.kind === 'page' && x.accountId === PERSONA_PAGE.id).map((x) => x.fingerprint);
    expect(pageTokens).toContain(fingerprint(creds.accessToken));
    for (const r of rows) expect(r.access_token_ciphertext.toString('latin1')).not.toContain(creds.accessToken);
    expect(sandbox.requests().some((r) => r.path.endsWith('/debug_token') && r.status === 200)).toBe(true);

    // A retry of the step stores nothing twice.
    expect((await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: plan })).channels.map((c) => c.channelId)).toEqual(plan.map((p) => p.channelId));
    expect(await channelRows(t.tenantId)).toHaveLength(2);

    const plans = [{ target: { graphApi: 'facebook' as const, accountId: PERSONA_PAGE.id }, tokenChannelId: plan[0]!.channelId, channelIds: plan.map((p) => p.channelId) }];
    expect(await acts.subscribeOnboardingChannels({ tenantId: t.tenantId, plans })).toEqual({ verified: plan.map((p) => p.channelId) });
    const subs = sandbox.oauthState().subscriptions[PERSONA_PAGE.id]!;
    expect(subs).toEqual([expect.objectContaining({ appId: config.META_APP_ID, object: 'page', subscribedFields: expect.arrayContaining([...PAGE_SUBSCRIBED_FIELDS]) })]);
    expect((await channelRows(t.tenantId)).every((r) => r.webhook_subscribed === true && r.webhook_checked_at !== null)).toBe(true);
    for (const r of sandbox.requests().filter((x) => x.path.endsWith('/subscribed_apps'))) expect(r.query.appsecret_proof).toMatch(/^[0-9a-f]{64}$/);

    // Compensations, in the saga's order.
    expect(await acts.unsubscribeOnboardingChannels({ tenantId: t.tenantId, plans })).toEqual({ unsubscribed: 1 });
    expect(sandbox.oauthState().subscriptions[PERSONA_PAGE.id] ?? []).toEqual([]);
    expect((await channelRows(t.tenantId)).every((r) => r.webhook_subscribed === false)).toBe(true);
    expect(await acts.removeOnboardingChannels({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), reason: 'onboarding compensation' })).toEqual({ removed: 2 });
    expect(await channelRows(t.tenantId)).toEqual([]);
    expect(await acts.discardOAuthGrant({ tenantId: t.tenantId, grantId })).toEqual({ deleted: true });
    expect(await grantRow(t.tenantId, grantId)).toBeUndefined();
    // Each is idempotent: undoing twice changes nothing more.
    expect(await acts.unsubscribeOnboardingChannels({ tenantId: t.tenantId, plans })).toEqual({ unsubscribed: 0 });
    expect(await acts.removeOnboardingChannels({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), reason: 'again' })).toEqual({ removed: 0 });
    expect(await acts.discardOAuthGrant({ tenantId: t.tenantId, grantId })).toEqual({ deleted: false });

    const actions = (await auditActions(t.tenantId)).map((a) => a.action);
    expect(actions.filter((a) => a === 'token.stored')).toHaveLength(2);
    expect(actions).toEqual(expect.arrayContaining(['webhook.subscribed', 'webhook.unsubscribed', 'channel.removed']));
  });

  it("an account another tenant connected meanwhile is refused at the store step (connected_elsewhere); the saga's compensation removes what was stored", async () => {
    const t = await newTenant();
    const { grantId, plan } = await facebookGrant(t);
    const other = await newTenant('Quicker');
    await connectChannel(db.pool, vault, { tenantId: other.tenantId, platform: 'instagram', accountId: PERSONA_PAGE.instagram!.id, accessToken: 'IG-other', graphApi: 'facebook' });
    const f = await failure(acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: plan }));
    expect(f).toMatchObject({ type: 'AccountConnectedElsewhere', nonRetryable: true });
    expect(problemCode(f)).toBe('connected_elsewhere');
    expect((await channelRows(t.tenantId)).map((r) => r.id)).toEqual([plan[0]!.channelId]);
    await acts.removeOnboardingChannels({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), reason: 'onboarding compensation' });
    expect(await channelRows(t.tenantId)).toEqual([]);
    expect(await channelRows(other.tenantId)).toHaveLength(1);
  });

  it('a subscription Meta refuses (the user may not moderate the Page) is subscription_failed, not retried', async () => {
    const t = await newTenant();
    sandbox.setOAuthPersona({ pages: [{ id: '555000111222444', name: 'Messaging only', tasks: ['MESSAGING'] }] });
    const c = await consent(t, 'facebook');
    const grantId = crypto.randomUUID();
    await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'facebook', code: c.code!, codeVerifier: c.codeVerifier });
    await acts.extendOAuthGrant({ tenantId: t.tenantId, grantId });
    const channelId = crypto.randomUUID();
    await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: [{ channelId, accountId: '555000111222444', platform: 'messenger', graphApi: 'facebook' }] });
    const f = await failure(acts.subscribeOnboardingChannels({ tenantId: t.tenantId, plans: [{ target: { graphApi: 'facebook', accountId: '555000111222444' }, tokenChannelId: channelId, channelIds: [channelId] }] }));
    expect(f).toMatchObject({ type: 'SubscriptionFailed', nonRetryable: true });
    expect(problemCode(f)).toBe('subscription_failed');
  });
});

describe('Instagram Login', () => {
  it('exchanges (POST, then ig_exchange_token), lists the one account, stores it with its 60-day expiry, subscribes `me`, verified', async () => {
    const t = await newTenant();
    const c = await consent(t, 'instagram');
    expect(c.location.hash).toBe('#_');
    const grantId = crypto.randomUUID();
    await acts.exchangeOAuthCode({ tenantId: t.tenantId, grantId, flow: 'instagram', code: c.code! });
    const { expiresAt } = await acts.extendOAuthGrant({ tenantId: t.tenantId, grantId });
    expect(expiresAt! - Date.now()).toBeGreaterThan(59 * 86_400_000);
    const exchange = sandbox.requests().find((r) => r.method === 'POST' && r.path === '/oauth/access_token')!;
    expect(exchange.body).toMatchObject({ client_id: config.INSTAGRAM_APP_ID, grant_type: 'authorization_code', redirect_uri: config.OAUTH_REDIRECT_URI });

    const { assets } = await acts.listGrantedAssets({ tenantId: t.tenantId, grantId });
    expect(assets).toEqual([{ accountId: PERSONA_IG.userId, platform: 'instagram', graphApi: 'instagram', name: PERSONA_IG.username, connectedElsewhere: false }]);

    const channelId = crypto.randomUUID();
    const { channels } = await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: [{ channelId, accountId: PERSONA_IG.userId, platform: 'instagram', graphApi: 'instagram' }] });
    expect(channels[0]).toMatchObject({ channelId, created: true });
    expect(Math.abs(channels[0]!.tokenExpiresAt! - expiresAt!)).toBeLessThan(1000);
    const [row] = await channelRows(t.tenantId);
    expect(row).toMatchObject({ id: channelId, graph_api: 'instagram', status: 'disabled', status_reason: 'onboarding' });
    expect(row!.token_expires_at!.getTime()).toBe(channels[0]!.tokenExpiresAt);

    const plans = [{ target: { graphApi: 'instagram' as const, accountId: 'me' }, tokenChannelId: channelId, channelIds: [channelId] }];
    await acts.subscribeOnboardingChannels({ tenantId: t.tenantId, plans });
    expect(sandbox.oauthState().subscriptions[PERSONA_IG.userId]).toEqual([
      expect.objectContaining({ appId: config.INSTAGRAM_APP_ID, object: 'instagram', subscribedFields: expect.arrayContaining([...INSTAGRAM_SUBSCRIBED_FIELDS]) }),
    ]);
  });

  it('a cancelled consent brings an error and no code', async () => {
    const t = await newTenant();
    const c = await consent(t, 'instagram', { decision: 'cancel' });
    expect(c.code).toBeNull();
    expect(c.error).toBe('access_denied');
  });
});

describe('go-live, deactivation and abandonment', () => {
  it('go-live flips only the pending channels and writes onboarding.completed once; deactivation takes them back', async () => {
    const t = await newTenant();
    const { grantId, plan } = await facebookGrant(t);
    await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: plan });
    await acts.configureOnboardingAssistant({ tenantId: t.tenantId, configuration: { persona: 'Warm and short', language: 'de', businessName: 'Bergsport Berger' } });
    const settings = await withTenant(db.pool, t.tenantId, (tx) => tx.query<{ assistant: Record<string, unknown> }>('SELECT assistant FROM tenant_settings'));
    expect(settings.rows[0]!.assistant).toEqual({ persona: 'Warm and short', language: 'de', businessName: 'Bergsport Berger' });

    expect(await acts.goLiveOnboarding({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), flow: 'facebook', catalogRows: 12 })).toEqual({ activated: 2 });
    expect((await channelRows(t.tenantId)).map((r) => [r.status, r.status_reason])).toEqual([['active', null], ['active', null]]);
    expect(await acts.goLiveOnboarding({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), flow: 'facebook' })).toEqual({ activated: 0 });
    const completed = (await auditActions(t.tenantId)).filter((a) => a.action === 'onboarding.completed');
    expect(completed[0]!.details).toMatchObject({ channels: plan.map((p) => p.channelId), flow: 'facebook', catalogRows: 12 });

    expect(await acts.deactivateOnboardingChannels({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId) })).toEqual({ deactivated: 2 });
    expect((await channelRows(t.tenantId)).map((r) => [r.status, r.status_reason])).toEqual([['disabled', 'onboarding'], ['disabled', 'onboarding']]);
  });

  it('crypto-shred: refused while channels remain; then every data key destroyed, sealed leftovers cleared, the tenant and its users kept', async () => {
    const t = await newTenant();
    const { grantId, plan } = await facebookGrant(t);
    await acts.storeOnboardingChannels({ tenantId: t.tenantId, grantId, channels: plan });
    const sealedBlob = (await channelRows(t.tenantId))[0]!.access_token_ciphertext;
    expect(await acts.cryptoShredAbandonedTenant({ tenantId: t.tenantId, reason: 'oauth_timeout' })).toEqual({ shredded: false, dataKeysDestroyed: 0, channelsRemaining: 2 });

    await acts.removeOnboardingChannels({ tenantId: t.tenantId, channelIds: plan.map((p) => p.channelId), reason: 'onboarding compensation' });
    const r = await acts.cryptoShredAbandonedTenant({ tenantId: t.tenantId, reason: 'oauth_timeout' });
    expect(r).toMatchObject({ shredded: true, channelsRemaining: 0 });
    expect(r.dataKeysDestroyed).toBeGreaterThanOrEqual(1);
    const left = await db.ownerPool.query(
      `SELECT (SELECT count(*) FROM tenant_data_keys WHERE tenant_id = $1)::int AS keys, (SELECT count(*) FROM onboarding_grants WHERE tenant_id = $1)::int AS grants,
              (SELECT count(*) FROM oauth_states WHERE tenant_id = $1)::int AS states, (SELECT count(*) FROM tenants WHERE id = $1)::int AS tenants,
              (SELECT count(*) FROM tenant_users WHERE tenant_id = $1)::int AS users`,
      [t.tenantId],
    );
    expect(left.rows[0]).toEqual({ keys: 0, grants: 0, states: 0, tenants: 1, users: 1 });
    // What was sealed before cannot be opened any more, even from a copy.
    await expect(new SecretVault(db.pool, StaticKeyProvider.fromSpec(config.MASTER_KEYS)).decrypt({ tenantId: t.tenantId, table: 'channels', column: 'access_token', rowId: plan[0]!.channelId }, sealedBlob)).rejects.toThrow(
      DataKeyMissingError,
    );
    expect((await auditActions(t.tenantId)).map((a) => a.action)).toContain('tenant.crypto_shredded');
    // The client can come back: a new attempt works (a fresh data key).
    await facebookGrant(t);
  });

  it('records the outcome once per run and outcome', async () => {
    const t = await newTenant();
    await acts.recordOnboardingOutcome({ tenantId: t.tenantId, outcome: 'abandoned', step: 'awaiting_oauth', reason: 'oauth_timeout', problem: { code: 'timed_out', message: 'x' } });
    const rows = (await auditActions(t.tenantId)).filter((a) => a.action === 'onboarding.abandoned');
    expect(rows).toEqual([expect.objectContaining({ resource: `tenant:${t.tenantId}`, details: { step: 'awaiting_oauth', problem: 'timed_out' } })]);
  });

  it('records how a reconnect ended, on the channel, with the same recorder', async () => {
    const t = await newTenant();
    const reconnect = createReconnectActivities({ pool: db.pool, vault, logger: createLogger('test', 'silent'), oauth: createOAuthClient(config) });
    const channelId = randomUUID();
    await reconnect.recordReconnectOutcome({ tenantId: t.tenantId, channelId, outcome: 'failed', step: 'subscribing', reason: 'GraphPermissionDenied' });
    const rows = (await auditActions(t.tenantId)).filter((a) => a.action === 'channel.reconnect_failed');
    expect(rows).toEqual([expect.objectContaining({ resource: `channel:${channelId}`, details: { step: 'subscribing' } })]);
  });
});

describe('the saga on the real worker (createSwitchboardWorker), both flows', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(() => stack?.close());

  it.each(['facebook', 'instagram'] as const)('%s: from the callback to a live, subscribed channel', async (flow) => {
    const { id: tenantId } = await createTenant(stack.db.pool, `Saga ${flow}`);
    const user = await createTestAccount(stack.db.pool, tenantId, 'owner');
    const session = await createSession(stack.db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes: { idleMs: 3_600_000, absoluteMs: 3_600_000 } });
    const handle = await stack.client.workflow.start(onboardingWorkflow, { taskQueue: stack.config.TEMPORAL_TASK_QUEUE, workflowId: onboardingWorkflowId(tenantId), args: [{ tenantId }] });
    const at = (step: OnboardingStep) => eventually(async () => {
      const st = await handle.query(onboardingStatusQuery);
      return st.step === step && st.status === 'waiting' ? st : undefined;
    });
    try {
      await at('awaiting_oauth');
      const created = await createOAuthState(stack.db.pool, { tenantId, sessionId: session.id, flow }, { vault: stack.vault });
      await handle.executeUpdate(beginOAuthUpdate, { args: [{ flow, stateHash: created.stateHash, expiresAt: created.expiresAt }] });
      const location = new URL(stack.sandbox.authorize(dialogUrl(stack.config, flow, created.state, created.codeVerifier)));
      const consumed = await consumeOAuthState(stack.db.pool, tenantId, location.searchParams.get('state')!, session.id, { vault: stack.vault });
      if (!('flow' in consumed)) throw new Error(`state refused: ${consumed.problem}`);
      await handle.executeUpdate(oauthCallbackUpdate, { args: [{ stateHash: consumed.stateHash, code: location.searchParams.get('code')!, ...(consumed.codeVerifier && { codeVerifier: consumed.codeVerifier }) }] });
      const account = flow === 'facebook' ? PERSONA_PAGE.id : PERSONA_IG.userId;
      if (flow === 'facebook') {
        await at('selecting_assets');
        await handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [account] }] });
      }
      await at('configuring_assistant');
      await handle.executeUpdate(configureAssistantUpdate, { args: [{ persona: 'Helpful', language: 'en', businessName: `Saga ${flow}` }] });
      const result = await handle.result();
      expect(result).toMatchObject({ step: 'live', status: 'done', flow, channels: [{ accountId: account, live: true }] });

      const { rows } = await stack.db.ownerPool.query('SELECT status, webhook_subscribed, graph_api FROM channels WHERE tenant_id = $1', [tenantId]);
      expect(rows).toEqual([{ status: 'active', webhook_subscribed: true, graph_api: flow }]);
      expect(stack.sandbox.oauthState().subscriptions[account]).toHaveLength(1);
      const grants = await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM onboarding_grants WHERE tenant_id = $1', [tenantId]);
      expect(grants.rows[0]).toEqual({ n: 0 });
      expect((await handle.describe()).typedSearchAttributes.get(ONBOARDING_STEP)).toBe('live');
    } finally {
      await handle.terminate('test finished').catch(() => undefined);
    }
  });
});

describe('secrets stay secret', () => {
  it('no token, code, secret or verifier reaches a log line or an audit event', async () => {
    const text = logs.lines.join('\n');
    for (const needle of ['EAAB', 'IGAA', TEST_APP_SECRET, TEST_INSTAGRAM_APP_SECRET, 'code_verifier', 'client_secret']) expect(text).not.toContain(needle);
    const audit = JSON.stringify((await db.ownerPool.query('SELECT details, resource, reason FROM audit_events')).rows);
    for (const needle of ['EAAB', 'IGAA', TEST_APP_SECRET, TEST_INSTAGRAM_APP_SECRET]) expect(audit).not.toContain(needle);
    expect(logs.lines.length).toBeGreaterThan(0);
  });
});
