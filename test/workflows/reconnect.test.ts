import { createHash, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Activities } from '../../activities';
import type { ReconnectChannel } from '../../activities/reconnect';
import type { reconnectWorkflow } from '../../workflows/reconnect';
import { beginOAuthUpdate, type GrantedAsset, type LoginFlow, type OAuthCallback } from '../../workflows/onboarding-definitions';
import { problem, type ProblemCode } from '../../workflows/onboarding-problems';
import {
  reconnectOAuthCallbackUpdate,
  reconnectStatusQuery,
  reconnectWorkflowId,
  type ReconnectInput,
  type ReconnectStatus,
  type ReconnectStep,
} from '../../workflows/token-lifecycle-definitions';
import { waitFor } from '../support/conversation-fakes';
import { sagaServers } from '../support/saga-harness';

/**
 * The reconnect saga with recording fake activities: on the time-skipping test server where its
 * 7-day wait matters, on the run's dev server where a refused Update must leave no history event
 * (the test server writes workflow-task events even for an Update its validator rejects). The
 * real activities, with the token stored, the episode closed and the parked replies delivered
 * through the sandbox, run in test/integration/portal-reconnect.test.ts and
 * test/e2e/reconnect.browser.test.ts.
 */

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
const TENANT = '5b0e9c1d-2a3f-4b6c-8d7e-9f0a1b2c3d4e';
const CHANNEL = 'c4a1e2b3-7d6f-4e5a-9b8c-0d1e2f3a4b5c';
const PAGE = '104829376511820';
const PAGE_IG = '17841452836401977';
const PAGE_OTHER = '231907745812664';
const IG_LOGIN = '17841469920315587';

const NAMES = [
  'describeReconnectChannel',
  'exchangeOAuthCode',
  'extendOAuthGrant',
  'discardOAuthGrant',
  'listGrantedAssets',
  'storeReconnectedToken',
  'revertReconnectedChannel',
  'subscribeOnboardingChannels',
  'completeReconnect',
  'resumeParkedSends',
  'recordReconnectOutcome',
] as const;
type Name = (typeof NAMES)[number];
type Fakes = Pick<Activities, Name>;
type In<K extends Name> = Parameters<Fakes[K]>[0];

interface Recorder {
  calls: Array<{ name: Name; input: unknown }>;
  names(): Name[];
  of<K extends Name>(name: K): Array<In<K>>;
}

interface FakeOptions {
  channel?: ReconnectChannel | null;
  /** What each listing answers, in turn (the last one repeats). */
  assets?: GrantedAsset[][];
  fail?: Partial<Record<Name, () => Error>>;
  failOnce?: Partial<Record<Name, () => Error>>;
  /** Hold the named activity until the promise settles. */
  block?: Partial<Record<Name, Promise<void>>>;
}

const messengerChannel = (status: ReconnectChannel['status'] = 'reauth_required'): ReconnectChannel => ({ channelId: CHANNEL, platform: 'messenger', accountId: PAGE, graphApi: 'facebook', status });
const pageAssets = (): GrantedAsset[] => [
  { accountId: PAGE, platform: 'messenger', graphApi: 'facebook', name: 'Bergsport Berger', linkedInstagram: { accountId: PAGE_IG, username: 'bergsport.berger', connectedElsewhere: false }, connectedElsewhere: false },
];
const otherPageAssets = (): GrantedAsset[] => [{ accountId: PAGE_OTHER, platform: 'messenger', graphApi: 'facebook', name: 'Clínica Sonrisa', connectedElsewhere: false }];

const problemFailure = (type: string, code: ProblemCode) => () => ApplicationFailure.create({ message: `${type} (fake)`, type, nonRetryable: true, details: [{ problem: problem(code) }] });

