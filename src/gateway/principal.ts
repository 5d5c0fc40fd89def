import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Pool } from 'pg';
import { auditRequest } from './request-audit';
import { looksLikeApiKey, resolveApiKey } from '../auth/api-keys';
import { auditActorOf, can, roleHas, type Permission, type Principal } from '../auth/permissions';
import { CSRF_FORM_FIELD, CSRF_HEADER, csrfMatches, resolveSession, SESSION_COOKIE, type SessionLifetimes } from '../auth/sessions';
import type { Logger } from '../logger';
import { sendError } from './errors';
import { readBodyOr413 } from './raw-body';

/**
 * Who is calling. `resolvePrincipal` (app-wide) reads the credential once per request:
 * `Authorization: Bearer sb_…` (an API key), `Authorization: Bearer <ADMIN_API_TOKEN>` (the
 * deprecated static operator token), or the `sb_session` cookie; the result is
 * `ctx.state.principal`, or `ctx.state.authProblem` naming why a presented credential was refused.
 * `requirePermission` then guards each route with the matrix of src/auth/permissions.ts:
 * 401 without a (valid) credential, 403 when the role lacks the permission (or a cookie-
 * authenticated change lacks its CSRF token), 404 for another tenant's resource — the same answer
 * as for one that does not exist. Every refusal is an audit event (`auth.denied`).
 */

export const LEGACY_ADMIN_OPERATOR_ID = 'admin-token';

export type AuthProblem = 'invalid_credentials' | 'invalid_session';

export interface PrincipalDeps {
  pool: Pool;
  logger: Logger;
  lifetimes: SessionLifetimes;
  /** Deprecated static operator credential (`ADMIN_API_TOKEN`); unset = refused. */
  legacyAdminToken?: string;
}

declare module 'koa' {
  interface DefaultState {
    principal?: Principal;
    authProblem?: AuthProblem;
    /** The session cookie's value, when the principal came from it (CSRF is derived from it). */
    sessionToken?: string;
    /** A urlencoded form body read by the CSRF check, for the route to use. */
    form?: URLSearchParams;
  }
}

/** Equal-length digests: the comparison takes the same time whatever the given token's length. */
function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(given, 'utf8').digest(), createHash('sha256').update(expected, 'utf8').digest());
}

export function bearerOf(ctx: Context): string | undefined {
  const header = ctx.get('authorization');
  return /^bearer /i.test(header) ? header.slice('bearer '.length).trim() : undefined;
}

export function resolvePrincipal({ pool, lifetimes, legacyAdminToken }: PrincipalDeps) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const bearer = bearerOf(ctx);
    if (bearer !== undefined) {
      if (looksLikeApiKey(bearer)) ctx.state.principal = await resolveApiKey(pool, bearer);
      else if (legacyAdminToken && tokenMatches(bearer, legacyAdminToken)) {
        ctx.state.principal = { kind: 'operator', id: LEGACY_ADMIN_OPERATOR_ID, role: 'operator', tenantId: null, credential: 'static_token' };
      }
      if (!ctx.state.principal) ctx.state.authProblem = 'invalid_credentials';
    } else {
      const token = ctx.cookies.get(SESSION_COOKIE);
      if (token) {
        ctx.state.principal = await resolveSession(pool, token, lifetimes);
        if (ctx.state.principal) ctx.state.sessionToken = token;
        else ctx.state.authProblem = 'invalid_session';
      }
    }
    await next();
  };
}

export interface DenialAuditor {
  (ctx: Context, denial: { tenantId: string | null; reason: string; details?: Record<string, unknown> }): Promise<void>;
}

/** Audits a refusal outside any transaction: an audit failure is logged and never changes the answer. */
export function denialAuditor(pool: Pool, logger: Logger, resourcePrefix: string): DenialAuditor {
  return async (ctx, { tenantId, reason, details }) => {
    const principal = ctx.state.principal;
    logger.warn({ requestId: ctx.state.requestId, method: ctx.method, path: ctx.path, reason, principal: principal ? `${principal.kind}:${principal.id}` : undefined }, 'request denied');
    await auditRequest(pool, logger, ctx, {
      tenantId,
      actor: principal ? auditActorOf(principal) : { type: 'operator' },
      action: 'auth.denied',
      resource: `${resourcePrefix}:${ctx.method} ${ctx.path.slice(0, 200)}`,
      outcome: 'failure',
      reason,
      details: { ...(principal && { role: principal.role, credential: principal.credential }), ...details },
    });
  };
}

