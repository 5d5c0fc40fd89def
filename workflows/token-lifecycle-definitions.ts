import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { LoginFlow, OAuthCallback, OnboardingProblem } from './onboarding-definitions';

/**
 * The token lifecycle's contract (issue 8, docs/token-lifecycle.md), shared by the rotation
 * workflows, their activities, the notification workflow, the reconnect saga and the gateway.
 * Nothing here carries a token: activities load and seal tokens themselves.
 */

export const TOKEN_ROTATION_SCHEDULE_ID = 'token-rotation';
export const DATA_KEY_ROTATION_SCHEDULE_ID = 'data-key-rotation';

/** The budget name the rotation sweep's Graph calls draw from (graph_call_budgets.name). */
export const TOKEN_ROTATION_BUDGET = 'token-rotation';

export const tokenCheckWorkflowId = (channelId: string, sweepId: string): string => `token-check/${channelId.toLowerCase()}/${sweepId}`;
export const reconnectWorkflowId = (channelId: string): string => `reconnect/${channelId.toLowerCase()}`;
/** One notification workflow per episode: a second start for the same episode is the same run. */
export const notificationWorkflowId = (episodeId: string): string => `notify/${episodeId.toLowerCase()}`;

export interface TokenPolicy {
  /** Refresh an Instagram Login token once it expires within this many ms… */
  refreshWindowMs: number;
  /** …and only once it is at least this old (Instagram refuses younger tokens: 24 h). */
  minRefreshAgeMs: number;
  /** Tell the tenant when a token expires within this many ms (7 days). */
  expiryWarningMs: number;
  /** How often the sweep runs: a token expiring before two more runs raises the alert to critical. */
  sweepIntervalMs: number;
}

export interface TokenRotationInput {
  policy: TokenPolicy;
  /** Child workflows in flight at once. */
  concurrency: number;
  /** Channels fetched per page (and handled per continue-as-new run). */
  pageSize?: number;
  /** TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE: the budget every check's Graph calls draw from (TOKEN_ROTATION_BUDGET). */
  graphCallsPerMinute?: number;
  /** Set on the first run (workflow time, epoch ms) and carried through continue-as-new: one sweep, one `asOf`. */
  asOf?: number;
  sweepId?: string;
  after?: string;
  totals?: TokenRotationTotals;
}

export type TokenCheckOutcome =
  /** Instagram Login: refreshed, new token stored with its new expiry. */
  | 'refreshed'
  /** Nothing to do yet (an Instagram token outside its refresh window or younger than 24 h). */
  | 'not_due'
  /** Page token valid, scopes in place, app subscribed. */
  | 'valid'
  /** Page token valid, but the app's subscription was gone and has been re-created. */
  | 'resubscribed'
  /** The token is dead (190, failed refresh, debug_token invalid): channel is reauth_required. */
  | 'reauth_required'
  /** A transient failure that outlived its retries: tried again on the next run. */
  | 'transient_failure';

export interface TokenRotationTotals {
  channels: number;
  byOutcome: Partial<Record<TokenCheckOutcome, number>>;
  critical: number;
}

/** What the sweep knows of a channel without reading its token (token_sweep_candidates()). */
export interface TokenCandidate {
  channelId: string;
  tenantId: string;
  platform: 'messenger' | 'instagram';
  graphApi: 'facebook' | 'instagram';
  /** Epoch ms; null = unknown / never. */
  tokenExpiresAt: number | null;
  tokenIssuedAt: number;
}

export interface TokenCheckInput {
  candidate: TokenCandidate;
  policy: TokenPolicy;
  /** The sweep's time (epoch ms): decisions use it, not the database clock, so tests can move time. */
  asOf: number;
  sweepId: string;
  /** The sweep's Graph budget (calls per minute across every worker); default the configuration's default, 3000. */
  graphCallsPerMinute?: number;
}

export interface TokenCheckResult {
  channelId: string;
  outcome: TokenCheckOutcome;
  /** Epoch ms of the token's expiry after the check; null = never / unknown. */
  tokenExpiresAt: number | null;
  /** `critical`: expires before the next two sweeps; `warning`: within the warning window. */
  alert: 'none' | 'warning' | 'critical';
  /** Graph calls this check made (counted against the budget). */
  graphCalls: number;
}

