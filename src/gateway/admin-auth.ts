import type { Context, Next } from 'koa';
import type { DenialAuditor } from './principal';
import { sendUnauthenticated } from './principal';

/**
 * The guard in front of every path under a protected prefix (`/admin`, `/api/v1`; unknown paths
 * included, so routes cannot be probed without a credential): 401 (audited) without a principal.
 * Which principal may use which route is decided per route by `requirePermission`. `publicPaths`
 * are exact paths left open (the OpenAPI document).
 */
export function adminAuth({ audit, prefix = '/admin', publicPaths = [] }: { audit: DenialAuditor; prefix?: string; publicPaths?: readonly string[] }) {
  return async (ctx: Context, next: Next): Promise<void> => {
    // Lower-cased: a router matching case-insensitively must never see an unguarded `/ADMIN/…`.
    const path = ctx.path.toLowerCase();
    if (path !== prefix && !path.startsWith(`${prefix}/`)) return next();
    if (publicPaths.includes(ctx.path)) return next();
    if (!ctx.state.principal) {
      await audit(ctx, { tenantId: null, reason: ctx.state.authProblem ?? 'missing_credentials' });
      return sendUnauthenticated(ctx);
    }
    await next();
  };
}
