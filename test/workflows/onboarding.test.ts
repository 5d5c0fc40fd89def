import { createHash, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import type { PlannedChannel, SubscriptionPlan } from '../../activities/onboarding';
import { ONBOARDING_STEP, TENANT_ID } from '../../src/temporal/search-attributes';
import type { onboardingWorkflow } from '../../workflows/onboarding';
import {
  beginOAuthUpdate,
  configureAssistantUpdate,
  oauthCallbackUpdate,
  onboardingStatusQuery,
  onboardingWorkflowId,
  selectAssetsUpdate,
  type GrantedAsset,
  type LoginFlow,
  type OAuthCallback,
  type OnboardingStatus,
  type OnboardingStep,
} from '../../workflows/onboarding-definitions';
import { problem, type ProblemCode } from '../../workflows/onboarding-problems';
import { waitFor } from '../support/conversation-fakes';
import { sagaServers, wallClock, type SagaClock } from '../support/saga-harness';

/**
 * The onboarding saga on Temporal's time-skipping test server: the real workflow bundle, fake
 * activities that record every call (the real ones run against PostgreSQL and the Graph sandbox in
 * test/integration/onboarding-activities.test.ts). Time only moves while a test awaits
 * `env.sleep(…)` or a result, so the 7-day waits take milliseconds.
 */

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
const TENANT = '3c1b6a2e-9f4d-4e8a-b7c2-5d6e7f8a9b0c';
const PAGE = '104829376511820';
const PAGE_IG = '17841400000000001';
const PAGE_B = '104829376511821';
const IG_LOGIN = '17841400000000777';

const ONBOARDING_ACTIVITIES = [
  'exchangeOAuthCode',
  'extendOAuthGrant',
  'discardOAuthGrant',
  'listGrantedAssets',
  'storeOnboardingChannels',
  'removeOnboardingChannels',
  'subscribeOnboardingChannels',
  'unsubscribeOnboardingChannels',
  'configureOnboardingAssistant',
  'goLiveOnboarding',
  'deactivateOnboardingChannels',
  'cryptoShredAbandonedTenant',
  'recordOnboardingOutcome',
] as const;
type Name = (typeof ONBOARDING_ACTIVITIES)[number];
type Fakes = Pick<Activities, Name>;
type In<K extends Name> = Parameters<Fakes[K]>[0];

/** Steps that can fail, with the compensations that are the saga's business afterwards. */
const COMPENSATIONS: readonly Name[] = ['discardOAuthGrant', 'removeOnboardingChannels', 'unsubscribeOnboardingChannels', 'deactivateOnboardingChannels', 'cryptoShredAbandonedTenant'];

interface Recorder {
  calls: Array<{ name: Name; input: unknown }>;
  /** Starts (`name`) and, for blocked activities, ends (`name:end`), in order. */
  timeline: string[];
  names(): Name[];
  of<K extends Name>(name: K): Array<In<K>>;
  /** Compensation calls after the `n`-th call (in order). */
  compensationsSince(n: number): Name[];
}

interface FakeOptions {
  facebookAssets?: GrantedAsset[];
  instagramAssets?: GrantedAsset[];
  /** Throw this from the named activity (every attempt). */
  fail?: Partial<Record<Name, () => Error>>;
  /** Throw only the first time the named activity runs. */
  failOnce?: Partial<Record<Name, () => Error>>;
  /** Hold the named activity until the promise settles. */
  block?: Partial<Record<Name, Promise<void>>>;
}

const defaultFacebookAssets = (): GrantedAsset[] => [
  { accountId: PAGE, platform: 'messenger', graphApi: 'facebook', name: 'Demo Shop', linkedInstagram: { accountId: PAGE_IG, username: 'demoshop', connectedElsewhere: false }, connectedElsewhere: false },
];
const defaultInstagramAssets = (): GrantedAsset[] => [{ accountId: IG_LOGIN, platform: 'instagram', graphApi: 'instagram', name: 'demo.ig', connectedElsewhere: false }];

/** A non-retryable activity failure carrying an owner-facing problem, as the real activities throw. */
const problemFailure = (type: string, code: ProblemCode) => () => ApplicationFailure.create({ message: `${type} (fake)`, type, nonRetryable: true, details: [{ problem: problem(code) }] });
const plainFailure = (type: string) => () => ApplicationFailure.create({ message: `${type} (fake)`, type, nonRetryable: true });

function createFakes(opts: FakeOptions = {}): { activities: Fakes; rec: Recorder } {
  const calls: Recorder['calls'] = [];
  const timeline: string[] = [];
  const failedOnce = new Set<Name>();
  const grants = new Map<string, LoginFlow>();
  const record = async <K extends Name>(name: K, input: In<K>) => {
    calls.push({ name, input });
    timeline.push(name);
    const blocked = opts.block?.[name];
    if (blocked) {
      await blocked;
      timeline.push(`${name}:end`);
    }
    const once = opts.failOnce?.[name];
    if (once && !failedOnce.has(name)) {
      failedOnce.add(name);
      throw once();
    }
    const always = opts.fail?.[name];
    if (always) throw always();
  };
  const activities: Fakes = {
    async exchangeOAuthCode(input) {
      await record('exchangeOAuthCode', input);
      grants.set(input.grantId, input.flow);
      return { kind: 'short' };
    },
    async extendOAuthGrant(input) {
      await record('extendOAuthGrant', input);
      return { expiresAt: Date.now() + 60 * DAY_MS };
    },
    async discardOAuthGrant(input) {
      await record('discardOAuthGrant', input);
      return { deleted: grants.delete(input.grantId) };
    },
    async listGrantedAssets(input) {
      await record('listGrantedAssets', input);
      const flow = grants.get(input.grantId) ?? 'facebook';
      return { assets: flow === 'facebook' ? (opts.facebookAssets ?? defaultFacebookAssets()) : (opts.instagramAssets ?? defaultInstagramAssets()) };
    },
    async storeOnboardingChannels(input) {
      await record('storeOnboardingChannels', input);
      return { channels: input.channels.map((p: PlannedChannel) => ({ channelId: p.channelId, accountId: p.accountId, platform: p.platform, graphApi: p.graphApi, created: true, tokenExpiresAt: null })) };
    },
    async removeOnboardingChannels(input) {
      await record('removeOnboardingChannels', input);
      return { removed: input.channelIds.length };
    },
    async subscribeOnboardingChannels(input) {
      await record('subscribeOnboardingChannels', input);
      return { verified: input.plans.flatMap((p: SubscriptionPlan) => p.channelIds) };
    },
    async unsubscribeOnboardingChannels(input) {
      await record('unsubscribeOnboardingChannels', input);
      return { unsubscribed: input.plans.length };
    },
    async configureOnboardingAssistant(input) {
      await record('configureOnboardingAssistant', input);
    },
    async goLiveOnboarding(input) {
      await record('goLiveOnboarding', input);
      return { activated: input.channelIds.length };
    },
    async deactivateOnboardingChannels(input) {
      await record('deactivateOnboardingChannels', input);
      return { deactivated: input.channelIds.length };
    },
    async cryptoShredAbandonedTenant(input) {
      await record('cryptoShredAbandonedTenant', input);
      return { shredded: true, dataKeysDestroyed: 1, channelsRemaining: 0 };
    },
    async recordOnboardingOutcome(input) {
      await record('recordOnboardingOutcome', input);
    },
  };
  const rec: Recorder = {
    calls,
    timeline,
    names: () => calls.map((c) => c.name),
    of: <K extends Name>(name: K) => calls.filter((c) => c.name === name).map((c) => c.input as In<K>),
    compensationsSince: (n) => calls.slice(n).map((c) => c.name).filter((name) => COMPENSATIONS.includes(name)),
  };
  return { activities, rec };
}

/** Each saga on its own time-skipping server, or on the run's dev server (a real Temporal server) for what the test server does differently. */
const servers = sagaServers();

type Handle = WorkflowHandle<typeof onboardingWorkflow>;

interface Ctx {
  handle: Handle;
  rec: Recorder;
  tenantId: string;
  /** The server's clock (the time-skipping server's, or the wall clock). */
  now(): Promise<number>;
  sleep(ms: number): Promise<void>;
  status(): Promise<OnboardingStatus>;
  at(step: OnboardingStep, state?: OnboardingStatus['status']): Promise<OnboardingStatus>;
  begin(flow: LoginFlow, state?: string, ttlMs?: number): Promise<string>;
  callback(cb: OAuthCallback): Promise<OnboardingStatus>;
  historyLength(): Promise<number>;
  stepAttribute(): Promise<unknown>;
}

type ScenarioOptions = FakeOptions & {
  input?: { oauthTimeoutMs?: number; stepTimeoutMs?: number };
  /** Which server the saga runs on: see SagaOptions.server (why some checks want the dev server). */
  server?: 'time-skipping' | 'dev';
};

/** A worker with fresh fakes and the saga started; on the time-skipping server, one server per test (its clock is global). */
async function scenario(opts: ScenarioOptions, fn: (c: Ctx) => Promise<void>): Promise<void> {
  const { activities, rec } = createFakes(opts);
  // A fresh tenant per saga: workflow ids are per tenant and the dev server is shared by the run.
  const tenantId = opts.server === 'dev' ? randomUUID() : TENANT;
  await servers.runSaga<typeof onboardingWorkflow>(
    { server: opts.server, taskQueuePrefix: 'onboarding-test', activities, workflowType: 'onboardingWorkflow', workflowId: onboardingWorkflowId(tenantId), args: [{ tenantId, ...opts.input }] },
    (handle, clock) => fn(context(handle, rec, tenantId, clock)),
  );
}

const sha = (s: string) => createHash('sha256').update(s).digest('base64url');

function context(handle: Handle, rec: Recorder, tenantId: string, clock: SagaClock): Ctx {
  const status = () => handle.query(onboardingStatusQuery);
  return {
    handle,
    rec,
    tenantId,
    ...clock,
    status,
    at: (step, state) => waitFor(async () => {
      const s = await status();
      return s.step === step && (!state || s.status === state) ? s : undefined;
    }, `step ${step}${state ? ` (${state})` : ''}`),
    async begin(flow, state = randomUUID(), ttlMs = 10 * MINUTE_MS) {
      const stateHash = sha(state);
      await handle.executeUpdate(beginOAuthUpdate, { args: [{ flow, stateHash, expiresAt: (await clock.now()) + ttlMs }] });
      return stateHash;
    },
    callback: (cb) => handle.executeUpdate(oauthCallbackUpdate, { args: [cb] }),
    historyLength: async () => (await handle.fetchHistory()).events?.length ?? 0,
    stepAttribute: async () => (await handle.describe()).typedSearchAttributes.get(ONBOARDING_STEP),
  };
}

/** From awaiting_oauth to a stored, subscribed Facebook connection waiting for the assistant's configuration. */
async function connectFacebook(c: Ctx, accountIds = [PAGE, PAGE_IG]): Promise<void> {
  await c.at('awaiting_oauth', 'waiting');
  const hash = await c.begin('facebook');
  await c.callback({ stateHash: hash, code: 'fb-code-1' });
  await c.at('selecting_assets', 'waiting');
  await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds }] });
  await c.at('configuring_assistant', 'waiting');
}