export type NotificationKind = 'reauth_required' | 'token_expiring';

export interface NotificationInput {
  tenantId: string;
  episodeId: string;
  /**
   * Tests only: shorter webhook retries than the durable default (5 s, doubling to 1 h, for 3
   * days). Production starts (`temporalNotificationStarter`) never set it.
   */
  webhookRetry?: { initialIntervalMs: number; maximumIntervalMs: number; expireAfterMs: number };
}

/** Failure types of the notification activities that their retry policies treat as final. */
export const NOTIFICATION_EMAIL_REJECTED = 'NotificationEmailRejected';
export const NOTIFICATION_WEBHOOK_REJECTED = 'NotificationWebhookRejected';
export const NOTIFICATION_EPISODE_MISSING = 'NotificationEpisodeMissing';

/** Sent by the reconnect saga (signalWithStart) to every conversation with parked replies: deliver them now. */
export const channelReconnectedSignal = defineSignal<[{ channelId: string; reconnectedAt: number }]>('channelReconnected');

// ---- The reconnect saga (workflows/reconnect.ts, docs/token-lifecycle.md "Reconnect") ----------

/**
 * Where a reconnect is. It reuses the onboarding's OAuth step (the `beginOAuth` and `oauthCallback`
 * Updates of workflows/onboarding-definitions.ts, with the same validators), then stores the new
 * token for the one channel, checks its subscription and sends what was parked.
 */
export type ReconnectStep =
  | 'awaiting_oauth'
  | 'exchanging_code'
  | 'storing_token'
  | 'subscribing'
  | 'resuming'
  | 'reconnected'
  | 'compensating'
  | 'abandoned'
  | 'failed'
  | 'cancelled';

export interface ReconnectInput {
  tenantId: string;
  channelId: string;
  /** How long the saga waits for the OAuth callback before it ends `abandoned` (default 7 days). */
  oauthTimeoutMs?: number;
  /** How the client knows the account (`@name`, `Page “Name”`), for the problem when another one is authorized. */
  label?: string;
}

export interface ReconnectStatus {
  tenantId: string;
  channelId: string;
  step: ReconnectStep;
  /** `waiting`: for the client (the Reconnect button); `working`: an activity runs. */
  status: 'waiting' | 'working' | 'done' | 'failed';
  flow?: LoginFlow;
  /** The channel being reconnected (known once the saga has read it). */
  channel?: { platform: 'messenger' | 'instagram'; accountId: string; graphApi: 'facebook' | 'instagram' };
  /** Epoch ms by which the OAuth wait ends. */
  waitingUntil?: number;
  /** The last problem (denied consent, another account authorized, a failed step), in the client's words. */
  problem?: OnboardingProblem;
  /** Once reconnected: the conversations told to deliver their parked replies, and how many replies were parked. */
  resumed?: { conversations: number; parked: number };
  /** Epoch ms. */
  startedAt: number;
  finishedAt?: number;
}

export const reconnectStatusQuery = defineQuery<ReconnectStatus>('getReconnectStatus');
/** The onboarding's `oauthCallback` Update (same name, same validator), answering the reconnect's status. */
export const reconnectOAuthCallbackUpdate = defineUpdate<ReconnectStatus, [OAuthCallback]>('oauthCallback');

/** The channel was removed or switched off meanwhile: nothing to reconnect. */
export const CHANNEL_UNAVAILABLE_PROBLEM: OnboardingProblem = {
  code: 'channel_unavailable',
  message: 'This account was disconnected or switched off in the meantime, so there is nothing to reconnect. Contact support if you need it back.',
};

/** The client authorized accounts, but not the channel's own: what they gave, and which one to choose. */
export function wrongAccountProblem(granted: readonly string[], expected: string): OnboardingProblem {
  const gave = granted.length > 0 ? granted.join(', ') : 'no account';
  return { code: 'wrong_account', message: `You authorized a different account (${gave}). Reconnect with the account ${expected}.` };
}
