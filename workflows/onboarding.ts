import { ApplicationFailure, CancellationScope, condition, isCancellation, log, proxyActivities, setHandler, upsertSearchAttributes, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { OnboardingOutcome, PlannedChannel, StoredChannel, SubscriptionPlan } from '../activities/onboarding';
import { ONBOARDING_STEP, TENANT_ID } from '../src/temporal/search-attributes';
import { workflowNow } from './clock';
import {
  configureAssistantUpdate,
  oauthCallbackUpdate,
  onboardingStatusQuery,
  PORTAL_STEP,
  selectAssetsUpdate,
  type AssetSelection,
  type AssistantConfiguration,
  type LoginFlow,
  type OnboardingInput,
  type OnboardingProblem,
  type OnboardingStatus,
  type OnboardingStep,
} from './onboarding-definitions';
import { problem } from './onboarding-problems';
import { exchangeAndList, failureType, installOAuthStep, META_RETRY, problemOf, statusOAuthHooks, STEP, UUID, type OAuthCode } from './oauth-step';

/*
 * The onboarding saga of one tenant (issue 7, docs/onboarding.md): wait for the client's OAuth
 * callback, exchange the code, list the granted accounts (and let the client pick), store the
 * tokens, subscribe the webhooks, wait for the assistant's configuration, go live.
 *
 * Every step that changes something outside the workflow pushes its compensation BEFORE it runs
 * (ids the compensation needs — the grant row, the channels — are chosen here with the
 * deterministic uuid4(), so a step that crashed half-way is still undone). Compensations run
 * last-in first-out, in a non-cancellable scope:
 *
 *   deactivate channels (go-live) → unsubscribe (subscribe) → delete channels and their tokens
 *   (store) → delete the sealed user token (exchange) [→ crypto-shred, when abandoned]
 *
 * A problem the client can fix (denied consent, a rejected code, no Page, an account of another
 * tenant, Meta failing past the retries) undoes the attempt and returns to awaiting_oauth with the
 * problem shown in the portal. A failure once the accounts are connected and subscribed
 * (configuration, go-live) undoes everything and ends `failed`. No answer within the waits ends
 * `abandoned`; cancelling the workflow ends `cancelled`. Nothing terminates it.
 *
 * Tokens never enter this workflow: only the OAuth code (in the callback Update, encrypted by the
 * payload codec like all history) and row ids.
 */

const DAY_MS = 86_400_000;
/** ONBOARDING_OAUTH_TIMEOUT_MS's default; the starter passes the configured value. */
export const DEFAULT_OAUTH_TIMEOUT_MS = 7 * DAY_MS;
export const DEFAULT_STEP_TIMEOUT_MS = 7 * DAY_MS;

// Step activity options (cancellation, Meta's retries) and the OAuth step's own activities: workflows/oauth-step.ts.
const storeActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '2 minutes', retry: { ...META_RETRY, maximumAttempts: 8 } });
// A subscription Meta accepted but does not list yet is retried too (SubscriptionNotVerified).
const subscribeActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '2 minutes', retry: { ...META_RETRY, maximumAttempts: 10 } });
// Our own database only.
const localActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '30 seconds', retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10 } });
// Undoing must outlast an outage: many attempts, long backoff; past them the next compensation still runs.
const undoActs = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 25 } });

/** The saga stops waiting for the client: compensate, crypto-shred, `abandoned`. */
class Abandon extends Error {
  constructor(readonly reason: 'oauth_timeout' | 'selection_timeout' | 'configuration_timeout') {
    super(reason);
    this.name = 'Abandon';
  }
}

interface Compensation {
  name: string;
  run: () => Promise<unknown>;
}

const LANGUAGES = new Set(['en', 'de', 'es', 'fr', 'pt']);

