import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import { QueryNotRegisteredError, QueryRejectedError, type Client, type Connection } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import type { Context } from 'koa';
import type { Pool } from 'pg';
import { z } from 'zod';
import { auditRequest } from './request-audit';
import type { AuditEventInput } from '../audit/types';
import { CatalogValidationError, formatProblem, importCatalog, MAX_CATALOG_BYTES, parseCatalog, UnknownTenantError, type CatalogFormat } from '../catalog/import';
import type { Config } from '../config';
import type { SecretVault } from '../crypto/vault';
import { getConversationRoute } from '../db/conversations';
import { searchProducts } from '../db/products';
import { loadTenantSettings, SettingsError, tenantSettingsPatchSchema, updateTenantSettings } from '../db/tenant-settings';
import { tenantExists } from '../db/tenants';
import { withTenant } from '../db/tenant-scope';
import type { Logger } from '../logger';
import { withTemporalDeadline } from '../temporal/client';
import { conversationWorkflowId } from '../temporal/ids';
import { conversationStateQuery, type OperatorCommand } from '../../workflows/definitions';
import { auditActorOf, type Permission } from '../auth/permissions';
import { dispatchOperatorCommand } from './conversation-dispatch';
import { sendError } from './errors';
import { denialAuditor, requirePermission } from './principal';
import { parseBody, problemsOf, sendInvalid, sendProblems } from './json-request';
import { readBodyOr413 } from './raw-body';

/**
 * The admin API (`/admin/*`): tenant settings, catalog import and search, and a conversation's
 * human side (send as a human agent, hand off, read its state). The app puts `adminAuth` (a
 * principal is required) in front of every `/admin` path; each route then requires its
 * permission (`ADMIN_ROUTES`) for the tenant that owns the resource — a conversation's tenant for
 * conversation routes. Every change is audited under the acting principal: settings and imports in
 * their own transaction, conversation commands once Temporal accepted them.
 */

/** Every admin route with the permission it needs and where its tenant comes from (walked by test/integration/auth-matrix.test.ts). */
export const ADMIN_ROUTES = {
  getSettings: { method: 'GET', path: '/tenants/:tenantId/settings', permission: 'settings.read', resource: 'tenant' },
  putSettings: { method: 'PUT', path: '/tenants/:tenantId/settings', permission: 'settings.manage', resource: 'tenant' },
  importProducts: { method: 'POST', path: '/tenants/:tenantId/products/import', permission: 'settings.manage', resource: 'tenant' },
  listProducts: { method: 'GET', path: '/tenants/:tenantId/products', permission: 'settings.read', resource: 'tenant' },
  sendMessage: { method: 'POST', path: '/conversations/:conversationId/messages', permission: 'conversations.reply', resource: 'conversation' },
  handoff: { method: 'POST', path: '/conversations/:conversationId/handoff', permission: 'conversations.reply', resource: 'conversation' },
  conversationState: { method: 'GET', path: '/conversations/:conversationId/state', permission: 'conversations.read', resource: 'conversation' },
} as const satisfies Record<string, { method: 'GET' | 'PUT' | 'POST'; path: string; permission: Permission; resource: 'tenant' | 'conversation' }>;

export interface AdminDeps {
  config: Pick<Config, 'TEMPORAL_TASK_QUEUE' | 'TEMPORAL_RPC_TIMEOUT_MS' | 'CONVERSATION_IDLE_TIMEOUT_MS'>;
  pool: Pool;
  temporal: { client: Client; connection: Connection };
  /** Seals the tenant's model API key. */
  vault: SecretVault;
  logger: Logger;
}

/** A 422 lists at most this many catalog problems (the count says how many there were). */
const MAX_LISTED_PROBLEMS = 1000;

const uuidParam = z.uuid().transform((v) => v.toLowerCase());
/** Printable ASCII: a request id travels into workflow state and the audit log. */
const requestIdSchema = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be 1–200 printable ASCII characters');

const sendBody = z
  .object({
    text: z.string({ error: 'is required' }).min(1, 'must not be empty').max(2000, 'must be at most 2000 characters').refine((t) => t.trim().length > 0, 'must not be blank'),
    requestId: requestIdSchema.optional(),
  })
  .strict();

const handoffBody = z
  .object({
    to: z.enum(['human_active', 'bot_active'], 'must be human_active or bot_active'),
    reason: z.string().trim().min(1, 'must not be empty').max(500, 'must be at most 500 characters').optional(),
    requestId: requestIdSchema.optional(),
  })
  .strict();

const importQuery = z.object({ mode: z.enum(['upsert', 'replace'], 'must be upsert or replace').default('upsert') });
const listQuery = z.object({
  q: z.string().trim().max(200, 'must be at most 200 characters').optional(),
  limit: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').max(50, 'must be at most 50').default(20),
});

