import type { TokenCandidate, TokenPolicy } from '../../workflows/token-lifecycle-definitions';

/**
 * What the token sweep does with a channel, decided alike by the sweep workflow (which starts no
 * child for a channel with nothing to do) and by the check activity (which decides again on the
 * row it has just read). Workflow code imports this: keep it free of imports (types only) and of
 * clocks: the caller passes `asOf`, the sweep's time.
 */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/**
 * `validate`: a Page token (no expiry, but it dies on a password change or a lost role):
 * `debug_token` and `subscribed_apps`, every sweep.
 * `refresh`: an Instagram-Login token at least `minRefreshAgeMs` old that expires within
 * `refreshWindowMs` (or whose expiry is unknown, or that has expired: Instagram then refuses and
 * the channel needs reauthorization).
 * `watch`: an Instagram-Login token too young to refresh that expires soon enough for the tenant
 * to be told (no Graph call).
 * `skip`: nothing to do this sweep.
 */
export type TokenCheckPlan = 'validate' | 'refresh' | 'watch' | 'skip';

export type TokenAlert = 'none' | 'warning' | 'critical';

type Candidate = Pick<TokenCandidate, 'graphApi' | 'tokenExpiresAt' | 'tokenIssuedAt'>;

export function tokenCheckPlan(candidate: Candidate, policy: TokenPolicy, asOf: number): TokenCheckPlan {
  if (candidate.graphApi === 'facebook') return 'validate';
  const expiresAt = candidate.tokenExpiresAt;
  const oldEnough = asOf - candidate.tokenIssuedAt >= policy.minRefreshAgeMs;
  if (oldEnough && (expiresAt === null || expiresAt - asOf <= policy.refreshWindowMs)) return 'refresh';
  // An expired token can be neither refreshed nor used: try, so the failure makes it reauth_required.
  if (expiresAt !== null && expiresAt <= asOf) return 'refresh';
  if (tokenAlert(expiresAt, policy, asOf) !== 'none') return 'watch';
  return 'skip';
}

/** Whether the sweep runs a check for the channel at all. */
export function tokenCheckDue(candidate: Candidate, policy: TokenPolicy, asOf: number): boolean {
  return tokenCheckPlan(candidate, policy, asOf) !== 'skip';
}

/**
 * `critical`: the token expires before the sweep after next (two more runs could both fail);
 * `warning`: within `expiryWarningMs`; `none`: later, never, or unknown.
 */
export function tokenAlert(expiresAt: number | null, policy: TokenPolicy, asOf: number): TokenAlert {
  if (expiresAt === null) return 'none';
  if (expiresAt < asOf + 2 * policy.sweepIntervalMs) return 'critical';
  if (expiresAt <= asOf + policy.expiryWarningMs) return 'warning';
  return 'none';
}

/** The policy from the configuration's days (TOKEN_REFRESH_WINDOW_DAYS, TOKEN_EXPIRY_WARNING_DAYS) and the sweep's interval. */
export function tokenPolicy(c: { refreshWindowDays: number; expiryWarningDays: number; sweepIntervalMs?: number }): TokenPolicy {
  return {
    refreshWindowMs: c.refreshWindowDays * DAY_MS,
    minRefreshAgeMs: 24 * HOUR_MS,
    expiryWarningMs: c.expiryWarningDays * DAY_MS,
    sweepIntervalMs: c.sweepIntervalMs ?? DAY_MS,
  };
}