function createFakes(opts: FakeOptions = {}): { activities: Fakes; rec: Recorder } {
  const calls: Recorder['calls'] = [];
  const failedOnce = new Set<Name>();
  let listings = 0;
  const record = async <K extends Name>(name: K, input: In<K>) => {
    calls.push({ name, input });
    await opts.block?.[name];
    const once = opts.failOnce?.[name];
    if (once && !failedOnce.has(name)) {
      failedOnce.add(name);
      throw once();
    }
    const always = opts.fail?.[name];
    if (always) throw always();
  };
  const activities: Fakes = {
    async describeReconnectChannel(input) {
      await record('describeReconnectChannel', input);
      return opts.channel === undefined ? messengerChannel() : opts.channel;
    },
    async exchangeOAuthCode(input) {
      await record('exchangeOAuthCode', input);
      return { kind: 'short' };
    },
    async extendOAuthGrant(input) {
      await record('extendOAuthGrant', input);
      return { expiresAt: Date.now() + 60 * DAY_MS };
    },
    async discardOAuthGrant(input) {
      await record('discardOAuthGrant', input);
      return { deleted: true };
    },
    async listGrantedAssets(input) {
      await record('listGrantedAssets', input);
      const all = opts.assets ?? [pageAssets()];
      return { assets: all[Math.min(listings++, all.length - 1)]! };
    },
    async storeReconnectedToken(input) {
      await record('storeReconnectedToken', input);
      return { tokenExpiresAt: null };
    },
    async revertReconnectedChannel(input) {
      await record('revertReconnectedChannel', input);
      return { reverted: true };
    },
    async subscribeOnboardingChannels(input) {
      await record('subscribeOnboardingChannels', input);
      return { verified: input.plans.flatMap((p) => p.channelIds) };
    },
    async completeReconnect(input) {
      await record('completeReconnect', input);
      return { episodesClosed: ['e1'] };
    },
    async resumeParkedSends(input) {
      await record('resumeParkedSends', input);
      return { conversations: 2, parked: 3 };
    },
    async recordReconnectOutcome(input) {
      await record('recordReconnectOutcome', input);
    },
  };
  return {
    activities,
    rec: {
      calls,
      names: () => calls.map((c) => c.name),
      of: <K extends Name>(name: K) => calls.filter((c) => c.name === name).map((c) => c.input as In<K>),
    },
  };
}

const servers = sagaServers();

type Handle = WorkflowHandle<typeof reconnectWorkflow>;

interface Ctx {
  handle: Handle;
  rec: Recorder;
  now(): Promise<number>;
  sleep(ms: number): Promise<void>;
  status(): Promise<ReconnectStatus>;
  at(step: ReconnectStep, state?: ReconnectStatus['status']): Promise<ReconnectStatus>;
  /** Waits until the saga is back at the OAuth step with a problem. */
  problem(): Promise<ReconnectStatus>;
  begin(flow: LoginFlow, state?: string, ttlMs?: number): Promise<string>;
  callback(cb: OAuthCallback): Promise<ReconnectStatus>;
  historyLength(): Promise<number>;
}

type ScenarioOptions = FakeOptions & { input?: Partial<ReconnectInput>; server?: 'time-skipping' | 'dev' };

const sha = (s: string) => createHash('sha256').update(s).digest('base64url');

async function scenario(opts: ScenarioOptions, fn: (c: Ctx) => Promise<void>): Promise<void> {
  const { activities, rec } = createFakes(opts);
  // The dev server is shared by the run: a fresh channel id per saga there.
  const channelId = opts.server === 'dev' ? randomUUID() : CHANNEL;
  await servers.runSaga<typeof reconnectWorkflow>(
    { server: opts.server, taskQueuePrefix: 'reconnect-test', activities, workflowType: 'reconnectWorkflow', workflowId: reconnectWorkflowId(channelId), args: [{ tenantId: TENANT, channelId, ...opts.input }] },
    async (handle, clock) => {
      const status = () => handle.query(reconnectStatusQuery);
      await fn({
        handle,
        rec,
        ...clock,
        status,
        at: (step, state) =>
          waitFor(async () => {
            const s = await status();
            return s.step === step && (!state || s.status === state) ? s : undefined;
          }, `step ${step}${state ? ` (${state})` : ''}`),
        problem: () =>
          waitFor(async () => {
            const s = await status();
            return s.step === 'awaiting_oauth' && s.status === 'waiting' && s.problem ? s : undefined;
          }, 'back at the OAuth step with a problem'),
        async begin(flow, state = randomUUID(), ttlMs = 10 * MINUTE_MS) {
          const stateHash = sha(state);
          await handle.executeUpdate(beginOAuthUpdate, { args: [{ flow, stateHash, expiresAt: (await clock.now()) + ttlMs }] });
          return stateHash;
        },
        callback: (cb) => handle.executeUpdate(reconnectOAuthCallbackUpdate, { args: [cb] }),
        historyLength: async () => (await handle.fetchHistory()).events?.length ?? 0,
      });
    },
  );
}

