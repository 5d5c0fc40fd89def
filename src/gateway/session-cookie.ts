import type { Context } from 'koa';
import { SESSION_COOKIE, type CreatedSession } from '../auth/sessions';

// httpOnly, SameSite=Lax (the OAuth callback is a top-level GET from Meta and must carry it), Secure behind TLS.
const ATTRIBUTES = { httpOnly: true, sameSite: 'lax', path: '/', overwrite: true } as const;

export function setSessionCookie(ctx: Context, session: Pick<CreatedSession, 'token' | 'expiresAt'>): void {
  ctx.cookies.set(SESSION_COOKIE, session.token, { ...ATTRIBUTES, secure: ctx.secure, expires: session.expiresAt });
}

export function clearSessionCookie(ctx: Context): void {
  ctx.cookies.set(SESSION_COOKIE, null, { ...ATTRIBUTES, secure: ctx.secure });
}
