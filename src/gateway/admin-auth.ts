import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { Logger } from '../logger';
import { sendError } from './errors';

/**
 * The admin API's credential: one operator token (`ADMIN_API_TOKEN`) sent as
 * `Authorization: Bearer <token>`. INTERIM: it stands in for users and roles until issue 6 brings
 * them; every admin action is attributed to the operator id `admin-token` meanwhile.
 */

export const ADMIN_OPERATOR_ID = 'admin-token';

/** Equal-length digests: the comparison takes the same time whatever the given token's length. */
function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

export interface AdminAuthDeps {
  token: string | undefined;
  logger: Logger;
  /** Denied requests are audited here (platform chain). */
  auditPool: Pool;
}

/**
 * Koa middleware guarding every path under `/admin` (unknown ones included, so routes cannot be
 * probed): 503 while the token is unset, 401 (audited) without a valid one. Other paths pass.
 */
export function adminAuth({ token, logger, auditPool }: AdminAuthDeps) {
  return async (ctx: Context, next: Next): Promise<void> => {
    // Lower-cased: a router matching case-insensitively must never see an unguarded `/ADMIN/…`.
    const path = ctx.path.toLowerCase();
    if (path !== '/admin' && !path.startsWith('/admin/')) return next();
    if (!token) {
      return sendError(ctx, 503, 'admin_api_disabled', 'the admin API is disabled: set ADMIN_API_TOKEN (at least 16 characters) in the gateway environment to enable it');
    }
    const header = ctx.get('authorization');
    const given = header.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : undefined;
    if (given === undefined || !tokenMatches(given, token)) {
      const reason = given === undefined ? 'missing_credentials' : 'invalid_credentials';
      logger.warn({ ip: ctx.ip, requestId: ctx.state.requestId, method: ctx.method, path: ctx.path, reason }, 'admin request denied');
      // Outside any transaction: an audit failure is logged and never changes the 401.
      await appendAuditEvent(auditPool, {
        tenantId: null,
        actor: { type: 'operator' },
        action: 'auth.denied',
        resource: `admin:${ctx.method} ${ctx.path.slice(0, 200)}`,
        outcome: 'failure',
        reason,
        ip: ctx.ip,
        userAgent: ctx.get('user-agent').slice(0, 512) || undefined,
        requestId: ctx.state.requestId,
      }).catch((err: unknown) => logger.error({ requestId: ctx.state.requestId, err: { name: (err as Error).name, message: (err as Error).message } }, 'audit append failed'));
      ctx.set('www-authenticate', 'Bearer realm="switchboard-admin"');
      return sendError(ctx, 401, 'unauthorized', given === undefined ? 'the admin API needs Authorization: Bearer <ADMIN_API_TOKEN>' : 'the admin token is not valid');
    }
    ctx.state.operator = ADMIN_OPERATOR_ID;
    await next();
  };
}
