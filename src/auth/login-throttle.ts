import { createHash } from 'node:crypto';
import type { Pool } from 'pg';

/**
 * Login throttling in PostgreSQL, so every gateway process shares one count: failed logins per
 * account (slows guessing one password) and per client IP (slows spraying many accounts), in
 * fixed windows. A success clears the account's count, not the IP's. Keys are hashed: the table
 * holds no email or IP in clear.
 */

export interface ThrottleLimits {
  windowMs: number;
  perAccount: number;
  perIp: number;
}

export const DEFAULT_THROTTLE: ThrottleLimits = { windowMs: 15 * 60_000, perAccount: 5, perIp: 30 };

type Scope = 'account' | 'ip';
const keyHash = (scope: Scope, value: string): Buffer => createHash('sha256').update(`${scope}:${scope === 'account' ? value.trim().toLowerCase() : value}`, 'utf8').digest();

export type ThrottleVerdict = { allowed: true } | { allowed: false; scope: Scope; retryAfterSeconds: number };

/** Refused when the account or the IP has used up its failures in the current window. */
export async function checkLoginThrottle(pool: Pool, who: { email: string; ip: string }, limits: ThrottleLimits = DEFAULT_THROTTLE): Promise<ThrottleVerdict> {
  const { rows } = await pool.query<{ scope: Scope; failures: number; retry_ms: string }>(
    `SELECT scope, failures,
            ceil(extract(epoch FROM (window_start + make_interval(secs => $3::double precision / 1000) - now())) * 1000)::bigint AS retry_ms
       FROM login_throttle
      WHERE ((scope = 'account' AND key_hash = $1) OR (scope = 'ip' AND key_hash = $2))
        AND window_start > now() - make_interval(secs => $3::double precision / 1000)`,
    [keyHash('account', who.email), keyHash('ip', who.ip), limits.windowMs],
  );
  for (const r of rows) {
    const limit = r.scope === 'account' ? limits.perAccount : limits.perIp;
    if (r.failures >= limit) return { allowed: false, scope: r.scope, retryAfterSeconds: Math.max(1, Math.ceil(Number(r.retry_ms) / 1000)) };
  }
  return { allowed: true };
}

/** Counts a failure for the account and the IP (a new window starts when the last one ended). */
export async function recordLoginFailure(pool: Pool, who: { email: string; ip: string }, limits: ThrottleLimits = DEFAULT_THROTTLE): Promise<void> {
  await pool.query(
    `INSERT INTO login_throttle (scope, key_hash, window_start, failures)
     VALUES ('account', $1, now(), 1), ('ip', $2, now(), 1)
     ON CONFLICT (scope, key_hash) DO UPDATE SET
       window_start = CASE WHEN login_throttle.window_start <= now() - make_interval(secs => $3::double precision / 1000) THEN now() ELSE login_throttle.window_start END,
       failures = CASE WHEN login_throttle.window_start <= now() - make_interval(secs => $3::double precision / 1000) THEN 1 ELSE login_throttle.failures + 1 END`,
    [keyHash('account', who.email), keyHash('ip', who.ip), limits.windowMs],
  );
}

export async function recordLoginSuccess(pool: Pool, who: { email: string }): Promise<void> {
  await pool.query(`DELETE FROM login_throttle WHERE scope = 'account' AND key_hash = $1`, [keyHash('account', who.email)]);
}

/** Removes windows that ended (housekeeping). */
export async function purgeLoginThrottle(pool: Pool, limits: ThrottleLimits = DEFAULT_THROTTLE): Promise<number> {
  const { rowCount } = await pool.query('DELETE FROM login_throttle WHERE window_start <= now() - make_interval(secs => $1::double precision / 1000)', [limits.windowMs]);
  return rowCount ?? 0;
}
