import { createHmac } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { PayloadCodec } from '@temporalio/common';
import type { Pool } from 'pg';
import { auditRequest } from './request-audit';
import type { AuditEventInput } from '../audit/types';
import { z } from 'zod';
import { auditActorOf, can } from '../auth/permissions';
import type { Logger } from '../logger';
import { constantTimeEqual } from '../meta/signature';
import { sendError } from './errors';
import { bearerOf } from './principal';
import { readBodyOr413, readRawBody } from './raw-body';

/**
 * The Temporal UI's remote codec protocol (`POST /codec/decode`, `POST /codec/encode`, body
 * `{payloads: [{metadata: {k: base64}, data: base64}]}`), so operators read decrypted payloads
 * in the UI while Temporal's database holds ciphertext. The UI calls it from the browser, so it
 * sends CORS headers for the configured UI origins only.
 *
 * Credentials: a principal allowed `payloads.decode` (src/auth/permissions.ts: operators only,
 * since payload keys are platform-wide) — a signed-in operator's `sb_session` cookie (the UI sends
 * it with "Include cross-origin credentials") or a platform API key as bearer; or, deprecated,
 * `Authorization: Bearer <CODEC_AUTH_TOKEN>` (the CLI's `--codec-auth`) and the cookie `/codec/login`
 * sets from it. No CSRF token is asked for: decoding changes nothing, and only the configured UI
 * origins may read the answers (CORS).
 */

export const MAX_CODEC_BODY_BYTES = 4 * 1024 * 1024;
const COOKIE = 'sb_codec';

const payloadsSchema = z.object({
  payloads: z.array(
    z.object({
      metadata: z.record(z.string(), z.base64()).optional(),
      data: z.base64().optional(),
    }),
  ),
});

export interface CodecRouteDeps {
  codec: PayloadCodec;
  authToken: string | undefined;
  corsOrigins: readonly string[];
  logger: Logger;
  /** Where operator codec use and failed codec auth are audited (platform chain); none: not audited. */
  auditPool?: Pool;
}