const configure = (c: Ctx) => c.handle.executeUpdate(configureAssistantUpdate, { args: [{ persona: 'Friendly and brief', language: 'en', businessName: 'Demo Shop', catalogRows: 3 }] });

describe('the happy paths', () => {
  it('Facebook Login: OAuth, a choice of two accounts, store, subscribe, configure, live; the query and OnboardingStep follow each step', async () => {
    await scenario({}, async (c) => {
      const first = await c.at('awaiting_oauth', 'waiting');
      expect(first).toMatchObject({ tenantId: TENANT, portalStep: 2, channels: [] });
      // The wait starts when the first workflow task runs, a moment after the start.
      expect(first.waitingUntil! - first.startedAt).toBeGreaterThanOrEqual(7 * DAY_MS);
      expect(first.waitingUntil! - first.startedAt).toBeLessThan(7 * DAY_MS + MINUTE_MS);
      expect(await c.stepAttribute()).toBe('awaiting_oauth');
      expect((await c.handle.describe()).typedSearchAttributes.get(TENANT_ID)).toBe(TENANT);

      const hash = await c.begin('facebook');
      const accepted = await c.callback({ stateHash: hash, code: 'fb-code-1', codeVerifier: 'v'.repeat(64) });
      expect(accepted).toMatchObject({ step: 'exchanging_code', status: 'working', flow: 'facebook' });

      const choosing = await c.at('selecting_assets', 'waiting');
      expect(choosing.assets).toEqual(defaultFacebookAssets());
      expect(await c.stepAttribute()).toBe('selecting_assets');
      const exchange = c.rec.of('exchangeOAuthCode')[0]!;
      expect(exchange).toEqual({ tenantId: TENANT, grantId: expect.any(String), flow: 'facebook', code: 'fb-code-1', codeVerifier: 'v'.repeat(64) });
      expect(c.rec.of('extendOAuthGrant')).toEqual([{ tenantId: TENANT, grantId: exchange.grantId }]);

      await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE, PAGE_IG] }] });
      const configuring = await c.at('configuring_assistant', 'waiting');
      expect(configuring.portalStep).toBe(3);
      expect(await c.stepAttribute()).toBe('configuring_assistant');
      const stored = c.rec.of('storeOnboardingChannels')[0]!;
      expect(stored.channels).toEqual([
        { channelId: expect.any(String), accountId: PAGE, platform: 'messenger', graphApi: 'facebook' },
        { channelId: expect.any(String), accountId: PAGE_IG, platform: 'instagram', graphApi: 'facebook', pageId: PAGE },
      ]);
      const [pageChannel, igChannel] = stored.channels.map((p) => p.channelId);
      // The Page and its linked Instagram account share one Page subscription.
      expect(c.rec.of('subscribeOnboardingChannels')).toEqual([
        { tenantId: TENANT, plans: [{ target: { graphApi: 'facebook', accountId: PAGE }, tokenChannelId: pageChannel, channelIds: [pageChannel, igChannel] }] },
      ]);
      // The user token went as soon as the channels were stored.
      expect(c.rec.of('discardOAuthGrant')).toEqual([{ tenantId: TENANT, grantId: exchange.grantId }]);
      expect(configuring.channels).toEqual([
        { channelId: pageChannel, platform: 'messenger', accountId: PAGE, live: false },
        { channelId: igChannel, platform: 'instagram', accountId: PAGE_IG, live: false },
      ]);

      await configure(c);
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'live', status: 'done', portalStep: 4, flow: 'facebook' });
      expect(result.problem).toBeUndefined();
      expect(result.channels.every((ch) => ch.live)).toBe(true);
      expect(result.finishedAt).toEqual(expect.any(Number));
      expect(await c.stepAttribute()).toBe('live');
      expect(c.rec.of('configureOnboardingAssistant')).toEqual([{ tenantId: TENANT, configuration: { persona: 'Friendly and brief', language: 'en', businessName: 'Demo Shop', catalogRows: 3 } }]);
      expect(c.rec.of('goLiveOnboarding')).toEqual([{ tenantId: TENANT, channelIds: [pageChannel, igChannel], flow: 'facebook', catalogRows: 3 }]);
      expect(c.rec.names()).toEqual([
        'exchangeOAuthCode',
        'extendOAuthGrant',
        'listGrantedAssets',
        'storeOnboardingChannels',
        'discardOAuthGrant',
        'subscribeOnboardingChannels',
        'configureOnboardingAssistant',
        'goLiveOnboarding',
      ]);
    });
  });

  it('Instagram Login: the one granted account is taken without asking, subscribed through `me`', async () => {
    await scenario({}, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('instagram');
      await c.callback({ stateHash: hash, code: 'ig-code-1' });
      await c.at('configuring_assistant', 'waiting');
      const stored = c.rec.of('storeOnboardingChannels')[0]!;
      expect(stored.channels).toEqual([{ channelId: expect.any(String), accountId: IG_LOGIN, platform: 'instagram', graphApi: 'instagram' }]);
      const channelId = stored.channels[0]!.channelId;
      expect(c.rec.of('subscribeOnboardingChannels')[0]!.plans).toEqual([{ target: { graphApi: 'instagram', accountId: 'me' }, tokenChannelId: channelId, channelIds: [channelId] }]);
      expect(c.rec.of('exchangeOAuthCode')[0]).toMatchObject({ flow: 'instagram', code: 'ig-code-1' });
      await configure(c);
      expect(await c.handle.result()).toMatchObject({ step: 'live', flow: 'instagram', channels: [{ channelId, platform: 'instagram', accountId: IG_LOGIN, live: true }] });
    });
  });
});