/** Begin + a callback with a code: what the portal does after Allow. */
async function allow(c: Ctx, flow: LoginFlow = 'facebook', code = 'code-1'): Promise<ReconnectStatus> {
  await c.at('awaiting_oauth', 'waiting');
  const hash = await c.begin(flow);
  return c.callback({ stateHash: hash, code });
}

describe('reconnecting', () => {
  it('a Page: the new token for the channel, the subscription checked, episodes closed, then the parked replies resumed', async () => {
    await scenario({ input: { label: 'Page “Bergsport Berger”' } }, async (c) => {
      const first = await c.at('awaiting_oauth', 'waiting');
      expect(first).toMatchObject({ tenantId: TENANT, channelId: CHANNEL });
      const accepted = await allow(c);
      expect(accepted).toMatchObject({ step: 'exchanging_code', status: 'working', flow: 'facebook' });

      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'reconnected', status: 'done', flow: 'facebook', resumed: { conversations: 2, parked: 3 }, channel: { platform: 'messenger', accountId: PAGE, graphApi: 'facebook' } });
      expect(result.problem).toBeUndefined();
      expect(result.finishedAt).toEqual(expect.any(Number));
      expect(c.rec.names()).toEqual([
        'describeReconnectChannel',
        'exchangeOAuthCode',
        'extendOAuthGrant',
        'listGrantedAssets',
        'storeReconnectedToken',
        'discardOAuthGrant',
        'subscribeOnboardingChannels',
        'completeReconnect',
        'resumeParkedSends',
      ]);
      const grantId = c.rec.of('exchangeOAuthCode')[0]!.grantId;
      expect(c.rec.of('exchangeOAuthCode')[0]).toEqual({ tenantId: TENANT, grantId, flow: 'facebook', code: 'code-1' });
      expect(c.rec.of('storeReconnectedToken')).toEqual([{ tenantId: TENANT, channelId: CHANNEL, grantId, graphApi: 'facebook' }]);
      expect(c.rec.of('discardOAuthGrant')).toEqual([{ tenantId: TENANT, grantId }]);
      expect(c.rec.of('subscribeOnboardingChannels')).toEqual([{ tenantId: TENANT, plans: [{ target: { graphApi: 'facebook', accountId: PAGE }, tokenChannelId: CHANNEL, channelIds: [CHANNEL] }] }]);
      expect(c.rec.of('completeReconnect')).toEqual([{ tenantId: TENANT, channelId: CHANNEL, flow: 'facebook' }]);
      expect(c.rec.of('resumeParkedSends')).toEqual([{ tenantId: TENANT, channelId: CHANNEL }]);
      // The query answers after the run closed (the portal's "Reconnected" page).
      expect(await c.status()).toEqual(result);
    });
  });

  it('an Instagram account through its Page takes the Page token and the Page subscription', async () => {
    const channel: ReconnectChannel = { channelId: CHANNEL, platform: 'instagram', accountId: PAGE_IG, graphApi: 'facebook', status: 'reauth_required' };
    await scenario({ channel }, async (c) => {
      await allow(c);
      expect(await c.handle.result()).toMatchObject({ step: 'reconnected' });
      expect(c.rec.of('storeReconnectedToken')[0]).toMatchObject({ graphApi: 'facebook', pageId: PAGE });
      expect(c.rec.of('subscribeOnboardingChannels')[0]!.plans).toEqual([{ target: { graphApi: 'facebook', accountId: PAGE }, tokenChannelId: CHANNEL, channelIds: [CHANNEL] }]);
    });
  });

  it('Instagram Login: the account itself, subscribed through `me`', async () => {
    const channel: ReconnectChannel = { channelId: CHANNEL, platform: 'instagram', accountId: IG_LOGIN, graphApi: 'instagram', status: 'reauth_required' };
    const assets: GrantedAsset[] = [{ accountId: IG_LOGIN, platform: 'instagram', graphApi: 'instagram', name: 'atelier.lumen', connectedElsewhere: false }];
    await scenario({ channel, assets: [assets] }, async (c) => {
      await allow(c, 'instagram');
      expect(await c.handle.result()).toMatchObject({ step: 'reconnected', flow: 'instagram', channel: { graphApi: 'instagram' } });
      expect(c.rec.of('storeReconnectedToken')[0]).toEqual({ tenantId: TENANT, channelId: CHANNEL, grantId: expect.any(String), graphApi: 'instagram' });
      expect(c.rec.of('subscribeOnboardingChannels')[0]!.plans[0]!.target).toEqual({ graphApi: 'instagram', accountId: 'me' });
    });
  });

  it('another account authorized: the problem names what was given and what to choose; the grant goes; the saga waits and the next attempt reconnects', async () => {
    await scenario({ assets: [otherPageAssets(), pageAssets()], input: { label: 'Page “Bergsport Berger”' } }, async (c) => {
      await allow(c);
      const back = await c.problem();
      expect(back.problem).toEqual({
        code: 'wrong_account',
        message: 'You authorized a different account (Page “Clínica Sonrisa”). Reconnect with the account Page “Bergsport Berger”.',
      });
      expect(back.waitingUntil).toBeDefined();
      const grant = c.rec.of('exchangeOAuthCode')[0]!.grantId;
      expect(c.rec.names()).toEqual(['describeReconnectChannel', 'exchangeOAuthCode', 'extendOAuthGrant', 'listGrantedAssets', 'discardOAuthGrant']);
      expect(c.rec.of('discardOAuthGrant')).toEqual([{ tenantId: TENANT, grantId: grant }]);
      // Nothing stored, nothing put back: the channel stayed as it was.
      expect(c.rec.names()).not.toContain('storeReconnectedToken');
      expect(c.rec.names()).not.toContain('revertReconnectedChannel');

      await allow(c, 'facebook', 'code-2');
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'reconnected' });
      expect(result.problem).toBeUndefined();
      expect(c.rec.of('exchangeOAuthCode').map((x) => x.code)).toEqual(['code-1', 'code-2']);
    });
  });

  it('without a label the problem names the account by platform and id', async () => {
    const channel: ReconnectChannel = { channelId: CHANNEL, platform: 'instagram', accountId: IG_LOGIN, graphApi: 'instagram', status: 'reauth_required' };
    await scenario({ channel, assets: [pageAssets()] }, async (c) => {
      await allow(c);
      expect((await c.problem()).problem!.message).toBe(
        `You authorized a different account (Page “Bergsport Berger”, @bergsport.berger). Reconnect with the account Instagram account ${IG_LOGIN}.`,
      );
    });
  });

  it('a denied consent keeps waiting with the problem, and restarts the wait', async () => {
    await scenario({}, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      await c.sleep(5 * DAY_MS);
      const hash = await c.begin('facebook');
      const denied = await c.callback({ stateHash: hash, error: 'access_denied', errorReason: 'user_denied' });
      expect(denied).toMatchObject({ step: 'awaiting_oauth', status: 'waiting', problem: { code: 'oauth_denied' } });
      await c.sleep(5 * DAY_MS);
      expect(await c.status()).toMatchObject({ step: 'awaiting_oauth', problem: { code: 'oauth_denied' } });
      expect(c.rec.names()).toEqual(['describeReconnectChannel']);
      // Clicking Reconnect again clears the problem.
      await c.begin('facebook');
      expect((await c.status()).problem).toBeUndefined();
      const result = await c.handle.result();
      expect(result.step).toBe('abandoned');
      expect(result.finishedAt! - result.startedAt).toBeGreaterThanOrEqual(12 * DAY_MS);
    });
  });

  it('no callback within 7 days: abandoned, the channel untouched, recorded', async () => {
    await scenario({}, async (c) => {
      const waiting = await waitFor(async () => {
        const s = await c.status();
        return s.waitingUntil !== undefined ? s : undefined;
      }, 'the deadline');
      expect(waiting.waitingUntil! - waiting.startedAt).toBeGreaterThanOrEqual(7 * DAY_MS);
      await c.sleep(7 * DAY_MS - MINUTE_MS);
      expect(await c.status()).toMatchObject({ step: 'awaiting_oauth', status: 'waiting' });
      const result = await c.handle.result();
      expect(result).toMatchObject({ step: 'abandoned', status: 'failed', problem: { code: 'timed_out' } });
      expect(result.finishedAt! - result.startedAt).toBeGreaterThanOrEqual(7 * DAY_MS);
      expect(c.rec.names()).toEqual(['describeReconnectChannel', 'recordReconnectOutcome']);
      expect(c.rec.of('recordReconnectOutcome')).toEqual([{ tenantId: TENANT, channelId: CHANNEL, outcome: 'abandoned', step: 'awaiting_oauth', reason: 'oauth_timeout', problem: problem('timed_out') }]);
    });
  });

  it('the wait is configurable', async () => {
    await scenario({ input: { oauthTimeoutMs: DAY_MS } }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      const result = await c.handle.result();
      expect(result.step).toBe('abandoned');
      expect(result.finishedAt! - result.startedAt).toBeLessThan(2 * DAY_MS);
    });
  });

  it('a channel that is gone or switched off: failed with why, nothing asked of Meta', async () => {
    for (const channel of [null, messengerChannel('disabled')]) {
      await scenario({ channel }, async (c) => {
        const result = await c.handle.result();
        expect(result).toMatchObject({ step: 'failed', status: 'failed', problem: { code: 'channel_unavailable' } });
        expect(c.rec.names()).toEqual(['describeReconnectChannel', 'recordReconnectOutcome']);
        expect(c.rec.of('recordReconnectOutcome')[0]).toMatchObject({ outcome: 'failed', reason: channel ? 'channel_disabled' : 'channel_missing' });
      });
    }
  });
});

