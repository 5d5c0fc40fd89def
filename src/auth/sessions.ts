import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import type { Principal, TenantRole } from './permissions';

/**
 * Server-side browser sessions. The cookie `sb_session` holds 256 random bits; the database holds
 * only their SHA-256, so a leaked table (or backup) signs nobody in. A session ends at the first
 * of: revocation, its absolute lifetime, or the idle limit since it was last seen.
 *
 * CSRF: a synchronizer token bound to the session, derived as HMAC-SHA256(session secret,
 * "sb-csrf-v1"). Only a holder of the httpOnly cookie's value can compute it, the server
 * recomputes it from the cookie on each request (nothing more to store), and it is compared in
 * constant time. Pages and `GET /auth/session` hand it to the browser's code, which sends it as
 * `x-csrf-token` (or the `_csrf` field of a form post).
 */

export const SESSION_COOKIE = 'sb_session';
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FORM_FIELD = '_csrf';

export interface SessionLifetimes {
  idleMs: number;
  absoluteMs: number;
}

/** last_seen_at is written at most this often per session (every request would be a write). */
const TOUCH_EVERY_MS = 60_000;
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export const hashToken = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export function csrfTokenFor(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('sb-csrf-v1').digest('base64url');
}

export function csrfMatches(sessionToken: string, given: string | undefined): boolean {
  if (!given) return false;
  const a = createHash('sha256').update(csrfTokenFor(sessionToken)).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

export type SessionSubject = { kind: 'operator'; operatorId: string } | { kind: 'tenant_user'; userId: string; tenantId: string };

export interface CreatedSession {
  id: string;
  /** The cookie's value: returned once, never stored. */
  token: string;
  csrfToken: string;
  expiresAt: Date;
}

export async function createSession(pool: Pool, subject: SessionSubject, opts: { lifetimes: SessionLifetimes; ip?: string; userAgent?: string }): Promise<CreatedSession> {
  const token = randomBytes(32).toString('base64url');
  const { rows } = await pool.query<{ id: string; expires_at: Date }>(
    `INSERT INTO sessions (token_hash, principal, operator_id, user_id, tenant_id, expires_at, ip, user_agent)
     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::double precision / 1000), $7, $8)
     RETURNING id, expires_at`,
    [
      hashToken(token),
      subject.kind,
      subject.kind === 'operator' ? subject.operatorId : null,
      subject.kind === 'tenant_user' ? subject.userId : null,
      subject.kind === 'tenant_user' ? subject.tenantId : null,
      opts.lifetimes.absoluteMs,
      opts.ip?.slice(0, 64) ?? null,
      opts.userAgent?.slice(0, 512) || null,
    ],
  );
  return { id: rows[0]!.id, token, csrfToken: csrfTokenFor(token), expiresAt: rows[0]!.expires_at };
}

/**
 * The principal behind a session cookie, or undefined when the session is unknown, revoked,
 * expired, idle too long, or its account is disabled. The role is read from the account on every
 * request: a changed role or a disabled account takes effect at once.
 */
export async function resolveSession(pool: Pool, token: string, lifetimes: SessionLifetimes): Promise<Principal | undefined> {
  if (!TOKEN.test(token)) return undefined;
  const { rows } = await pool.query<{ id: string; principal: 'operator' | 'tenant_user'; operator_id: string | null; user_id: string | null; tenant_id: string | null; role: string | null; stale: boolean }>(
    `SELECT s.id, s.principal, s.operator_id, s.user_id, s.tenant_id, u.role,
            s.last_seen_at < now() - make_interval(secs => $3::double precision / 1000) AS stale
       FROM sessions s
       LEFT JOIN operators o ON o.id = s.operator_id
       LEFT JOIN tenant_users u ON u.id = s.user_id
      WHERE s.token_hash = $1
        AND s.revoked_at IS NULL
        AND s.expires_at > now()
        AND s.last_seen_at > now() - make_interval(secs => $2::double precision / 1000)
        AND (o.id IS NOT NULL AND o.disabled_at IS NULL OR u.id IS NOT NULL AND u.disabled_at IS NULL AND u.tenant_id = s.tenant_id)`,
    [hashToken(token), lifetimes.idleMs, TOUCH_EVERY_MS],
  );
  const r = rows[0];
  if (!r) return undefined;
  if (r.stale) await pool.query('UPDATE sessions SET last_seen_at = now() WHERE id = $1', [r.id]);
  if (r.principal === 'operator') return { kind: 'operator', id: r.operator_id!, role: 'operator', tenantId: null, credential: 'session', sessionId: r.id };
  return { kind: 'tenant_user', id: r.user_id!, role: r.role as TenantRole, tenantId: r.tenant_id!, credential: 'session', sessionId: r.id };
}

export async function revokeSession(pool: Pool, sessionId: string, reason: string): Promise<boolean> {
  const { rowCount } = await pool.query('UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL', [sessionId, reason.slice(0, 100)]);
  return rowCount === 1;
}

/** Ends every open session of a tenant user or an operator (the id is looked up in both). */
export async function revokeSessionsOf(pool: Pool, accountId: string, reason: string): Promise<number> {
  const { rowCount } = await pool.query(
    'UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE (user_id = $1 OR operator_id = $1) AND revoked_at IS NULL',
    [accountId, reason.slice(0, 100)],
  );
  return rowCount ?? 0;
}

/** Removes sessions that ended more than `olderThanMs` ago (housekeeping; nothing reads them). */
export async function purgeEndedSessions(pool: Pool, olderThanMs = 30 * 86_400_000): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM sessions WHERE coalesce(revoked_at, expires_at) < now() - make_interval(secs => $1::double precision / 1000)`,
    [olderThanMs],
  );
  return rowCount ?? 0;
}