describe('the OAuth step', () => {
  it('no callback for 7 days: compensated (nothing to undo), crypto-shredded, abandoned, recorded', async () => {
    await scenario({}, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      await c.sleep(7 * DAY_MS - MINUTE_MS);
      expect(await c.status()).toMatchObject({ step: 'awaiting_oauth', status: 'waiting' });
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'abandoned', status: 'failed', problem: { code: 'timed_out' } });
      expect(result.finishedAt! - result.startedAt).toBeGreaterThanOrEqual(7 * DAY_MS);
      expect(c.rec.names()).toEqual(['cryptoShredAbandonedTenant', 'recordOnboardingOutcome']);
      expect(c.rec.of('cryptoShredAbandonedTenant')).toEqual([{ tenantId: TENANT, reason: 'oauth_timeout' }]);
      expect(c.rec.of('recordOnboardingOutcome')).toEqual([{ tenantId: TENANT, outcome: 'abandoned', step: 'awaiting_oauth', reason: 'oauth_timeout', problem: problem('timed_out') }]);
      expect(await c.stepAttribute()).toBe('abandoned');
    });
  });

  it('the timeout is configurable', async () => {
    await scenario({ input: { oauthTimeoutMs: 2 * DAY_MS } }, async (c) => {
      expect((await c.at('awaiting_oauth', 'waiting')).waitingUntil).toBeDefined();
      const result = await c.handle.result();
      expect(result.step).toBe('abandoned');
      expect(result.finishedAt! - result.startedAt).toBeGreaterThanOrEqual(2 * DAY_MS);
      expect(result.finishedAt! - result.startedAt).toBeLessThan(3 * DAY_MS);
    });
  });

  it('a wrong, expired, replayed or duplicate state is refused by the validator without a history event (dev server)', async () => {
    await scenario({ server: 'dev' }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const refused = async (cb: OAuthCallback, why: RegExp) => {
        const before = await c.historyLength();
        const err = await c.callback(cb).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
        expect(String((err as WorkflowUpdateFailedError).cause?.message)).toMatch(why);
        expect(await c.historyLength()).toBe(before);
      };

      // No attempt yet: any state is unknown.
      await refused({ stateHash: sha('nothing'), code: 'c' }, /unknown state/);

      // An attempt that expires before its callback (wall clock here: a short lifetime).
      const stale = await c.begin('facebook', 'stale-state', 1500);
      await c.sleep(2000);
      await refused({ stateHash: stale, code: 'c' }, /expired/);

      // A denied consent uses the state up and keeps the saga waiting, with the problem shown.
      const denied = await c.begin('facebook', 'denied-state');
      const afterDenial = await c.callback({ stateHash: denied, error: 'access_denied', errorReason: 'user_denied' });
      expect(afterDenial).toMatchObject({ step: 'awaiting_oauth', problem: { code: 'oauth_denied' } });
      await refused({ stateHash: denied, code: 'c' }, /already used/);

      // A newer attempt replaces the older one: the older state is no longer the current one.
      const older = await c.begin('facebook', 'older-state');
      const current = await c.begin('facebook', 'current-state');
      await refused({ stateHash: older, code: 'c' }, /unknown state/);
      await refused({ stateHash: sha('forged'), code: 'c' }, /unknown state/);
      expect(await c.status()).toMatchObject({ step: 'awaiting_oauth', status: 'waiting' });

      await c.callback({ stateHash: current, code: 'good-code' });
      // The same callback again (a reload of the callback page), once the saga is quiet again: already used.
      await c.at('selecting_assets', 'waiting');
      await refused({ stateHash: current, code: 'good-code' }, /already used/);
      expect(c.rec.of('exchangeOAuthCode').map((i) => i.code)).toEqual(['good-code']);

      // Out of step: a new attempt is refused while the saga is past the OAuth step.
      const err = await c.begin('facebook', 'late').then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    });
  });

  it('a denied consent restarts the 7-day wait: the client came back', async () => {
    await scenario({}, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      await c.sleep(5 * DAY_MS);
      const hash = await c.begin('instagram');
      await c.callback({ stateHash: hash, error: 'access_denied' });
      await c.sleep(5 * DAY_MS);
      expect(await c.status()).toMatchObject({ step: 'awaiting_oauth', problem: { code: 'oauth_denied' } });
      const result = await c.handle.result();
      expect(result.step).toBe('abandoned');
      expect(result.finishedAt! - result.startedAt).toBeGreaterThanOrEqual(12 * DAY_MS);
    });
  });
});