describe('an attempt that cannot finish is undone and the channel stays reauth_required', () => {
  const cases: Array<{ step: Name; failure: () => Error; undo: Name[]; problem: string }> = [
    { step: 'exchangeOAuthCode', failure: problemFailure('OAuthCodeRejected', 'code_rejected'), undo: ['discardOAuthGrant'], problem: 'code_rejected' },
    { step: 'listGrantedAssets', failure: problemFailure('NoPages', 'no_pages'), undo: ['discardOAuthGrant'], problem: 'no_pages' },
    { step: 'storeReconnectedToken', failure: problemFailure('AssetGone', 'asset_missing'), undo: ['revertReconnectedChannel', 'discardOAuthGrant'], problem: 'asset_missing' },
    // The grant was discarded once the token was stored: only the channel goes back.
    { step: 'subscribeOnboardingChannels', failure: problemFailure('SubscriptionFailed', 'subscription_failed'), undo: ['revertReconnectedChannel'], problem: 'subscription_failed' },
  ];

  it.each(cases)('$step fails → $undo, back to the Reconnect button with $problem', async ({ step, failure, undo, problem: code }) => {
    await scenario({ fail: { [step]: failure } }, async (c) => {
      await allow(c);
      const back = await c.problem();
      expect(back.problem).toMatchObject({ code });
      const failedAt = c.rec.calls.findIndex((x) => x.name === step);
      expect(c.rec.names().slice(failedAt + 1)).toEqual(undo);
      for (const r of c.rec.of('revertReconnectedChannel')) expect(r).toEqual({ tenantId: TENANT, channelId: CHANNEL, reason: 'reconnect not completed' });
      expect(c.rec.names()).not.toContain('completeReconnect');
      expect(c.rec.names()).not.toContain('resumeParkedSends');
    });
  });

  it('a channel that was active is not put out of service by a failed attempt', async () => {
    await scenario({ channel: messengerChannel('active'), fail: { storeReconnectedToken: problemFailure('AssetGone', 'asset_missing') } }, async (c) => {
      await allow(c);
      await c.problem();
      expect(c.rec.names()).not.toContain('revertReconnectedChannel');
      expect(c.rec.names().slice(-1)).toEqual(['discardOAuthGrant']);
    });
  });

  it('cancelled while waiting: nothing to undo, recorded, ends Canceled', async () => {
    await scenario({}, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      await c.handle.cancel();
      const err = await c.handle.result().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      expect(c.rec.names()).toEqual(['describeReconnectChannel', 'recordReconnectOutcome']);
      expect(c.rec.of('recordReconnectOutcome')[0]).toMatchObject({ outcome: 'cancelled', step: 'awaiting_oauth' });
      expect(await c.status()).toMatchObject({ step: 'cancelled', status: 'failed' });
    });
  });

  it('a transient failure is retried by the activity policy, not undone', async () => {
    const transient = () => ApplicationFailure.create({ message: 'HTTP 500 (fake)', type: 'GraphTransient', nonRetryable: false, details: [{ problem: problem('meta_unavailable') }] });
    await scenario({ failOnce: { storeReconnectedToken: transient, completeReconnect: transient } }, async (c) => {
      await allow(c);
      expect(await c.handle.result()).toMatchObject({ step: 'reconnected' });
      expect(c.rec.of('storeReconnectedToken')).toHaveLength(2);
      expect(c.rec.of('completeReconnect')).toHaveLength(2);
      expect(c.rec.names()).not.toContain('revertReconnectedChannel');
    });
  });
});

