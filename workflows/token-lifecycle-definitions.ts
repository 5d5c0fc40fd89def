import { defineSignal } from '@temporalio/workflow';

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
}

/** Sent by the reconnect saga (signalWithStart) to every conversation with parked replies: deliver them now. */
export const channelReconnectedSignal = defineSignal<[{ channelId: string; reconnectedAt: number }]>('channelReconnected');