describe('failure at each step compensates exactly the steps done before it (and its own, registered before it ran)', () => {
  const cases: Array<{ step: Name; failure: () => Error; undo: Name[]; end: 'awaiting_oauth' | 'failed'; problem: string }> = [
    { step: 'exchangeOAuthCode', failure: problemFailure('OAuthCodeRejected', 'code_rejected'), undo: ['discardOAuthGrant'], end: 'awaiting_oauth', problem: 'code_rejected' },
    { step: 'extendOAuthGrant', failure: problemFailure('GraphTransient', 'meta_unavailable'), undo: ['discardOAuthGrant'], end: 'awaiting_oauth', problem: 'meta_unavailable' },
    { step: 'listGrantedAssets', failure: problemFailure('NoPages', 'no_pages'), undo: ['discardOAuthGrant'], end: 'awaiting_oauth', problem: 'no_pages' },
    { step: 'storeOnboardingChannels', failure: problemFailure('AccountConnectedElsewhere', 'connected_elsewhere'), undo: ['removeOnboardingChannels', 'discardOAuthGrant'], end: 'awaiting_oauth', problem: 'connected_elsewhere' },
    { step: 'subscribeOnboardingChannels', failure: problemFailure('SubscriptionFailed', 'subscription_failed'), undo: ['unsubscribeOnboardingChannels', 'removeOnboardingChannels'], end: 'awaiting_oauth', problem: 'subscription_failed' },
    { step: 'configureOnboardingAssistant', failure: plainFailure('DatabaseDown'), undo: ['unsubscribeOnboardingChannels', 'removeOnboardingChannels'], end: 'failed', problem: 'internal' },
    { step: 'goLiveOnboarding', failure: plainFailure('DatabaseDown'), undo: ['deactivateOnboardingChannels', 'unsubscribeOnboardingChannels', 'removeOnboardingChannels'], end: 'failed', problem: 'internal' },
  ];

  it.each(cases)('$step fails → $undo, then $end', async ({ step, failure, undo, end, problem: code }) => {
    await scenario({ fail: { [step]: failure } }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('facebook');
      await c.callback({ stateHash: hash, code: 'fb-code' });
      const afterSelection = ['storeOnboardingChannels', 'subscribeOnboardingChannels', 'configureOnboardingAssistant', 'goLiveOnboarding'].includes(step);
      if (afterSelection) {
        await c.at('selecting_assets', 'waiting');
        await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE, PAGE_IG] }] });
      }
      let final: OnboardingStatus;
      if (end === 'failed') {
        await c.at('configuring_assistant', 'waiting');
        await configure(c);
        final = await c.handle.result();
        expect(final).toMatchObject({ step: 'failed', status: 'failed', channels: [] });
        expect(c.rec.of('recordOnboardingOutcome')).toEqual([expect.objectContaining({ outcome: 'failed', problem: expect.objectContaining({ code }) })]);
        expect(c.rec.names()).not.toContain('cryptoShredAbandonedTenant');
      } else {
        final = await waitFor(async () => {
          const s = await c.status();
          return s.step === 'awaiting_oauth' && s.problem ? s : undefined;
        }, 'back to awaiting_oauth with a problem');
        expect(final).toMatchObject({ status: 'waiting', channels: [] });
        expect(final.assets).toBeUndefined();
      }
      expect(final.problem).toMatchObject({ code });
      const failIndex = c.rec.calls.findIndex((x) => x.name === step);
      expect(c.rec.compensationsSince(failIndex + 1)).toEqual(undo);

      // Each compensation names what its step touched (the ids the workflow chose).
      const grantId = c.rec.of('exchangeOAuthCode')[0]!.grantId;
      for (const d of c.rec.of('discardOAuthGrant')) expect(d).toEqual({ tenantId: TENANT, grantId });
      const planned = c.rec.of('storeOnboardingChannels')[0]?.channels.map((p) => p.channelId);
      for (const r of c.rec.of('removeOnboardingChannels')) expect(r).toEqual({ tenantId: TENANT, channelIds: planned, reason: 'onboarding compensation' });
      for (const r of c.rec.of('deactivateOnboardingChannels')) expect(r).toEqual({ tenantId: TENANT, channelIds: planned });
      for (const r of c.rec.of('unsubscribeOnboardingChannels')) expect(r.plans).toEqual(c.rec.of('subscribeOnboardingChannels')[0]!.plans);
    });
  });

  it('after a failed attempt the client connects again and the saga goes live', async () => {
    await scenario({ failOnce: { storeOnboardingChannels: problemFailure('AssetGone', 'asset_missing') } }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const first = await c.begin('facebook');
      await c.callback({ stateHash: first, code: 'code-1' });
      await c.at('selecting_assets', 'waiting');
      await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE] }] });
      await waitFor(async () => (await c.status()).problem?.code === 'asset_missing', 'the problem');
      await connectFacebook(c, [PAGE]);
      await configure(c);
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'live', channels: [{ platform: 'messenger', accountId: PAGE, live: true }] });
      const [g1, g2] = c.rec.of('exchangeOAuthCode').map((i) => i.grantId);
      expect(g1).not.toBe(g2);
      expect(c.rec.of('discardOAuthGrant').map((d) => d.grantId)).toEqual([g1, g2]);
    });
  });

  it('a transient failure is retried by the activity policy, not compensated', async () => {
    const transient = () => ApplicationFailure.create({ message: 'HTTP 500 (fake)', type: 'GraphTransient', nonRetryable: false, details: [{ problem: problem('meta_unavailable') }] });
    await scenario({ failOnce: { listGrantedAssets: transient, subscribeOnboardingChannels: transient } }, async (c) => {
      await connectFacebook(c);
      expect(c.rec.of('listGrantedAssets')).toHaveLength(2);
      expect(c.rec.of('subscribeOnboardingChannels')).toHaveLength(2);
      expect(c.rec.compensationsSince(0)).toEqual(['discardOAuthGrant']); // the clean-up after storing, not a compensation run
      expect((await c.status()).problem).toBeUndefined();
    });
  });

  it('nothing selectable (every account belongs to another tenant): refused with a problem, attempt undone', async () => {
    const taken: GrantedAsset[] = [{ accountId: PAGE_B, platform: 'messenger', graphApi: 'facebook', name: 'Taken', connectedElsewhere: true }];
    await scenario({ facebookAssets: taken }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('facebook');
      await c.callback({ stateHash: hash, code: 'c' });
      const s = await waitFor(async () => {
        const st = await c.status();
        return st.step === 'awaiting_oauth' && st.problem ? st : undefined;
      }, 'the problem');
      expect(s.problem).toEqual(problem('connected_elsewhere'));
      expect(c.rec.names()).toEqual(['exchangeOAuthCode', 'extendOAuthGrant', 'listGrantedAssets', 'discardOAuthGrant']);
    });
  });
});