describe('the OAuth step it shares with the onboarding', () => {
  it('a wrong, expired, replayed or out-of-step state is refused by the validator without a history event (dev server)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // Held after the callback, so the run is still open (an Update to a closed run fails differently).
    await scenario({ server: 'dev', block: { completeReconnect: gate } }, async (c) => {
      await c.at('awaiting_oauth', 'waiting');
      await waitFor(async () => (await c.status()).channel !== undefined, 'the channel read');
      const refused = async (cb: OAuthCallback, why: RegExp) => {
        const before = await c.historyLength();
        const err = await c.callback(cb).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
        expect(String((err as WorkflowUpdateFailedError).cause?.message)).toMatch(why);
        expect(await c.historyLength()).toBe(before);
      };
      await refused({ stateHash: sha('nothing'), code: 'c' }, /unknown state/);

      const stale = await c.begin('facebook', 'stale-state', 1500);
      await c.sleep(2000);
      await refused({ stateHash: stale, code: 'c' }, /expired/);

      const denied = await c.begin('facebook', 'denied-state');
      expect(await c.callback({ stateHash: denied, error: 'access_denied' })).toMatchObject({ step: 'awaiting_oauth', problem: { code: 'oauth_denied' } });
      await refused({ stateHash: denied, code: 'c' }, /already used/);

      const older = await c.begin('facebook', 'older-state');
      const current = await c.begin('facebook', 'current-state');
      await refused({ stateHash: older, code: 'c' }, /unknown state/);
      await refused({ stateHash: sha('forged'), code: 'c' }, /unknown state/);

      await c.callback({ stateHash: current, code: 'good-code' });
      await c.at('resuming', 'working');
      await refused({ stateHash: current, code: 'good-code' }, /already used/);
      expect(c.rec.of('exchangeOAuthCode').map((i) => i.code)).toEqual(['good-code']);
      // Past the OAuth step a new attempt is refused too.
      await expect(c.begin('facebook', 'late')).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
      release();
      expect(await c.handle.result()).toMatchObject({ step: 'reconnected' });
    });
  });
});