export function codecRoutes({ codec, authToken, corsOrigins, logger, auditPool }: CodecRouteDeps): Router {
  /** Outside any transaction: an audit failure is logged, never turned into the response. */
  const audit = async (ctx: Context, event: Omit<AuditEventInput, 'tenantId' | 'ip' | 'userAgent' | 'requestId'>): Promise<void> => {
    if (!auditPool) return;
    await auditRequest(auditPool, logger, ctx, { tenantId: null, ...event });
  };
  /** Which operator credential was used (never the credential). */
  const credentialKind = (ctx: Context): string => (ctx.get('authorization').startsWith('Bearer ') ? 'codec-bearer' : 'codec-session');
  const router = new Router({ prefix: '/codec' });
  // The cookie carries a MAC of the token, not the token: a stolen cookie can't be replayed as a bearer.
  const sessionValue = authToken ? createHmac('sha256', authToken).update('codec-session-v1').digest('base64url') : undefined;
  const secureCookie = (ctx: Context) => ctx.secure;

  const cors = async (ctx: Context, next: Next) => {
    const origin = ctx.get('origin');
    if (origin && corsOrigins.includes(origin)) {
      ctx.set('access-control-allow-origin', origin);
      ctx.set('access-control-allow-credentials', 'true');
      ctx.set('access-control-allow-headers', 'content-type, authorization, x-namespace');
      ctx.set('access-control-allow-methods', 'POST, OPTIONS');
      ctx.set('vary', 'origin');
    }
    await next();
  };

  /** The deprecated static codec token (bearer, or the cookie /codec/login set from it). */
  const legacyAuthenticated = (ctx: Context): boolean => {
    if (!authToken || !sessionValue) return false;
    const bearer = bearerOf(ctx);
    if (bearer !== undefined && constantTimeEqual(bearer, authToken)) return true;
    const cookie = ctx.cookies.get(COOKIE);
    return cookie !== undefined && constantTimeEqual(cookie, sessionValue);
  };

  router.options(['/decode', '/encode'], cors, (ctx) => {
    ctx.status = 204;
  });

  for (const op of ['decode', 'encode'] as const) {
    router.post(`/${op}`, cors, async (ctx) => {
      const legacy = legacyAuthenticated(ctx);
      const principal = legacy ? undefined : ctx.state.principal;
      if (!legacy && !principal) {
        logger.warn({ ip: ctx.ip, requestId: ctx.state.requestId, op }, 'codec request without valid credentials');
        await audit(ctx, {
          actor: { type: 'operator' },
          action: 'auth.denied',
          resource: `codec:${op}`,
          outcome: 'failure',
          reason: ctx.state.authProblem ?? 'missing_credentials',
          details: { op, namespace: ctx.get('x-namespace') || null },
        });
        ctx.set('www-authenticate', 'Bearer realm="switchboard-codec"');
        return sendError(
          ctx,
          401,
          'unauthenticated',
          ctx.state.authProblem === 'invalid_session'
            ? 'the session has ended: sign in again (POST /auth/login)'
            : ctx.state.authProblem === 'invalid_credentials'
              ? 'the credential is not valid'
              : 'an operator credential is required: sign in (POST /auth/login) as an operator, or send Authorization: Bearer <platform API key>',
        );
      }
      if (principal && !can(principal, 'payloads.decode')) {
        logger.warn({ requestId: ctx.state.requestId, op, principal: `${principal.kind}:${principal.id}` }, 'codec request denied');
        await audit(ctx, {
          actor: auditActorOf(principal),
          action: 'auth.denied',
          resource: `codec:${op}`,
          outcome: 'failure',
          reason: 'permission_denied',
          details: { op, permission: 'payloads.decode', role: principal.role },
        });
        return sendError(ctx, 403, 'forbidden', `the role ${principal.role} does not have the permission payloads.decode (Temporal payloads are decoded by platform operators only)`);
      }
      const raw = await readBodyOr413(ctx, MAX_CODEC_BODY_BYTES, 'codec body');
      if (!raw) return;
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        return sendError(ctx, 400, 'invalid_payloads', 'body is not valid JSON');
      }
      const parsed = payloadsSchema.safeParse(json);
      if (!parsed.success) {
        const where = parsed.error.issues.map((i) => i.path.join('.') || '(root)').slice(0, 3).join(', ');
        return sendError(ctx, 400, 'invalid_payloads', `body must be {"payloads":[{"metadata":{…base64},"data":base64}]}; wrong at: ${where}`);
      }
      const body = parsed.data;
      const payloads = body.payloads.map((p) => ({
        metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
        data: Buffer.from(p.data ?? '', 'base64'),
      }));
      let result;
      try {
        result = op === 'decode' ? await codec.decode(payloads) : await codec.encode(payloads);
      } catch (err) {
        return sendError(ctx, 422, 'codec_failed', `payloads could not be ${op}d: ${(err as Error).name}`);
      }
      logger.info({ requestId: ctx.state.requestId, op, payloads: payloads.length, namespace: ctx.get('x-namespace') || undefined }, 'codec request');
      await audit(ctx, {
        actor: principal ? auditActorOf(principal) : { type: 'operator', id: credentialKind(ctx) },
        action: op === 'decode' ? 'codec.decode' : 'codec.encode',
        resource: `codec:${op}`,
        outcome: 'success',
        details: { payloads: payloads.length, namespace: ctx.get('x-namespace') || null },
      });
      ctx.body = {
        payloads: result.map((p) => ({
          metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
          data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
        })),
      };
    });
  }

  // A tiny form so a browser (the Temporal UI) can hold the credential as an httpOnly cookie.
  router.get('/login', (ctx) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Codec sign-in</title>
<body style="font-family:system-ui;max-width:32rem;margin:3rem auto"><h1>Temporal payload decoding</h1>
<p>Operators: enter the codec token to let the Temporal UI in this browser decode payloads.</p>
<form method="post" action="/codec/login"><label for="token">Codec token</label><br>
<input id="token" name="token" type="password" autocomplete="off" required style="width:100%"><br><br><button type="submit">Sign in</button></form></body></html>`;
  });

  router.post('/login', async (ctx) => {
    const raw = await readRawBody(ctx, 4096).catch(() => Buffer.alloc(0));
    const token = new URLSearchParams(raw.toString('utf8')).get('token') ?? '';
    if (!authToken || !sessionValue || !constantTimeEqual(token, authToken)) {
      logger.warn({ ip: ctx.ip, requestId: ctx.state.requestId }, 'codec login rejected');
      await audit(ctx, { actor: { type: 'operator' }, action: 'auth.denied', resource: 'codec:login', outcome: 'failure', reason: authToken ? 'wrong_token' : 'codec_disabled' });
      return sendError(ctx, 401, 'unauthenticated', 'wrong codec token');
    }
    await audit(ctx, { actor: { type: 'operator', id: 'codec-session' }, action: 'auth.login', resource: 'codec:login', outcome: 'success' });
    ctx.cookies.set(COOKIE, sessionValue, { httpOnly: true, sameSite: 'lax', secure: secureCookie(ctx), path: '/codec', maxAge: 12 * 3600_000 });
    ctx.type = 'text/plain';
    ctx.body = 'Signed in. In the Temporal UI, open the codec server settings and enable "Include cross-origin credentials".';
  });

  return router;
}