const twoPages = (): GrantedAsset[] => [
  { accountId: PAGE, platform: 'messenger', graphApi: 'facebook', name: 'Mine', connectedElsewhere: false },
  { accountId: PAGE_B, platform: 'messenger', graphApi: 'facebook', name: 'Theirs', connectedElsewhere: true, linkedInstagram: { accountId: PAGE_IG, connectedElsewhere: false } },
];

describe('asset choice', () => {
  it("the validator accepts only granted accounts that aren't another tenant's, without a history event for a refusal (dev server)", async () => {
    await scenario({ server: 'dev', facebookAssets: twoPages() }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('facebook');
      await c.callback({ stateHash: hash, code: 'c' });
      await c.at('selecting_assets', 'waiting');
      for (const accountIds of [[PAGE_B], ['999'], [], [PAGE, PAGE]]) {
        const before = await c.historyLength();
        await expect(c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds }] })).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
        expect(await c.historyLength()).toBe(before);
      }
      // The Instagram account linked to another tenant's Page is this client's to connect.
      await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE_IG, PAGE] }] });
      await c.at('configuring_assistant', 'waiting');
      expect(c.rec.of('storeOnboardingChannels')[0]!.channels.map((p) => [p.accountId, p.platform, p.pageId])).toEqual([
        [PAGE_IG, 'instagram', PAGE_B],
        [PAGE, 'messenger', undefined],
      ]);
    });
  });

  it('no choice in 7 days → abandoned after undoing the grant, crypto-shredded', async () => {
    await scenario({ facebookAssets: twoPages() }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('facebook');
      await c.callback({ stateHash: hash, code: 'c' });
      const choosing = await c.at('selecting_assets', 'waiting');
      expect(choosing.waitingUntil).toBeDefined();
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'abandoned', problem: { code: 'timed_out' } });
      expect(c.rec.names().slice(3)).toEqual(['discardOAuthGrant', 'cryptoShredAbandonedTenant', 'recordOnboardingOutcome']);
      expect(c.rec.of('cryptoShredAbandonedTenant')).toEqual([{ tenantId: TENANT, reason: 'selection_timeout' }]);
      expect(c.rec.of('recordOnboardingOutcome')).toEqual([expect.objectContaining({ outcome: 'abandoned', step: 'selecting_assets', reason: 'selection_timeout' })]);
    });
  });
});

