import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { PayloadCodec } from '@temporalio/common';
import Koa from 'koa';
import { auditReadiness } from '../audit/verifications';
import type { Config } from '../config';
import { StaticKeyProvider } from '../crypto/key-provider';
import { SecretVault } from '../crypto/vault';
import { withTemporalDeadline } from '../temporal/client';
import { allApiRoutes } from '../api/routes';
import { API_PREFIX, apiRouter } from '../api/router';
import { dashboardRoutes } from '../dashboard/router';
import { portalRoutes, type PortalConfig } from '../portal/router';
import { adminAuth } from './admin-auth';
import { adminRoutes } from './admin-routes';
import { authRoutes } from './auth-routes';
import { codecRoutes } from './codec-routes';
import { sendError } from './errors';
import { metaWebhookRoutes, type WebhookDeps } from './meta-webhooks';
import { denialAuditor, resolvePrincipal } from './principal';

export interface GatewayDeps extends WebhookDeps {
  config: WebhookDeps['config'] &
    Pick<
      Config,
      | 'CODEC_AUTH_TOKEN'
      | 'CODEC_CORS_ORIGINS'
      | 'TEMPORAL_UI_URL'
      | 'TEMPORAL_NAMESPACE'
      | 'TEMPORAL_TASK_QUEUE'
      | 'ADMIN_API_TOKEN'
      | 'MASTER_KEYS'
      | 'DATA_KEY_CACHE_TTL_MS'
      | 'DATA_KEY_MAX_AGE_DAYS'
      | 'DATA_KEY_MAX_ENCRYPTIONS'
      | 'SESSION_IDLE_TIMEOUT_MS'
      | 'SESSION_MAX_AGE_MS'
      | 'LOGIN_MAX_FAILURES_PER_ACCOUNT'
      | 'LOGIN_MAX_FAILURES_PER_IP'
      | 'LOGIN_THROTTLE_WINDOW_MS'
      | 'NODE_ENV'
    > &
    PortalConfig;
  /** The same codec the Temporal client uses, served to the Temporal UI. */
  codec: PayloadCodec;
  /** Seals secrets the admin API stores (a tenant's model API key); default: one on MASTER_KEYS. */
  vault?: SecretVault;
}

/** The Temporal UI's origin, reachable as localhost or 127.0.0.1 (whichever the operator typed). */
export function defaultCodecOrigins(uiUrl: string): string[] {
  const origin = new URL(uiUrl).origin;
  const alias = origin.includes('://localhost') ? origin.replace('://localhost', '://127.0.0.1') : origin.replace('://127.0.0.1', '://localhost');
  return [...new Set([origin, alias])];
}

async function probe(fn: () => Promise<unknown>): Promise<'ok' | 'unavailable'> {
  try {
    await fn();
    return 'ok';
  } catch {
    return 'unavailable';
  }
}

export function createGatewayApp(deps: GatewayDeps): Koa {
  const app = new Koa({ proxy: true });
  const { logger } = deps;

  app.use(async (ctx, next) => {
    ctx.state.requestId = ctx.get('x-request-id') || randomUUID();
    ctx.set('x-request-id', ctx.state.requestId);
    const started = performance.now();
    try {
      await next();
    } catch (err) {
      logger.error({ requestId: ctx.state.requestId, err: { name: (err as Error).name, message: (err as Error).message } }, 'unhandled error');
      sendError(ctx, 500, 'internal_error', 'internal error; the request id is in the x-request-id header');
    }
    logger.debug({ requestId: ctx.state.requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started) }, 'request');
  });

  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  health.get('/readyz', async (ctx) => {
    const timeout = deps.config.TEMPORAL_RPC_TIMEOUT_MS;
    const [database, temporal, audit] = await Promise.all([
      probe(() => deps.pool.query('SELECT 1')),
      probe(() => withTemporalDeadline(deps.temporal.connection, timeout, () => deps.temporal.connection.workflowService.getSystemInfo({}))),
      // The latest scheduled audit verification (docs/security.md, "Audit retention"); unknown while the database is down.
      auditReadiness(deps.pool).catch(() => 'ok' as const),
    ]);
    const ready = database === 'ok' && temporal === 'ok';
    ctx.status = ready && audit === 'ok' ? 200 : 503;
    ctx.body = { status: !ready ? 'not_ready' : audit === 'ok' ? 'ready' : 'degraded', checks: { database, temporal, audit } };
  });

  const webhooks = metaWebhookRoutes(deps);
  const codec = codecRoutes({
    codec: deps.codec,
    authToken: deps.config.CODEC_AUTH_TOKEN,
    corsOrigins: deps.config.CODEC_CORS_ORIGINS ?? defaultCodecOrigins(deps.config.TEMPORAL_UI_URL),
    logger,
    auditPool: deps.pool,
  });
  const vault = deps.vault ?? new SecretVault(deps.pool, StaticKeyProvider.fromSpec(deps.config.MASTER_KEYS), { cacheTtlMs: deps.config.DATA_KEY_CACHE_TTL_MS });
  const admin = adminRoutes({ config: deps.config, pool: deps.pool, temporal: deps.temporal, vault, logger });
  const lifetimes = { idleMs: deps.config.SESSION_IDLE_TIMEOUT_MS, absoluteMs: deps.config.SESSION_MAX_AGE_MS };
  const auth = authRoutes({
    pool: deps.pool,
    logger,
    lifetimes,
    throttle: { windowMs: deps.config.LOGIN_THROTTLE_WINDOW_MS, perAccount: deps.config.LOGIN_MAX_FAILURES_PER_ACCOUNT, perIp: deps.config.LOGIN_MAX_FAILURES_PER_IP },
  });
  app.use(resolvePrincipal({ pool: deps.pool, logger, lifetimes, legacyAdminToken: deps.config.ADMIN_API_TOKEN }));
  const api = apiRouter(allApiRoutes({ config: deps.config, pool: deps.pool, vault, temporal: deps.temporal, logger }), { pool: deps.pool, logger });
  app.use(adminAuth({ audit: denialAuditor(deps.pool, logger, 'admin') }));
  app.use(adminAuth({ audit: denialAuditor(deps.pool, logger, 'api'), prefix: API_PREFIX, publicPaths: [`${API_PREFIX}/openapi.json`] }));
  for (const router of [health, webhooks, codec, auth, admin, api]) app.use(router.routes()).use(router.allowedMethods());
  app.use(dashboardRoutes({ pool: deps.pool, logger }).routes());
  app.use(portalRoutes({ config: deps.config, pool: deps.pool, logger, temporal: deps.temporal, vault }).routes());
  app.use((ctx) => sendError(ctx, 404, 'not_found', `no route for ${ctx.method} ${ctx.path}`));
  return app;
}