function parseParam(ctx: Context, name: string, what: string): string | undefined {
  const parsed = uuidParam.safeParse(ctx.params[name]);
  if (parsed.success) return parsed.data;
  sendError(ctx, 400, `invalid_${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`, `the ${what} id in the path must be a UUID`);
  return undefined;
}

function parseQuery<S extends z.ZodType>(ctx: Context, schema: S): z.infer<S> | undefined {
  // A repeated parameter arrives as an array and fails the schema: named, never guessed.
  const parsed = schema.safeParse(ctx.query);
  if (parsed.success) return parsed.data;
  sendInvalid(ctx, problemsOf(parsed.error, '?'));
  return undefined;
}

export function adminRoutes(deps: AdminDeps): Router {
  const { config, pool, temporal, vault, logger } = deps;
  const dispatchOpts = { taskQueue: config.TEMPORAL_TASK_QUEUE, idleTimeoutMs: config.CONVERSATION_IDLE_TIMEOUT_MS };
  /** The acting principal (`adminAuth` and `requirePermission` ran first). */
  const actorOf = (ctx: Context) => auditActorOf(ctx.state.principal!);
  // Case-sensitive, like the guard's prefix check in front of it.
  const router = new Router({ prefix: '/admin', sensitive: true });
  const denied = denialAuditor(pool, logger, 'admin');

  /** Outside any transaction: an audit failure is logged, never turned into the response. */
  const audit = (ctx: Context, event: Omit<AuditEventInput, 'actor' | 'ip' | 'userAgent' | 'requestId'>): Promise<void> =>
    auditRequest(pool, logger, ctx, { actor: actorOf(ctx), ...event });

  /** The tenant named in the path, or a 400/404 answered here. */
  const tenantOf = async (ctx: Context): Promise<string | undefined> => {
    const tenantId = parseParam(ctx, 'tenantId', 'tenant');
    if (!tenantId) return undefined;
    if (await tenantExists(pool, tenantId)) return tenantId;
    sendError(ctx, 404, 'tenant_not_found', `no tenant ${tenantId}`);
    return undefined;
  };

  /** The tenant named in the path when it exists (for the permission check). */
  const pathTenant = async (ctx: Context): Promise<string | undefined> => {
    const parsed = uuidParam.safeParse(ctx.params.tenantId);
    return parsed.success && (await tenantExists(pool, parsed.data)) ? parsed.data : undefined;
  };
  /** The tenant of the conversation named in the path, when it exists. */
  const conversationTenant = async (ctx: Context): Promise<string | undefined> => {
    const parsed = uuidParam.safeParse(ctx.params.conversationId);
    return parsed.success ? (await getConversationRoute(pool, parsed.data))?.tenantId : undefined;
  };
  const resources = {
    tenant: { tenantFrom: pathTenant, notFound: (ctx: Context) => sendError(ctx, 404, 'tenant_not_found', `no tenant ${String(ctx.params.tenantId).toLowerCase()}`) },
    conversation: { tenantFrom: conversationTenant, notFound: (ctx: Context) => sendError(ctx, 404, 'conversation_not_found', `no conversation ${String(ctx.params.conversationId).toLowerCase()}`) },
  };
  const guarded = (route: (typeof ADMIN_ROUTES)[keyof typeof ADMIN_ROUTES], handler: (ctx: Context) => Promise<void>) => {
    const guard = requirePermission(route.permission, { ...resources[route.resource], audit: denied });
    const method = route.method === 'GET' ? 'get' : route.method === 'PUT' ? 'put' : 'post';
    router[method](route.path, guard, handler);
  };

  // ---- tenant settings ------------------------------------------------------------------------

  guarded(ADMIN_ROUTES.getSettings, async (ctx) => {
    const tenantId = await tenantOf(ctx);
    if (!tenantId) return;
    ctx.body = await loadTenantSettings(pool, tenantId);
  });

  guarded(ADMIN_ROUTES.putSettings, async (ctx) => {
    // The tenant first: an unknown one is a 404 whatever the body (as another tenant's is, see requirePermission).
    const tenantId = await tenantOf(ctx);
    if (!tenantId) return;
    const patch = await parseBody(ctx, tenantSettingsPatchSchema);
    if (!patch) return;
    try {
      ctx.body = await updateTenantSettings(pool, vault, tenantId, patch, { actor: actorOf(ctx), requestId: String(ctx.state.requestId).slice(0, 200), ip: ctx.ip });
    } catch (err) {
      if (err instanceof SettingsError) return sendError(ctx, 400, 'invalid_settings', err.message);
      throw err;
    }
    logger.info({ requestId: ctx.state.requestId, tenantId, fields: Object.keys(patch).sort() }, 'tenant settings updated');
  });

  // ---- catalog --------------------------------------------------------------------------------

  guarded(ADMIN_ROUTES.importProducts, async (ctx) => {
    const tenantId = await tenantOf(ctx);
    if (!tenantId) return;
    const query = parseQuery(ctx, importQuery);
    if (!query) return;
    const format: CatalogFormat | undefined = ctx.is('text/csv') ? 'csv' : ctx.is('application/json') ? 'json' : undefined;
    if (!format) return sendError(ctx, 415, 'unsupported_media_type', 'Content-Type must be text/csv or application/json');
    const raw = await readBodyOr413(ctx, MAX_CATALOG_BYTES, 'catalog file');
    if (!raw) return;
    try {
      const products = parseCatalog(raw, format);
      const result = await importCatalog(pool, tenantId, products, { mode: query.mode, actor: actorOf(ctx), format, requestId: String(ctx.state.requestId).slice(0, 200), ip: ctx.ip });
      logger.info({ requestId: ctx.state.requestId, tenantId, format, mode: query.mode, rows: products.length, ...result }, 'catalog imported');
      ctx.body = result;
    } catch (err) {
      if (err instanceof CatalogValidationError) {
        const listed = err.problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => ({ ...p, text: formatProblem(p, format) }));
        const first = listed.slice(0, 3).map((p) => p.text).join('; ');
        return sendProblems(ctx, 422, 'invalid_catalog', `${err.message}: ${first}${err.problems.length > 3 ? '; …' : ''}`, listed, {
          problemCount: err.problems.length,
        });
      }
      if (err instanceof UnknownTenantError) return sendError(ctx, 404, 'tenant_not_found', err.message);
      throw err;
    }
  });

  guarded(ADMIN_ROUTES.listProducts, async (ctx) => {
    const tenantId = await tenantOf(ctx);
    if (!tenantId) return;
    const query = parseQuery(ctx, listQuery);
    if (!query) return;
    if (query.q) {
      // The assistant's own search, so an operator sees what `search_products` would find.
      ctx.body = { products: await searchProducts(pool, tenantId, query.q, { limit: query.limit }) };
      return;
    }
    const { rows } = await withTenant(pool, tenantId, (tx) =>
      tx.query(
        `SELECT id, sku, name, description, price::text AS price, currency, stock, url, updated_at AS "updatedAt"
         FROM products WHERE tenant_id = $1 ORDER BY name, sku LIMIT $2`,
        [tenantId, query.limit],
      ),
    );
    ctx.body = { products: rows };
  });

  // ---- conversations --------------------------------------------------------------------------

  /** The conversation named in the path, or a 400/404 answered here. */
  const conversationOf = async (ctx: Context) => {
    const conversationId = parseParam(ctx, 'conversationId', 'conversation');
    if (!conversationId) return undefined;
    const route = await getConversationRoute(pool, conversationId);
    if (!route) sendError(ctx, 404, 'conversation_not_found', `no conversation ${conversationId}`);
    return route ?? undefined;
  };

  /**
   * Hands a command to the conversation's workflow and audits the outcome (`details` never hold
   * the message text or the handoff reason); false, with the 503 answered, when Temporal did not
   * take it.
   */
  const dispatch = async (ctx: Context, route: NonNullable<Awaited<ReturnType<typeof conversationOf>>>, command: OperatorCommand, details: Record<string, unknown>): Promise<boolean> => {
    const channel = { id: route.channelId, tenantId: route.tenantId, platform: route.platform, status: route.channelStatus };
    const event = {
      tenantId: route.tenantId,
      action: command.kind === 'send' ? ('conversation.agent_message' as const) : ('conversation.handoff' as const),
      resource: `conversation:${route.conversationId}`,
      details: { conversationId: route.conversationId, commandRequestId: command.requestId, ...details },
    };
    try {
      await withTemporalDeadline(temporal.connection, config.TEMPORAL_RPC_TIMEOUT_MS, () => dispatchOperatorCommand(temporal.client, dispatchOpts, channel, route.customerId, command));
    } catch (err) {
      logger.error({ requestId: ctx.state.requestId, conversationId: route.conversationId, kind: command.kind, err: { name: (err as Error).name, message: (err as Error).message } }, 'operator command hand-off failed');
      await audit(ctx, { ...event, outcome: 'failure', reason: 'temporal_unavailable' });
      sendError(ctx, 503, 'temporarily_unavailable', `Temporal did not accept the ${command.kind} command; nothing was done — retry with the same requestId (${command.requestId})`);
      return false;
    }
    await audit(ctx, { ...event, outcome: 'success' });
    logger.info({ requestId: ctx.state.requestId, conversationId: route.conversationId, kind: command.kind, commandRequestId: command.requestId }, 'operator command dispatched');
    return true;
  };

  /** Who the workflow records as the human agent: the principal (`tenant_user:<uuid>`, `operator:<uuid>`, `api_key:<uuid>`). */
  const operatorId = (ctx: Context): string => {
    const p = ctx.state.principal!;
    return p.kind === 'operator' && p.credential === 'static_token' ? p.id : `${p.kind}:${p.id}`;
  };

  /** The caller's id for the command (a retry with the same one is a no-op), else the request's. */
  const commandRequestId = (ctx: Context, given: string | undefined): string => {
    if (given) return given;
    const fromHeader = requestIdSchema.safeParse(ctx.state.requestId);
    return fromHeader.success ? fromHeader.data : randomUUID();
  };

  guarded(ADMIN_ROUTES.sendMessage, async (ctx) => {
    const route = await conversationOf(ctx);
    if (!route) return;
    const body = await parseBody(ctx, sendBody);
    if (!body) return;
    // A channel waiting for reauthorization still takes the message: the conversation parks it and
    // sends it after the reconnect (docs/token-lifecycle.md). Only a disabled channel refuses.
    if (route.channelStatus === 'disabled') {
      return sendError(ctx, 409, 'channel_inactive', "the conversation's channel is disabled: connect it again (channels:connect) before sending");
    }
    const requestId = commandRequestId(ctx, body.requestId);
    if (!(await dispatch(ctx, route, { kind: 'send', requestId, operator: operatorId(ctx), text: body.text }, { textLength: body.text.length }))) return;
    ctx.status = 202;
    ctx.body = { requestId, conversationId: route.conversationId, ...(route.channelStatus === 'reauth_required' && { parked: true }) };
  });

  guarded(ADMIN_ROUTES.handoff, async (ctx) => {
    const route = await conversationOf(ctx);
    if (!route) return;
    const body = await parseBody(ctx, handoffBody);
    if (!body) return;
    const requestId = commandRequestId(ctx, body.requestId);
    const command: OperatorCommand = { kind: 'handoff', requestId, operator: operatorId(ctx), to: body.to, ...(body.reason && { reason: body.reason }) };
    // The reason is the operator's free text: only whether one was given is audited.
    if (!(await dispatch(ctx, route, command, { to: body.to, withReason: body.reason !== undefined }))) return;
    ctx.status = 202;
    ctx.body = { requestId, conversationId: route.conversationId };
  });

  guarded(ADMIN_ROUTES.conversationState, async (ctx) => {
    const route = await conversationOf(ctx);
    if (!route) return;
    const workflowId = conversationWorkflowId(route.tenantId, route.channelId, route.customerId);
    let live;
    try {
      live = await withTemporalDeadline(temporal.connection, config.TEMPORAL_RPC_TIMEOUT_MS, async () => {
        const handle = temporal.client.workflow.getHandle(workflowId);
        // A closed run still answers queries (by replay), with what it knew when it ended.
        const { status } = await handle.describe();
        return status.name === 'RUNNING' ? await handle.query(conversationStateQuery) : null;
      });
    } catch (err) {
      // Closed between describe and query, or never started: the database has the last word.
      if (err instanceof WorkflowNotFoundError || err instanceof QueryRejectedError) live = null;
      else if (err instanceof QueryNotRegisteredError) {
        return sendError(ctx, 503, 'state_unavailable', "the conversation's running workflow predates the getState query; its state is readable from its next run");
      } else {
        logger.error({ requestId: ctx.state.requestId, conversationId: route.conversationId, err: { name: (err as Error).name, message: (err as Error).message } }, 'conversation state query failed');
        return sendError(ctx, 503, 'temporarily_unavailable', `the conversation's workflow did not answer within ${config.TEMPORAL_RPC_TIMEOUT_MS} ms (Temporal or its worker is unavailable); retry later`);
      }
    }
    if (live) {
      ctx.body = { running: true, conversationId: route.conversationId, workflowId, ...live };
      return;
    }
    const { rows } = await withTenant(pool, route.tenantId, (tx) =>
      tx.query<{ state: string; state_reason: string | null; state_changed_at: Date; last_inbound_at: Date | null; last_human_at: Date | null }>(
        'SELECT state, state_reason, state_changed_at, last_inbound_at, last_human_at FROM conversations WHERE id = $1',
        [route.conversationId],
      ),
    );
    const r = rows[0];
    if (!r) return sendError(ctx, 404, 'conversation_not_found', `no conversation ${route.conversationId}`);
    // Epoch ms, like the live query's answer.
    ctx.body = {
      running: false,
      conversationId: route.conversationId,
      workflowId,
      mode: r.state,
      modeReason: r.state_reason,
      modeSince: r.state_changed_at.getTime(),
      lastCustomerAt: r.last_inbound_at?.getTime() ?? null,
      lastHumanAt: r.last_human_at?.getTime() ?? null,
    };
  });

  return router;
}