describe('configuration', () => {
  it('no configuration in 7 days → abandoned: unsubscribed, channels removed, crypto-shredded', async () => {
    await scenario({}, async (c) => {
      await connectFacebook(c);
      const since = c.rec.calls.length;
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'abandoned', channels: [] });
      expect(c.rec.names().slice(since)).toEqual(['unsubscribeOnboardingChannels', 'removeOnboardingChannels', 'cryptoShredAbandonedTenant', 'recordOnboardingOutcome']);
    });
  });

  it('an invalid configuration is refused by the validator without a history event; one the settings refuse waits for a corrected one (dev server)', async () => {
    await scenario({ server: 'dev', failOnce: { configureOnboardingAssistant: problemFailure('InvalidConfiguration', 'invalid_configuration') } }, async (c) => {
      await connectFacebook(c);
      const before = await c.historyLength();
      for (const bad of [{ persona: '', language: 'en' }, { persona: 'x', language: 'xx' }, { persona: 'x', language: 'en', catalogRows: -1 }]) {
        await expect(c.handle.executeUpdate(configureAssistantUpdate, { args: [bad as never] })).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
      }
      expect(await c.historyLength()).toBe(before);
      await configure(c);
      const again = await waitFor(async () => {
        const s = await c.status();
        return s.step === 'configuring_assistant' && s.status === 'waiting' && s.problem ? s : undefined;
      }, 'the settings problem');
      expect(again.problem).toEqual(problem('invalid_configuration'));
      await configure(c);
      expect((await c.handle.result()).step).toBe('live');
      expect(c.rec.compensationsSince(0)).toEqual(['discardOAuthGrant']);
    });
  });
});

