import type { Cursor } from '../api/paging';
import { cursorTimeSql } from '../api/paging';
import type { TenantRole } from '../auth/permissions';
import type { Queryable } from './tenant-scope';

/**
 * A tenant's users as its admins manage them (list, re-role, disable), inside the caller's tenant
 * scope. The rule the database state must keep: a tenant always has at least one active owner.
 */

export interface TenantUserRow {
  id: string;
  email: string;
  role: TenantRole;
  disabledAt: Date | null;
  createdAt: Date;
  /** Sessions neither revoked nor past their absolute end (an idle one may still count). */
  openSessions: number;
  cursor_at: string;
}

export class LastOwnerError extends Error {
  override name = 'LastOwnerError';
  constructor() {
    super('the tenant must keep at least one active owner: make another user owner first');
  }
}

const COLUMNS = `u.id, u.email, u.role, u.disabled_at AS "disabledAt", u.created_at AS "createdAt",
  (SELECT count(*)::int FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()) AS "openSessions",
  ${cursorTimeSql('u.created_at')} AS cursor_at`;

/** Newest first; `limit + 1` rows (see src/api/paging.ts). */
export async function listTenantUsers(tx: Queryable, opts: { limit: number; before?: Cursor }): Promise<TenantUserRow[]> {
  const { rows } = await tx.query<TenantUserRow>(
    `SELECT ${COLUMNS} FROM tenant_users u
      WHERE ($1::timestamptz IS NULL OR (u.created_at, u.id) < ($1::timestamptz, $2::uuid))
      ORDER BY u.created_at DESC, u.id DESC
      LIMIT $3`,
    [opts.before?.at ?? null, opts.before?.key ?? null, opts.limit + 1],
  );
  return rows;
}

export async function getTenantUser(tx: Queryable, id: string): Promise<TenantUserRow | null> {
  const { rows } = await tx.query<TenantUserRow>(`SELECT ${COLUMNS} FROM tenant_users u WHERE u.id = $1`, [id]);
  return rows[0] ?? null;
}

/**
 * Changes a user's role and/or disables or re-enables it; null when the scope has no such user.
 * Taking the last active owner away (demoting or disabling it) throws LastOwnerError. The tenant's
 * active owners are locked first, so two admins demoting the last two owners at once cannot both
 * succeed: the second sees the first's change once it waited for the lock.
 */
export async function updateTenantUser(tx: Queryable, id: string, patch: { role?: TenantRole; disabled?: boolean }): Promise<TenantUserRow | null> {
  const owners = await tx.query<{ id: string }>(`SELECT id FROM tenant_users WHERE role = 'owner' AND disabled_at IS NULL ORDER BY id FOR UPDATE`);
  const current = await tx.query<{ role: TenantRole; disabled: boolean }>('SELECT role, disabled_at IS NOT NULL AS disabled FROM tenant_users WHERE id = $1 FOR UPDATE', [id]);
  const before = current.rows[0];
  if (!before) return null;
  const role = patch.role ?? before.role;
  const disabled = patch.disabled ?? before.disabled;
  const wasActiveOwner = before.role === 'owner' && !before.disabled;
  const staysActiveOwner = role === 'owner' && !disabled;
  if (wasActiveOwner && !staysActiveOwner && owners.rows.every((o) => o.id === id)) throw new LastOwnerError();
  await tx.query(
    `UPDATE tenant_users SET role = $2,
            disabled_at = CASE WHEN $3::boolean THEN coalesce(disabled_at, now()) ELSE NULL END
      WHERE id = $1`,
    [id, role, disabled],
  );
  return getTenantUser(tx, id);
}
