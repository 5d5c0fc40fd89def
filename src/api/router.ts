import Router from '@koa/router';
import type { Context } from 'koa';
import type { Pool } from 'pg';
import type { z } from 'zod';
import { withTenant } from '../db/tenant-scope';
import type { Logger } from '../logger';
import { sendError } from '../gateway/errors';
import { problemsOf, readJsonBody, sendInvalid } from '../gateway/json-request';
import { denialAuditor, requirePermission } from '../gateway/principal';
import { ApiError, type ApiRoute } from './define';
import { buildOpenApiDocument } from './openapi';

export const API_PREFIX = '/api/v1';

export interface ApiRouterDeps {
  pool: Pool;
  logger: Logger;
}

async function tenantExists(pool: Pool, tenantId: string): Promise<boolean> {
  return withTenant(pool, tenantId, async (tx) => (await tx.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId])).rowCount === 1);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function parsePart(ctx: Context, schema: z.ZodType | undefined, value: unknown, prefix: string): { ok: true; data: unknown } | { ok: false } {
  if (!schema) return { ok: true, data: {} };
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, data: parsed.data };
  sendInvalid(ctx, problemsOf(parsed.error, prefix));
  return { ok: false };
}

/**
 * Mounts the routes under /api/v1 behind `requirePermission` (401 / 403 / 404 for another tenant,
 * each refusal audited), validates path, query and body with the route's schemas, and sends the
 * handler's result through the response schema: a field the schema does not name is never sent.
 */
export function apiRouter(routes: readonly ApiRoute[], deps: ApiRouterDeps): Router {
  const { pool, logger } = deps;
  const router = new Router({ prefix: API_PREFIX, sensitive: true });
  const audit = denialAuditor(pool, logger, 'api');
  const document = buildOpenApiDocument(routes);

  router.get('/openapi.json', (ctx) => {
    ctx.body = document;
  });

  const seen = new Set<string>();
  for (const route of routes) {
    if (seen.has(route.id)) throw new Error(`duplicate API operation id ${route.id}`);
    seen.add(route.id);
    const tenantNotFound = (ctx: Context) => sendError(ctx, 404, 'tenant_not_found', `no tenant ${String(ctx.params.tenantId).toLowerCase()}`);
    const guard = requirePermission(route.permission, {
      audit,
      ...(route.scope === 'tenant' && {
        tenantFrom: async (ctx: Context) => {
          const id = String(ctx.params.tenantId ?? '');
          return UUID.test(id) && (await tenantExists(pool, id.toLowerCase())) ? id.toLowerCase() : undefined;
        },
        notFound: tenantNotFound,
      }),
    });
    const anyone = async (ctx: Context, next: () => Promise<unknown>) => {
      // Signed in is enough (the guard's 401 path, without the permission check).
      if (!ctx.state.principal) return guard(ctx, next as never);
      await next();
    };
    const handler = async (ctx: Context) => {
      const params = parsePart(ctx, route.params, ctx.params, 'path.');
      if (!params.ok) return;
      if (route.scope === 'tenant') {
        // The guard let an unknown-but-valid tenant through only to this point: say so.
        const tenantId = (params.data as { tenantId?: string }).tenantId;
        if (!tenantId || !(await tenantExists(pool, tenantId))) return tenantNotFound(ctx);
      }
      const query = parsePart(ctx, route.query, ctx.query, '?');
      if (!query.ok) return;
      let body: unknown;
      if (route.body) {
        const raw = await readJsonBody(ctx);
        if (!raw) return;
        const parsed = parsePart(ctx, route.body, raw.value, '');
        if (!parsed.ok) return;
        body = parsed.data;
      }
      try {
        const result = await route.handler({
          params: params.data,
          query: query.data,
          body,
          principal: ctx.state.principal!,
          tenantId: (params.data as { tenantId?: string }).tenantId ?? '',
          ctx,
        });
        ctx.status = route.status ?? 200;
        if (route.status === 204) return;
        const out = route.response.safeParse(result);
        if (!out.success) {
          logger.error({ requestId: ctx.state.requestId, operation: route.id, problems: problemsOf(out.error).slice(0, 5) }, 'API response does not match its schema');
          return sendError(ctx, 500, 'internal_error', 'internal error; the request id is in the x-request-id header');
        }
        ctx.body = out.data;
      } catch (err) {
        if (err instanceof ApiError) return sendError(ctx, err.status, err.code, err.message);
        throw err;
      }
    };
    const method = route.method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
    router[method](route.path, route.anyPrincipal ? anyone : guard, handler);
  }
  return router;
}