describe('cancellation and restarts', () => {
  it('cancelling compensates in reverse order and ends cancelled', async () => {
    await scenario({}, async (c) => {
      await connectFacebook(c);
      const since = c.rec.calls.length;
      await c.handle.cancel();
      const err = await c.handle.result().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      expect(c.rec.names().slice(since)).toEqual(['unsubscribeOnboardingChannels', 'removeOnboardingChannels', 'recordOnboardingOutcome']);
      expect(c.rec.of('recordOnboardingOutcome')).toEqual([expect.objectContaining({ outcome: 'cancelled', step: 'configuring_assistant', reason: 'cancelled' })]);
      expect(await c.status()).toMatchObject({ step: 'cancelled', status: 'failed', channels: [] });
      expect(await c.stepAttribute()).toBe('cancelled');
    });
  });

  it('cancelling while a step runs waits for that step to end, then undoes it too', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await scenario({ block: { storeOnboardingChannels: gate } }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const hash = await c.begin('facebook');
      await c.callback({ stateHash: hash, code: 'c' });
      await c.at('selecting_assets', 'waiting');
      await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE] }] });
      await waitFor(() => c.rec.timeline.includes('storeOnboardingChannels'), 'the store step to start');
      await c.handle.cancel();
      await new Promise((r) => setTimeout(r, 500));
      // The step may still write: nothing is undone before it has ended.
      expect(c.rec.compensationsSince(0)).toEqual([]);
      release();
      const err = await c.handle.result().then(() => undefined, (e: unknown) => e);
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      const t = c.rec.timeline;
      expect(t.slice(t.indexOf('storeOnboardingChannels'))).toEqual(['storeOnboardingChannels', 'storeOnboardingChannels:end', 'removeOnboardingChannels', 'discardOAuthGrant', 'recordOnboardingOutcome']);
    });
  });

  // On the dev server: a worker shutting down on the test server waits out its long polls (a minute).
  it('a worker restart between steps resumes without repeating a completed step (dev server)', async () => {
    const taskQueue = `onboarding-restart-${randomUUID()}`;
    const tenantId = randomUUID();
    const clock = wallClock;
    const one = createFakes();
    const handle = await servers.devClient.workflow.start<typeof onboardingWorkflow>('onboardingWorkflow', { taskQueue, workflowId: onboardingWorkflowId(tenantId), args: [{ tenantId }] });
    try {
      // The first worker keeps the workflow cached (sticky); once it is gone its sticky queue times out (1 s) and the task goes to the normal queue.
      const worker1 = await Worker.create({ connection: servers.devNative, taskQueue, workflowBundle: { code: servers.bundleCode }, activities: one.activities, stickyQueueScheduleToStartTimeout: '1 second' });
      await worker1.runUntil(async () => {
        const c = context(handle, one.rec, tenantId, clock);
        await c.at('awaiting_oauth', 'waiting');
        const hash = await c.begin('facebook');
        await c.callback({ stateHash: hash, code: 'c' });
        await c.at('selecting_assets', 'waiting');
      });
      expect(one.rec.names()).toEqual(['exchangeOAuthCode', 'extendOAuthGrant', 'listGrantedAssets']);

      // A new worker, with nothing cached: it replays the history and carries on from the choice.
      const two = createFakes();
      const worker2 = await Worker.create({ connection: servers.devNative, taskQueue, workflowBundle: { code: servers.bundleCode }, activities: two.activities });
      await worker2.runUntil(async () => {
        const c = context(handle, two.rec, tenantId, clock);
        expect(await c.status()).toMatchObject({ step: 'selecting_assets', status: 'waiting' });
        await c.handle.executeUpdate(selectAssetsUpdate, { args: [{ accountIds: [PAGE] }] });
        await c.at('configuring_assistant', 'waiting');
        await configure(c);
        expect(await handle.result()).toMatchObject({ step: 'live' });
      });
      expect(two.rec.names()).toEqual(['storeOnboardingChannels', 'discardOAuthGrant', 'subscribeOnboardingChannels', 'configureOnboardingAssistant', 'goLiveOnboarding']);
      // The grant the second worker discards is the one the first worker's exchange created.
      expect(two.rec.of('discardOAuthGrant')[0]!.grantId).toBe(one.rec.of('exchangeOAuthCode')[0]!.grantId);
    } finally {
      await handle.terminate('test finished').catch(() => undefined);
    }
  });
});
