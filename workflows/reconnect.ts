import { ApplicationFailure, CancellationScope, isCancellation, log, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { SubscriptionPlan } from '../activities/onboarding';
import type { ReconnectChannel, ReconnectOutcome } from '../activities/reconnect';
import { TENANT_ID } from '../src/temporal/search-attributes';
import { workflowNow } from './clock';
import { exchangeAndList, failureType, installOAuthStep, META_RETRY, problemOf, statusOAuthHooks, STEP, UUID, type OAuthCode } from './oauth-step';
import type { GrantedAsset, OnboardingProblem } from './onboarding-definitions';
import { problem } from './onboarding-problems';
import {
  CHANNEL_UNAVAILABLE_PROBLEM,
  reconnectOAuthCallbackUpdate,
  reconnectStatusQuery,
  wrongAccountProblem,
  type ReconnectInput,
  type ReconnectStatus,
  type ReconnectStep,
} from './token-lifecycle-definitions';

/*
 * The reconnect saga of one channel (issue 8, docs/token-lifecycle.md "Reconnect"): the portal's
 * Reconnect button starts it for a `reauth_required` channel. It reuses the onboarding's OAuth
 * step (workflows/oauth-step.ts: the same Updates and validators, the same exchange and listing
 * activities), checks that what the client authorized includes the channel's own account, stores
 * the new token for that channel (which makes it `active`), makes sure the webhook subscription is
 * there, closes the channel's notification episodes and sends what was parked meanwhile.
 *
 * Compensations (pushed before their step, run last-in first-out in a non-cancellable scope):
 *   put the channel back to reauth_required (store) → delete the sealed user token (exchange)
 * An attempt that cannot finish (denied consent, another account, Meta refusing) is undone and the
 * saga waits for the client again with the problem shown; the channel stays `reauth_required`. No
 * callback within the wait: `abandoned`, channel unchanged. Once the token is stored and the
 * subscription verified nothing is undone: the rest (episodes, parked replies) is retried until
 * it succeeds.
 *
 * Tokens never enter this workflow: only the OAuth code (in the callback Update, encrypted by the
 * payload codec) and row ids.
 */

const DAY_MS = 86_400_000;
/** The starter passes ONBOARDING_OAUTH_TIMEOUT_MS; this is its default. */
export const DEFAULT_RECONNECT_OAUTH_TIMEOUT_MS = 7 * DAY_MS;

const storeActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '2 minutes', retry: { ...META_RETRY, maximumAttempts: 8 } });
// A subscription Meta accepted but does not list yet is retried too (SubscriptionNotVerified).
const subscribeActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '2 minutes', retry: { ...META_RETRY, maximumAttempts: 10 } });
const localActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '30 seconds', retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10 } });
// Once the channel works again its parked replies must go out: no attempt limit, an outage is waited out.
const durableActs = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes' } });
// Undoing must outlast an outage: many attempts, long backoff; past them the next compensation still runs.
const undoActs = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 25 } });

class Abandon extends Error {
  constructor() {
    super('oauth_timeout');
    this.name = 'Abandon';
  }
}

interface Compensation {
  name: string;
  run: () => Promise<unknown>;
}

/** How the account appears in a problem: `@name` for Instagram, `Page “Name”` for a Page. */
function assetLabels(assets: readonly GrantedAsset[]): string[] {
  const labels: string[] = [];
  for (const a of assets) {
    labels.push(a.platform === 'instagram' ? `@${a.name.replace(/^@/, '')}` : `Page “${a.name}”`);
    if (a.linkedInstagram) labels.push(`@${(a.linkedInstagram.username ?? a.linkedInstagram.accountId).replace(/^@/, '')}`);
  }
  return [...new Set(labels)];
}

