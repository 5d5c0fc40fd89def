import Router from '@koa/router';
import type { Context } from 'koa';
import type { Pool } from 'pg';
import { z } from 'zod';
import { auditRequest } from './request-audit';
import { clearSessionCookie, setSessionCookie } from './session-cookie';
import { attemptLogin } from '../auth/login';
import type { ThrottleLimits } from '../auth/login-throttle';
import { auditActorOf } from '../auth/permissions';
import { csrfTokenFor, revokeSession, type SessionLifetimes } from '../auth/sessions';
import type { Logger } from '../logger';
import { sendError } from './errors';
import { csrfSatisfied, denialAuditor, readForm, sendUnauthenticated } from './principal';
import { readBodyOr413 } from './raw-body';

/**
 * Browser sign-in: `POST /auth/login` (JSON `{email, password}` or a form post) sets the
 * `sb_session` cookie (httpOnly, SameSite=Lax, Secure behind TLS) and answers the principal and
 * its CSRF token; `GET /auth/session` answers them again; `POST /auth/logout` revokes the session
 * (cookie-authenticated, so it needs the CSRF token).
 */

export interface AuthRouteDeps {
  pool: Pool;
  logger: Logger;
  lifetimes: SessionLifetimes;
  throttle: ThrottleLimits;
}

const MAX_LOGIN_BYTES = 8 * 1024;

const loginBody = z.object({
  email: z.string({ error: 'is required' }).trim().min(1, 'is required').max(254, 'must be at most 254 characters'),
  password: z.string({ error: 'is required' }).min(1, 'is required').max(1024, 'must be at most 1024 characters'),
  /** Form posts only: where to go after signing in (a path on this site). */
  next: z.string().regex(/^\/(?![/\\])[\x21-\x7e]*$/, 'must be a path on this site').max(500).optional(),
});

/** A form post from another site must not sign the browser in to the attacker's account (login CSRF). */
function crossSiteForm(ctx: Context): boolean {
  const origin = ctx.get('origin');
  if (!origin || origin === 'null') return origin === 'null';
  try {
    return new URL(origin).host !== ctx.host;
  } catch {
    return true;
  }
}

export function authRoutes({ pool, logger, lifetimes, throttle }: AuthRouteDeps): Router {
  const router = new Router({ prefix: '/auth' });
  const denied = denialAuditor(pool, logger, 'auth');

  const principalView = (ctx: Context) => {
    const p = ctx.state.principal!;
    return { kind: p.kind, id: p.id, role: p.role, tenantId: p.tenantId, credential: p.credential };
  };

  // A minimal form, so an operator can sign in this browser (e.g. for the Temporal UI's payload decoding).
  router.get('/login', (ctx) => {
    ctx.type = 'html';
    ctx.set('cache-control', 'no-store');
    ctx.body = `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Sign in · Switchboard</title>
<body style="font-family:system-ui;max-width:28rem;margin:3rem auto"><h1>Sign in</h1>
<form method="post" action="/auth/login"><input type="hidden" name="next" value="/auth/session">
<label for="email">Email</label><br><input id="email" name="email" type="email" autocomplete="username" required style="width:100%"><br><br>
<label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required style="width:100%"><br><br>
<button type="submit">Sign in</button></form></body></html>`;
  });

  router.post('/login', async (ctx) => {
    const isForm = ctx.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
    let input: unknown;
    if (isForm) {
      if (crossSiteForm(ctx)) return sendError(ctx, 403, 'cross_site_login', 'sign-in forms must be posted from this site');
      const form = await readForm(ctx);
      if (!form) return;
      input = Object.fromEntries(form.entries());
    } else if (ctx.is('application/json')) {
      const raw = await readBodyOr413(ctx, MAX_LOGIN_BYTES, 'login body');
      if (!raw) return;
      try {
        input = JSON.parse(raw.toString('utf8'));
      } catch {
        return sendError(ctx, 400, 'malformed_json', 'request body is not valid JSON');
      }
    } else {
      return sendError(ctx, 415, 'unsupported_media_type', 'Content-Type must be application/json or application/x-www-form-urlencoded');
    }
    const parsed = loginBody.safeParse(input);
    if (!parsed.success) {
      return sendError(ctx, 400, 'invalid_request', parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
    }
    const { email, password, next } = parsed.data;
    const outcome = await attemptLogin(
      { pool, logger, lifetimes, throttle },
      { email, password, ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, requestId: String(ctx.state.requestId) },
    );
    if (!outcome.ok) {
      if (outcome.retryAfterSeconds !== undefined) {
        ctx.set('retry-after', String(outcome.retryAfterSeconds));
        return sendError(ctx, 429, 'too_many_attempts', `too many failed sign-ins; try again in ${outcome.retryAfterSeconds} s`);
      }
      return sendError(ctx, 401, 'invalid_login', 'wrong email or password');
    }
    const { session, account } = outcome;
    setSessionCookie(ctx, session);
    if (isForm && next) {
      ctx.status = 303;
      ctx.redirect(next);
      return;
    }
    ctx.body = {
      principal: { kind: account.kind, id: account.id, role: account.role, tenantId: account.tenantId, credential: 'session' },
      csrfToken: session.csrfToken,
      expiresAt: session.expiresAt.toISOString(),
    };
  });

  router.get('/session', async (ctx) => {
    if (!ctx.state.principal) {
      // Asking without any credential is how a page learns it must sign in: not a denial.
      if (ctx.state.authProblem) await denied(ctx, { tenantId: null, reason: ctx.state.authProblem });
      return sendUnauthenticated(ctx);
    }
    ctx.set('cache-control', 'no-store');
    ctx.body = { principal: principalView(ctx), csrfToken: ctx.state.sessionToken ? csrfTokenFor(ctx.state.sessionToken) : null };
  });

  router.post('/logout', async (ctx) => {
    const p = ctx.state.principal;
    if (!p) {
      await denied(ctx, { tenantId: null, reason: ctx.state.authProblem ?? 'missing_credentials' });
      return sendUnauthenticated(ctx);
    }
    if (p.credential !== 'session' || !p.sessionId) return sendError(ctx, 400, 'not_a_session', 'only a browser session signs out; API keys are revoked (api-keys:revoke)');
    if (!(await csrfSatisfied(ctx))) {
      if (ctx.status === 413) return;
      await denied(ctx, { tenantId: p.tenantId, reason: 'csrf_token_invalid' });
      return sendError(ctx, 403, 'csrf_failed', "signing out needs the session's CSRF token (header x-csrf-token or form field _csrf)");
    }
    await revokeSession(pool, p.tenantId, p.sessionId, 'logout');
    clearSessionCookie(ctx);
    await auditRequest(pool, logger, ctx, { tenantId: p.tenantId, actor: auditActorOf(p), action: 'auth.logout', resource: `session:${p.sessionId}`, outcome: 'success' });
    ctx.status = 204;
  });

  return router;
}
