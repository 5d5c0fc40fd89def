import type { Context, Next } from 'koa';
import type { DenialAuditor } from './principal';
import { sendUnauthenticated } from './principal';

/**
 * The guard in front of every path under `/admin` (unknown ones included, so routes cannot be
 * probed without a credential): 401 (audited) without a principal. Which principal may use which
 * route is decided per route by `requirePermission` (src/gateway/admin-routes.ts).
 */
export function adminAuth({ audit }: { audit: DenialAuditor }) {
  return async (ctx: Context, next: Next): Promise<void> => {
    // Lower-cased: a router matching case-insensitively must never see an unguarded `/ADMIN/…`.
    const path = ctx.path.toLowerCase();
    if (path !== '/admin' && !path.startsWith('/admin/')) return next();
    if (!ctx.state.principal) {
      await audit(ctx, { tenantId: null, reason: ctx.state.authProblem ?? 'missing_credentials' });
      return sendUnauthenticated(ctx);
    }
    await next();
  };
}