/** The granted asset that is the channel's account (same platform and id), and how its token is had. */
function findChannelAsset(channel: ReconnectChannel, assets: readonly GrantedAsset[]): { graphApi: 'facebook' | 'instagram'; pageId?: string } | undefined {
  for (const a of assets) {
    if (a.platform === channel.platform && a.accountId === channel.accountId) return { graphApi: a.graphApi };
  }
  if (channel.platform === 'instagram') {
    const page = assets.find((a) => a.linkedInstagram?.accountId === channel.accountId);
    if (page) return { graphApi: 'facebook', pageId: page.accountId };
  }
  return undefined;
}

export async function reconnectWorkflow(input: ReconnectInput): Promise<ReconnectStatus> {
  if (typeof input?.tenantId !== 'string' || !UUID.test(input.tenantId)) throw ApplicationFailure.nonRetryable('reconnectWorkflow needs a tenant id (a UUID)', 'InvalidReconnectInput');
  if (typeof input.channelId !== 'string' || !UUID.test(input.channelId)) throw ApplicationFailure.nonRetryable('reconnectWorkflow needs a channel id (a UUID)', 'InvalidReconnectInput');
  const tenantId = input.tenantId.toLowerCase();
  const channelId = input.channelId.toLowerCase();
  const oauthTimeoutMs = input.oauthTimeoutMs ?? DEFAULT_RECONNECT_OAUTH_TIMEOUT_MS;
  const label = typeof input.label === 'string' && input.label.trim() ? input.label.trim().slice(0, 200) : undefined;

  // Waiting for the client from the first moment: the portal's beginOAuth follows the start at once.
  const status: ReconnectStatus = { tenantId, channelId, step: 'awaiting_oauth', status: 'waiting', startedAt: workflowInfo().startTime.getTime() };
  upsertSearchAttributes([{ key: TENANT_ID, value: tenantId }]);

  const snapshot = (): ReconnectStatus => JSON.parse(JSON.stringify(status)) as ReconnectStatus;
  function setStep(step: ReconnectStep, state: ReconnectStatus['status'], waitingUntil?: number): void {
    status.step = step;
    status.status = state;
    if (waitingUntil !== undefined) status.waitingUntil = waitingUntil;
    else delete status.waitingUntil;
  }

  setHandler(reconnectStatusQuery, snapshot);
  const oauth = installOAuthStep(reconnectOAuthCallbackUpdate, statusOAuthHooks(status, snapshot, () => setStep('exchanging_code', 'working')));

  const stack: Compensation[] = [];
  const push = (c: Compensation): Compensation => {
    stack.push(c);
    return c;
  };
  async function compensate(): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      while (stack.length > 0) {
        const c = stack.pop()!;
        try {
          await c.run();
        } catch (err) {
          log.error('reconnect compensation failed', { tenantId, channelId, compensation: c.name, error: (err as Error).message });
        }
      }
    });
  }

  async function recordOutcome(outcome: ReconnectOutcome, step: ReconnectStep, reason: string): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      try {
        await undoActs.recordReconnectOutcome({ tenantId, channelId, outcome, step, reason, ...(status.problem && { problem: status.problem }) });
      } catch (err) {
        log.error('reconnect outcome not recorded', { tenantId, channelId, outcome, error: (err as Error).message });
      }
    });
  }

  async function giveUpAttempt(p: OnboardingProblem): Promise<void> {
    setStep('compensating', 'working');
    await compensate();
    status.problem = p;
  }

  /** One OAuth callback: true once the channel has its new token and a verified subscription. */
  async function attempt(channel: ReconnectChannel, cb: OAuthCode): Promise<boolean> {
    try {
      let grantComp: Compensation | undefined;
      const { grantId, assets } = await exchangeAndList({
        tenantId,
        callback: cb,
        register: (id) => {
          grantComp = push({ name: 'discardOAuthGrant', run: () => undoActs.discardOAuthGrant({ tenantId, grantId: id }) });
        },
      });
      const found = findChannelAsset(channel, assets);
      if (!found) {
        const expected = label ?? (channel.platform === 'instagram' ? `Instagram account ${channel.accountId}` : `Facebook Page ${channel.accountId}`);
        log.warn('reconnect: another account was authorized', { tenantId, channelId, granted: assets.length });
        await giveUpAttempt(wrongAccountProblem(assetLabels(assets), expected));
        return false;
      }

      setStep('storing_token', 'working');
      // A channel that was working before (a voluntary reconnect) is not put out of service by a failed attempt.
      if (channel.status === 'reauth_required') {
        push({ name: 'revertReconnectedChannel', run: () => undoActs.revertReconnectedChannel({ tenantId, channelId, reason: 'reconnect not completed' }) });
      }
      await storeActs.storeReconnectedToken({ tenantId, channelId, grantId, graphApi: found.graphApi, ...(found.pageId !== undefined && { pageId: found.pageId }) });
      // The user token has done its job.
      try {
        await undoActs.discardOAuthGrant({ tenantId, grantId });
        stack.splice(stack.indexOf(grantComp!), 1);
      } catch (err) {
        if (isCancellation(err)) throw err;
        log.warn('reconnect grant not discarded yet; the compensation or the sweep will', { tenantId, channelId });
      }

      setStep('subscribing', 'working');
      const plan: SubscriptionPlan = {
        target: found.graphApi === 'instagram' ? { graphApi: 'instagram', accountId: 'me' } : { graphApi: 'facebook', accountId: found.pageId ?? channel.accountId },
        tokenChannelId: channelId,
        channelIds: [channelId],
      };
      await subscribeActs.subscribeOnboardingChannels({ tenantId, plans: [plan] });
      return true;
    } catch (err) {
      const p = problemOf(err);
      if (!p) throw err;
      log.warn('reconnect attempt failed', { tenantId, channelId, step: status.step, type: failureType(err), problem: p.code });
      await giveUpAttempt(p);
      return false;
    }
  }

  try {
    const channel = await localActs.describeReconnectChannel({ tenantId, channelId });
    if (!channel || channel.status === 'disabled') {
      status.problem = CHANNEL_UNAVAILABLE_PROBLEM;
      setStep('failed', 'failed');
      status.finishedAt = workflowNow();
      await recordOutcome('failed', 'awaiting_oauth', channel ? 'channel_disabled' : 'channel_missing');
      return snapshot();
    }
    status.channel = { platform: channel.platform, accountId: channel.accountId, graphApi: channel.graphApi };

    let flow: OAuthCode['flow'];
    for (;;) {
      const cb = await oauth.awaitCallback(oauthTimeoutMs, (deadline) => setStep('awaiting_oauth', 'waiting', deadline));
      if (!cb) throw new Abandon();
      if (await attempt(channel, cb)) {
        flow = cb.flow;
        break;
      }
    }

    // The channel works again: nothing is undone from here on.
    stack.length = 0;
    delete status.problem;
    status.channel.graphApi = flow === 'instagram' ? 'instagram' : 'facebook';
    setStep('resuming', 'working');
    await durableActs.completeReconnect({ tenantId, channelId, flow });
    status.resumed = await durableActs.resumeParkedSends({ tenantId, channelId });
    setStep('reconnected', 'done');
    status.finishedAt = workflowNow();
    return snapshot();
  } catch (err) {
    if (err instanceof Abandon) {
      const waitedAt = status.step;
      setStep('compensating', 'working');
      await compensate();
      status.problem = problem('timed_out');
      setStep('abandoned', 'failed');
      status.finishedAt = workflowNow();
      log.warn('reconnect abandoned', { tenantId, channelId, waitedAt });
      await recordOutcome('abandoned', waitedAt, 'oauth_timeout');
      return snapshot();
    }
    if (isCancellation(err)) {
      const cancelledAt = status.step;
      setStep('compensating', 'working');
      await compensate();
      setStep('cancelled', 'failed');
      status.finishedAt = workflowNow();
      await recordOutcome('cancelled', cancelledAt, 'cancelled');
      throw err;
    }
    throw err;
  }
}
