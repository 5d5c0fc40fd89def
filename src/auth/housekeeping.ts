import type { Pool } from 'pg';
import type { Logger } from '../logger';
import { purgeLoginThrottle, type ThrottleLimits } from './login-throttle';
import { purgeEndedSessions } from './sessions';

/**
 * Removes what nothing reads any more: sessions that ended (revoked or expired) over 30 days ago
 * and login-throttle windows that are over. Every gateway runs it; the deletes are idempotent, so
 * several gateways doing it at once only repeat work.
 */
export async function runCredentialHousekeeping(pool: Pool, limits: ThrottleLimits): Promise<{ sessions: number; throttleRows: number }> {
  const sessions = await purgeEndedSessions(pool);
  const throttleRows = await purgeLoginThrottle(pool, limits);
  return { sessions, throttleRows };
}

/** Runs the housekeeping now and then every `intervalMs` (default hourly) until stopped. */
export function startCredentialHousekeeping(pool: Pool, limits: ThrottleLimits, logger: Logger, intervalMs = 3_600_000): () => void {
  const run = () =>
    runCredentialHousekeeping(pool, limits).then(
      (r) => (r.sessions > 0 || r.throttleRows > 0) && logger.info(r, 'ended sessions and stale login throttles purged'),
      (err: unknown) => logger.warn({ err: { name: (err as Error).name, message: (err as Error).message } }, 'credential housekeeping failed; retried at the next interval'),
    );
  void run();
  const timer = setInterval(() => void run(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