export async function onboardingWorkflow(input: OnboardingInput): Promise<OnboardingStatus> {
  if (typeof input?.tenantId !== 'string' || !UUID.test(input.tenantId)) throw ApplicationFailure.nonRetryable('onboardingWorkflow needs a tenant id (a UUID)', 'InvalidOnboardingInput');
  const tenantId = input.tenantId.toLowerCase();
  const oauthTimeoutMs = input.oauthTimeoutMs ?? DEFAULT_OAUTH_TIMEOUT_MS;
  const stepTimeoutMs = input.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;

  const status: OnboardingStatus = {
    tenantId,
    step: 'awaiting_oauth',
    portalStep: PORTAL_STEP.awaiting_oauth,
    status: 'waiting',
    channels: [],
    startedAt: workflowInfo().startTime.getTime(),
  };
  upsertSearchAttributes([
    { key: TENANT_ID, value: tenantId },
    { key: ONBOARDING_STEP, value: status.step },
  ]);

  const snapshot = (): OnboardingStatus => JSON.parse(JSON.stringify(status)) as OnboardingStatus;

  function setStep(step: OnboardingStep, state: OnboardingStatus['status'], waitingUntil?: number): void {
    const changed = status.step !== step;
    status.step = step;
    status.portalStep = PORTAL_STEP[step];
    status.status = state;
    if (waitingUntil !== undefined) status.waitingUntil = waitingUntil;
    else delete status.waitingUntil;
    if (changed) upsertSearchAttributes([{ key: ONBOARDING_STEP, value: step }]);
  }

  // ---- Updates: the portal's side ------------------------------------------------------------

  let selection: string[] | undefined;
  /** Accounts the client may pick (not another tenant's), with what storing each needs. */
  let selectable = new Map<string, Omit<PlannedChannel, 'channelId'>>();
  let configuration: AssistantConfiguration | undefined;

  setHandler(onboardingStatusQuery, snapshot);

  // beginOAuth and oauthCallback (validators included): the step the reconnect saga shares.
  const oauth = installOAuthStep(oauthCallbackUpdate, statusOAuthHooks(status, snapshot, () => setStep('exchanging_code', 'working')));

  setHandler(
    selectAssetsUpdate,
    (chosen) => {
      selection = [...chosen.accountIds];
      setStep('storing_tokens', 'working');
      return snapshot();
    },
    {
      validator: (chosen: AssetSelection) => {
        if (status.step !== 'selecting_assets' || status.status !== 'waiting') throw new Error(`not waiting for an asset choice (step ${status.step})`);
        const ids = chosen?.accountIds;
        if (!Array.isArray(ids) || ids.length === 0) throw new Error('choose at least one account');
        if (new Set(ids).size !== ids.length) throw new Error('an account is listed twice');
        const bad = ids.filter((id) => typeof id !== 'string' || !selectable.has(id));
        if (bad.length > 0) throw new Error(`not selectable (not granted, or connected to another business): ${bad.join(', ')}`);
      },
    },
  );

  setHandler(
    configureAssistantUpdate,
    (config) => {
      configuration = { persona: config.persona.trim(), language: config.language, ...(config.businessName !== undefined && { businessName: config.businessName.trim() }), ...(config.catalogRows !== undefined && { catalogRows: config.catalogRows }) };
      delete status.problem;
      setStep('configuring_assistant', 'working');
      return snapshot();
    },
    {
      validator: (config: AssistantConfiguration) => {
        if (status.step !== 'configuring_assistant' || status.status !== 'waiting') throw new Error(`not waiting for the assistant's configuration (step ${status.step})`);
        if (typeof config?.persona !== 'string' || config.persona.trim().length === 0 || config.persona.length > 2000) throw new Error('persona must be 1–2000 characters');
        if (!LANGUAGES.has(config.language)) throw new Error('language must be one of en, de, es, fr, pt');
        if (config.businessName !== undefined && (typeof config.businessName !== 'string' || config.businessName.trim().length === 0 || config.businessName.length > 200)) {
          throw new Error('businessName must be 1–200 characters');
        }
        if (config.catalogRows !== undefined && (!Number.isSafeInteger(config.catalogRows) || config.catalogRows < 0)) throw new Error('catalogRows must be a non-negative integer');
      },
    },
  );

  // ---- Compensation stack ---------------------------------------------------------------------

  const stack: Compensation[] = [];
  const push = (c: Compensation): Compensation => {
    stack.push(c);
    return c;
  };

  /** Runs and empties the stack, last in first out, even while the workflow is being cancelled. */
  async function compensate(): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      while (stack.length > 0) {
        const c = stack.pop()!;
        try {
          await c.run();
        } catch (err) {
          // Past its retries: the next compensation still runs; an operator sees this in the log and history.
          log.error('onboarding compensation failed', { tenantId, compensation: c.name, error: (err as Error).message });
        }
      }
    });
  }

  /** `step`: where the saga stopped (the step it waited in or failed at). */
  async function recordOutcome(outcome: OnboardingOutcome, step: OnboardingStep, reason: string): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      try {
        await undoActs.recordOnboardingOutcome({ tenantId, outcome, step, reason, ...(status.problem && { problem: status.problem }) });
      } catch (err) {
        log.error('onboarding outcome not recorded', { tenantId, outcome, error: (err as Error).message });
      }
    });
  }

  // ---- Steps ------------------------------------------------------------------------------------

  /** Step 1: the callback of the current attempt. Denied consent keeps waiting (with the problem shown). */
  async function awaitCallback(): Promise<OAuthCode> {
    const cb = await oauth.awaitCallback(oauthTimeoutMs, (deadline) => setStep('awaiting_oauth', 'waiting', deadline));
    if (!cb) throw new Abandon('oauth_timeout');
    return cb;
  }

  interface Connected {
    flow: LoginFlow;
    channels: StoredChannel[];
  }

  /**
   * Steps 2–5 for one OAuth callback. Undefined when the attempt was undone and the client must
   * connect again (the problem is on the status).
   */
  async function connect(cb: OAuthCode): Promise<Connected | undefined> {
    try {
      // Step 2: code → user token, sealed in a grant row the workflow names. Step 3: what was
      // granted; the client picks when there is a choice.
      let grantComp: Compensation | undefined;
      const { grantId, assets } = await exchangeAndList({
        tenantId,
        callback: cb,
        register: (id) => {
          grantComp = push({ name: 'discardOAuthGrant', run: () => undoActs.discardOAuthGrant({ tenantId, grantId: id }) });
        },
        listing: () => setStep('selecting_assets', 'working'),
      });
      status.assets = assets;
      selectable = new Map();
      for (const a of assets) {
        if (!a.connectedElsewhere) selectable.set(a.accountId, { accountId: a.accountId, platform: a.platform, graphApi: a.graphApi });
        const ig = a.linkedInstagram;
        if (ig && !ig.connectedElsewhere) selectable.set(ig.accountId, { accountId: ig.accountId, platform: 'instagram', graphApi: 'facebook', pageId: a.accountId });
      }
      if (selectable.size === 0) {
        const taken = assets.some((a) => a.connectedElsewhere || a.linkedInstagram?.connectedElsewhere);
        await giveUpAttempt(problem(taken ? 'connected_elsewhere' : 'no_pages'));
        return undefined;
      }
      selection = selectable.size === 1 ? [...selectable.keys()] : undefined;
      if (!selection) {
        setStep('selecting_assets', 'waiting', workflowNow() + stepTimeoutMs);
        if (!(await condition(() => selection !== undefined, stepTimeoutMs))) throw new Abandon('selection_timeout');
      }
      const chosen = selection!;

      // Step 4: tokens stored sealed, channels not live yet.
      setStep('storing_tokens', 'working');
      const planned: PlannedChannel[] = chosen.map((accountId) => ({ channelId: uuid4(), ...selectable.get(accountId)! }));
      push({ name: 'removeOnboardingChannels', run: () => undoActs.removeOnboardingChannels({ tenantId, channelIds: planned.map((p) => p.channelId), reason: 'onboarding compensation' }) });
      const { channels } = await storeActs.storeOnboardingChannels({ tenantId, grantId, channels: planned });
      status.channels = channels.map((c) => ({ channelId: c.channelId, platform: c.platform, accountId: c.accountId, live: false }));
      // The user token has done its job: it goes now rather than waiting (sealed) for the rest of the saga.
      try {
        await undoActs.discardOAuthGrant({ tenantId, grantId });
        stack.splice(stack.indexOf(grantComp!), 1);
      } catch (err) {
        if (isCancellation(err)) throw err;
        log.warn('onboarding grant not discarded yet; the compensation or the sweep will', { tenantId });
      }

      // Step 5: webhooks on, read back.
      setStep('subscribing', 'working');
      const plans = subscriptionPlans(channels, planned);
      const ours = plans.filter((p) => p.channelIds.every((id) => channels.find((c) => c.channelId === id)?.created));
      if (ours.length > 0) push({ name: 'unsubscribeOnboardingChannels', run: () => undoActs.unsubscribeOnboardingChannels({ tenantId, plans: ours }) });
      await subscribeActs.subscribeOnboardingChannels({ tenantId, plans });
      return { flow: cb.flow, channels };
    } catch (err) {
      const p = problemOf(err);
      if (!p) throw err;
      log.warn('onboarding attempt failed', { tenantId, step: status.step, type: failureType(err), problem: p.code });
      await giveUpAttempt(p);
      return undefined;
    }
  }

  /** Undoes the current attempt and shows why; the caller returns to awaiting_oauth. */
  async function giveUpAttempt(p: OnboardingProblem): Promise<void> {
    setStep('compensating', 'working');
    await compensate();
    status.problem = p;
    delete status.assets;
    status.channels = [];
    selection = undefined;
    selectable = new Map();
  }

  /** Steps 6 and 7. A configuration the settings refuse waits for a corrected one. */
  async function configureAndGoLive(connected: Connected): Promise<void> {
    let applied: AssistantConfiguration;
    for (;;) {
      configuration = undefined;
      setStep('configuring_assistant', 'waiting', workflowNow() + stepTimeoutMs);
      if (!(await condition(() => configuration !== undefined, stepTimeoutMs))) throw new Abandon('configuration_timeout');
      applied = configuration!;
      try {
        await localActs.configureOnboardingAssistant({ tenantId, configuration: applied });
        break;
      } catch (err) {
        if (failureType(err) !== 'InvalidConfiguration') throw err;
        status.problem = problemOf(err)!;
      }
    }
    setStep('going_live', 'working');
    const created = connected.channels.filter((c) => c.created).map((c) => c.channelId);
    push({ name: 'deactivateOnboardingChannels', run: () => undoActs.deactivateOnboardingChannels({ tenantId, channelIds: created }) });
    await localActs.goLiveOnboarding({
      tenantId,
      channelIds: connected.channels.map((c) => c.channelId),
      flow: connected.flow,
      ...(applied.catalogRows !== undefined && { catalogRows: applied.catalogRows }),
    });
    status.channels = status.channels.map((c) => ({ ...c, live: true }));
  }

  // ---- The saga ---------------------------------------------------------------------------------

  try {
    let connected: Connected | undefined;
    while (!connected) connected = await connect(await awaitCallback());
    try {
      await configureAndGoLive(connected);
    } catch (err) {
      // Only our own database is involved here.
      const p = problemOf(err, 'internal');
      if (!p) throw err;
      log.error('onboarding failed after connecting', { tenantId, step: status.step, type: failureType(err), problem: p.code });
      status.problem = p;
      const failedAt = status.step;
      setStep('compensating', 'working');
      await compensate();
      setStep('failed', 'failed');
      status.channels = [];
      status.finishedAt = workflowNow();
      await recordOutcome('failed', failedAt, failureType(err) ?? 'activity failure');
      return snapshot();
    }
    stack.length = 0; // live: nothing is undone any more
    delete status.problem;
    setStep('live', 'done');
    status.finishedAt = workflowNow();
    return snapshot();
  } catch (err) {
    if (err instanceof Abandon) {
      const waitedAt = status.step;
      setStep('compensating', 'working');
      await compensate();
      await CancellationScope.nonCancellable(async () => {
        try {
          await undoActs.cryptoShredAbandonedTenant({ tenantId, reason: err.reason });
        } catch (shredErr) {
          log.error('abandoned onboarding: crypto-shred failed', { tenantId, error: (shredErr as Error).message });
        }
      });
      status.problem = problem('timed_out');
      status.channels = [];
      delete status.assets;
      setStep('abandoned', 'failed');
      status.finishedAt = workflowNow();
      log.warn('onboarding abandoned', { tenantId, waitedAt, reason: err.reason });
      await recordOutcome('abandoned', waitedAt, err.reason);
      return snapshot();
    }
    if (isCancellation(err)) {
      const cancelledAt = status.step;
      setStep('compensating', 'working');
      await compensate();
      status.channels = [];
      delete status.assets;
      setStep('cancelled', 'failed');
      status.finishedAt = workflowNow();
      await recordOutcome('cancelled', cancelledAt, 'cancelled');
      throw err;
    }
    throw err;
  }
}

/**
 * One subscription per account to subscribe: a Page (its Messenger channel and the Instagram
 * account linked to it share it), or an Instagram-Login account (`me`, with its own token).
 */
function subscriptionPlans(channels: StoredChannel[], planned: PlannedChannel[]): SubscriptionPlan[] {
  const plans = new Map<string, SubscriptionPlan>();
  for (const c of channels) {
    const pageId = planned.find((p) => p.accountId === c.accountId)?.pageId;
    const target = c.graphApi === 'instagram' ? { graphApi: 'instagram' as const, accountId: 'me' } : { graphApi: 'facebook' as const, accountId: c.platform === 'instagram' && pageId ? pageId : c.accountId };
    const key = target.graphApi === 'instagram' ? `ig:${c.channelId}` : `fb:${target.accountId}`;
    const plan = plans.get(key) ?? { target, tokenChannelId: c.channelId, channelIds: [] };
    plan.channelIds.push(c.channelId);
    plans.set(key, plan);
  }
  return [...plans.values()];
}