/** 401 with the reason the credential was refused (audited by the caller). */
export function sendUnauthenticated(ctx: Context): void {
  ctx.set('www-authenticate', 'Bearer realm="switchboard"');
  const problem = ctx.state.authProblem;
  sendError(
    ctx,
    401,
    'unauthorized',
    problem === 'invalid_credentials'
      ? 'the credential is not valid (unknown, revoked or mistyped API key or token)'
      : problem === 'invalid_session'
        ? 'the session has ended (signed out, expired or revoked): sign in again at POST /auth/login'
        : 'sign in (POST /auth/login) or send Authorization: Bearer <API key>',
  );
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const MAX_FORM_BYTES = 64 * 1024;

/** Reads a urlencoded body once into `ctx.state.form` (undefined, with 413 answered, when too large). */
export async function readForm(ctx: Context): Promise<URLSearchParams | undefined> {
  if (ctx.state.form) return ctx.state.form;
  const raw = await readBodyOr413(ctx, MAX_FORM_BYTES, 'form body');
  if (!raw) return undefined;
  ctx.state.form = new URLSearchParams(raw.toString('utf8'));
  return ctx.state.form;
}

/**
 * Does a state-changing request carry the session's CSRF token? Only cookie-authenticated
 * requests need one: a bearer credential is never sent by a browser on its own. A form post may
 * carry it as the `_csrf` field (the form is then read here and kept in `ctx.state.form`).
 */
export async function csrfSatisfied(ctx: Context): Promise<boolean> {
  if (SAFE_METHODS.has(ctx.method)) return true;
  const token = ctx.state.sessionToken;
  if (ctx.state.principal?.credential !== 'session' || !token) return true;
  const header = ctx.get(CSRF_HEADER);
  if (header) return csrfMatches(token, header);
  if (ctx.is('application/x-www-form-urlencoded')) {
    const form = await readForm(ctx);
    return form !== undefined && csrfMatches(token, form.get(CSRF_FORM_FIELD) ?? undefined);
  }
  return false;
}

export interface RequirePermissionOptions {
  /**
   * The tenant owning the resource the route acts on; undefined when the path names none that
   * exists (the route then answers its own 400/404). Omitted: a platform-wide route.
   */
  tenantFrom?: (ctx: Context) => Promise<string | undefined>;
  /** The route's own "does not exist" answer, reused for another tenant's resource. */
  notFound?: (ctx: Context) => void;
  /** Check the CSRF token of cookie-authenticated changes (default true). */
  csrf?: boolean;
  audit: DenialAuditor;
}

const defaultNotFound = (ctx: Context) => sendError(ctx, 404, 'not_found', `no route for ${ctx.method} ${ctx.path}`);

export function requirePermission(permission: Permission, opts: RequirePermissionOptions) {
  const notFound = opts.notFound ?? defaultNotFound;
  return async (ctx: Context, next: Next): Promise<void> => {
    const principal = ctx.state.principal;
    if (!principal) {
      await opts.audit(ctx, { tenantId: null, reason: ctx.state.authProblem ?? 'missing_credentials', details: { permission } });
      return sendUnauthenticated(ctx);
    }
    if (opts.csrf !== false && !(await csrfSatisfied(ctx))) {
      if (ctx.status === 413) return;
      await opts.audit(ctx, { tenantId: principal.tenantId, reason: 'csrf_token_invalid', details: { permission } });
      return sendError(ctx, 403, 'csrf_failed', `a signed-in browser must send the session's CSRF token (header ${CSRF_HEADER} or form field ${CSRF_FORM_FIELD}; GET /auth/session returns it)`);
    }
    let tenantId: string | undefined;
    if (opts.tenantFrom) {
      tenantId = await opts.tenantFrom(ctx);
      if (tenantId === undefined) {
        // Nothing by that id: the route says so — unless the caller may not use the route at
        // all, who gets the same 404 (a 403 here and a 404 for another tenant's would tell them apart).
        if (roleHas(principal.role, permission)) return next();
        await opts.audit(ctx, { tenantId: principal.tenantId, reason: 'permission_denied', details: { permission } });
        return notFound(ctx);
      }
      if (principal.tenantId !== null && principal.tenantId !== tenantId) {
        // Platform chain: the other tenant's id must not show up in the caller's tenant's log.
        await opts.audit(ctx, { tenantId: null, reason: 'other_tenant', details: { permission, principalTenantId: principal.tenantId, resourceTenantId: tenantId } });
        return notFound(ctx);
      }
    }
    if (!can(principal, permission, tenantId)) {
      await opts.audit(ctx, { tenantId: principal.tenantId, reason: 'permission_denied', details: { permission } });
      return sendError(ctx, 403, 'forbidden', `the role ${principal.role} does not have the permission ${permission}${tenantId === undefined && principal.role !== 'operator' ? ' (a platform operator action)' : ''}`);
    }
    await next();
  };
}
