import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import { platformTenantIds, withPlatform, withScope, withTenant, type Queryable } from '../db/tenant-scope';
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
  const tenantId = subject.kind === 'tenant_user' ? subject.tenantId : null;
  const { rows } = await withScope(pool, tenantId, (tx) =>
    tx.query<{ id: string; expires_at: Date }>(
      `INSERT INTO sessions (token_hash, principal, operator_id, user_id, tenant_id, expires_at, ip, user_agent)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::double precision / 1000), $7, $8)
       RETURNING id, expires_at`,
      [
        hashToken(token),
        subject.kind,
        subject.kind === 'operator' ? subject.operatorId : null,
        subject.kind === 'tenant_user' ? subject.userId : null,
        tenantId,
        opts.lifetimes.absoluteMs,
        opts.ip?.slice(0, 64) ?? null,
        opts.userAgent?.slice(0, 512) || null,
      ],
    ),
  );
  return { id: rows[0]!.id, token, csrfToken: csrfTokenFor(token), expiresAt: rows[0]!.expires_at };
}

/**
 * The principal behind a session cookie, or undefined when the session is unknown, revoked,
 * expired, idle too long, or its account is disabled. The role is read from the account on every
 * request: a changed role or a disabled account takes effect at once. The lookup runs before any
 * tenant is known, through the allow-listed `auth_resolve_session()` (knowing the hash means
 * holding the cookie); the last-seen touch is written in the session's own scope.
 */
export async function resolveSession(pool: Pool, token: string, lifetimes: SessionLifetimes): Promise<Principal | undefined> {
  if (!TOKEN.test(token)) return undefined;
  const { rows } = await pool.query<{ id: string | null; principal: 'operator' | 'tenant_user'; operator_id: string | null; user_id: string | null; tenant_id: string | null; role: string | null; stale: boolean }>(
    'SELECT id, principal, operator_id, user_id, tenant_id, role, stale FROM auth_resolve_session($1, $2, $3)',
    [hashToken(token), lifetimes.idleMs, TOUCH_EVERY_MS],
  );
  const r = rows[0];
  // A non-set SQL function answers one all-NULL row when nothing matched.
  if (!r?.id) return undefined;
  if (r.stale) await withScope(pool, r.tenant_id, (tx) => tx.query('UPDATE sessions SET last_seen_at = now() WHERE id = $1', [r.id]));
  if (r.principal === 'operator') return { kind: 'operator', id: r.operator_id!, role: 'operator', tenantId: null, credential: 'session', sessionId: r.id };
  return { kind: 'tenant_user', id: r.user_id!, role: r.role as TenantRole, tenantId: r.tenant_id!, credential: 'session', sessionId: r.id };
}

/** Revokes one session in the caller's scope (a tenant's, or the platform's for operator sessions). */
export async function revokeSessionIn(tx: Queryable, sessionId: string, reason: string): Promise<boolean> {
  const { rowCount } = await tx.query('UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL', [sessionId, reason.slice(0, 100)]);
  return rowCount === 1;
}

/** Revokes one session of `tenantId` (null: an operator's session). */
export async function revokeSession(pool: Pool, tenantId: string | null, sessionId: string, reason: string): Promise<boolean> {
  return withScope(pool, tenantId, (tx) => revokeSessionIn(tx, sessionId, reason));
}

/** Ends every open session of an account, in the caller's scope (the account's tenant, or the platform for an operator). */
export async function revokeSessionsOfIn(tx: Queryable, accountId: string, reason: string): Promise<number> {
  const { rowCount } = await tx.query(
    'UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE (user_id = $1 OR operator_id = $1) AND revoked_at IS NULL',
    [accountId, reason.slice(0, 100)],
  );
  return rowCount ?? 0;
}

/** Ends every open session of a tenant user of `tenantId`, or of an operator (`tenantId` null). */
export async function revokeSessionsOf(pool: Pool, tenantId: string | null, accountId: string, reason: string): Promise<number> {
  return withScope(pool, tenantId, (tx) => revokeSessionsOfIn(tx, accountId, reason));
}

export interface SessionInfo {
  id: string;
  principal: 'operator' | 'tenant_user';
  accountId: string;
  tenantId: string | null;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
  ip: string | null;
  userAgent: string | null;
}

/**
 * Sessions of the caller's scope, newest first (never the token hash). `open` leaves out revoked
 * and expired ones; `before` pages by (creation time, id) — see src/api/paging.ts.
 */
export async function listSessionsIn(
  tx: Queryable,
  opts: { open?: boolean; userId?: string; sessionId?: string; limit: number; before?: { at: string; key?: string } },
): Promise<Array<SessionInfo & { cursor_at: string }>> {
  const { rows } = await tx.query<SessionInfo & { cursor_at: string }>(
    `SELECT id, principal, coalesce(user_id, operator_id) AS "accountId", tenant_id AS "tenantId", created_at AS "createdAt",
            last_seen_at AS "lastSeenAt", expires_at AS "expiresAt", revoked_at AS "revokedAt", revoked_reason AS "revokedReason",
            ip, user_agent AS "userAgent", to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at
       FROM sessions
      WHERE ($1::boolean IS NOT TRUE OR (revoked_at IS NULL AND expires_at > now()))
        AND ($2::uuid IS NULL OR user_id = $2 OR operator_id = $2)
        AND ($3::uuid IS NULL OR id = $3)
        AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))
      ORDER BY created_at DESC, id DESC
      LIMIT $6`,
    [opts.open ?? false, opts.userId ?? null, opts.sessionId ?? null, opts.before?.at ?? null, opts.before?.key ?? null, opts.limit],
  );
  return rows;
}

/**
 * Removes sessions that ended more than `olderThanMs` ago (housekeeping; nothing reads them):
 * the platform's, then each tenant's, each in its own scope.
 */
export async function purgeEndedSessions(pool: Pool, olderThanMs = 30 * 86_400_000): Promise<number> {
  const purge = (tx: Queryable) =>
    tx.query(`DELETE FROM sessions WHERE coalesce(revoked_at, expires_at) < now() - make_interval(secs => $1::double precision / 1000)`, [olderThanMs]);
  let purged = (await withPlatform(pool, purge)).rowCount ?? 0;
  for (const tenantId of await platformTenantIds(pool)) purged += (await withTenant(pool, tenantId, purge)).rowCount ?? 0;
  return purged;
}
