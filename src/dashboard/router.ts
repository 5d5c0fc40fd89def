import Router from '@koa/router';
import { serveStaticAsset } from '../gateway/static-assets';
import type { Context, Next } from 'koa';
import type { Pool } from 'pg';
import { can } from '../auth/permissions';
import { denialAuditor } from '../gateway/principal';
import type { Logger } from '../logger';
import { loadAssets, type Asset, type AssetName } from './assets';
import { conversationPage, errorPage, keysPage, loginPage, overviewPage, tenantPage, type PageAssets } from './pages';

/**
 * The operator and tenant-admin dashboard under `/dashboard` (docs/dashboard.md): server-rendered
 * page shells plus one vanilla script that reads /api/v1 with the browser's session cookie and
 * polls it every few seconds. The pages hold no data of their own, so what a principal sees is
 * exactly what the API lets it read; the pages only decide where the links go (the keys page is
 * refused, and its link hidden, without `keys.rotate`).
 */

export interface DashboardDeps {
  pool: Pool;
  logger: Logger;
  /** Default: the files in src/dashboard/assets. */
  assets?: Record<AssetName, Asset>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// No inline script or style anywhere: customer text that slipped into markup could not run.
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function securityHeaders(ctx: Context): void {
  ctx.set('content-security-policy', DASHBOARD_CSP);
  ctx.set('x-content-type-options', 'nosniff');
  ctx.set('x-frame-options', 'DENY');
  ctx.set('referrer-policy', 'no-referrer');
}

/** Only paths of the dashboard itself: never an open redirect after sign-in. */
export function safeNext(value: unknown): string {
  return typeof value === 'string' && /^\/dashboard(?:[/?][\x21-\x7e]*)?$/.test(value) && !value.includes('//') && !value.includes('\\') && value.length <= 500 ? value : '/dashboard';
}

export function dashboardRoutes({ pool, logger, assets = loadAssets() }: DashboardDeps): Router {
  const router = new Router({ prefix: '/dashboard' });
  const audit = denialAuditor(pool, logger, 'dashboard');
  const pageAssets: PageAssets = {
    js: `/dashboard/assets/dashboard.js?v=${assets['dashboard.js'].hash}`,
    css: `/dashboard/assets/dashboard.css?v=${assets['dashboard.css'].hash}`,
  };

  const send = (ctx: Context, status: number, body: string) => {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('cache-control', 'no-store');
    ctx.body = body;
  };

  router.use(async (ctx: Context, next: Next) => {
    securityHeaders(ctx);
    await next();
  });

  /** Pages need a signed-in principal; without one the browser goes to the sign-in page and back. */
  const signedIn = async (ctx: Context, next: Next) => {
    if (!ctx.state.principal) {
      ctx.set('cache-control', 'no-store');
      ctx.status = 303;
      ctx.redirect(`/dashboard/login?next=${encodeURIComponent(safeNext(ctx.url))}`);
      return;
    }
    await next();
  };

  /** A tenant's pages: another tenant's answer is the same 404 as for one that does not exist. */
  const tenantPageGuard = async (ctx: Context, next: Next) => {
    const principal = ctx.state.principal!;
    const tenantId = String(ctx.params.tenantId ?? '');
    if (!UUID.test(tenantId)) return send(ctx, 404, errorPage(404, 'There is no such tenant.', principal, pageAssets));
    const id = tenantId.toLowerCase();
    if (principal.tenantId !== null && principal.tenantId !== id) {
      await audit(ctx, { tenantId: null, reason: 'other_tenant', details: { permission: 'analytics.read', principalTenantId: principal.tenantId, resourceTenantId: id } });
      return send(ctx, 404, errorPage(404, 'There is no such tenant.', principal, pageAssets));
    }
    if (!can(principal, 'analytics.read', id)) {
      await audit(ctx, { tenantId: principal.tenantId, reason: 'permission_denied', details: { permission: 'analytics.read' } });
      return send(ctx, 403, errorPage(403, `Your role (${principal.role}) may not see this tenant's dashboard.`, principal, pageAssets));
    }
    ctx.state.dashboardTenantId = id;
    await next();
  };

  router.get('/assets/:name', (ctx) => serveStaticAsset(ctx, assets, ctx.params.name ?? ''));

  router.get('/login', (ctx) => {
    const next = safeNext(ctx.query.next);
    if (ctx.state.principal) {
      ctx.status = 303;
      ctx.redirect(next);
      return;
    }
    send(ctx, 200, loginPage(next, pageAssets));
  });

  router.get('/', signedIn, (ctx) => send(ctx, 200, overviewPage(ctx.state.principal!, pageAssets)));

  router.get('/tenants/:tenantId', signedIn, tenantPageGuard, (ctx) => send(ctx, 200, tenantPage(ctx.state.principal!, ctx.state.dashboardTenantId!, pageAssets)));

  router.get('/tenants/:tenantId/conversations/:conversationId', signedIn, tenantPageGuard, (ctx) => {
    const principal = ctx.state.principal!;
    const conversationId = String(ctx.params.conversationId ?? '');
    if (!UUID.test(conversationId)) return send(ctx, 404, errorPage(404, 'There is no such conversation.', principal, pageAssets));
    send(ctx, 200, conversationPage(principal, ctx.state.dashboardTenantId!, conversationId.toLowerCase(), pageAssets));
  });

  router.get('/keys', signedIn, async (ctx) => {
    const principal = ctx.state.principal!;
    if (!can(principal, 'keys.rotate')) {
      await audit(ctx, { tenantId: principal.tenantId, reason: 'permission_denied', details: { permission: 'keys.rotate' } });
      return send(ctx, 403, errorPage(403, `Key rotation is a platform operator's task; your role (${principal.role}) does not have the permission keys.rotate.`, principal, pageAssets));
    }
    send(ctx, 200, keysPage(principal, pageAssets));
  });

  // Anything else under /dashboard: a page, not the API's JSON 404.
  router.get('/{*rest}', (ctx) => send(ctx, 404, errorPage(404, 'There is no such page.', ctx.state.principal, pageAssets)));

  return router;
}

declare module 'koa' {
  interface DefaultState {
    /** The tenant of a dashboard tenant page, checked and lower-cased. */
    dashboardTenantId?: string;
  }
}
