import type { Pool, PoolClient } from 'pg';
import { z } from 'zod';
import { platformTenantIds, withTenant, type Queryable } from '../db/tenant-scope';
import { checkPasswordPolicy, hashPassword } from './passwords';
import { TENANT_ROLES, type TenantRole } from './permissions';

/**
 * Accounts: platform operators and tenant users (migrations/0007_people.sql). One email is one
 * account across both tables, so the login form needs nothing but an email and a password.
 *
 * `operators` has no row-level security (operators belong to no tenant); `tenant_users` does, so a
 * tenant user is written inside its tenant's scope, and found by email before any tenant is known
 * through the allow-listed `auth_find_tenant_user()` (migrations/0008_row_level_security.sql).
 */

export class AccountError extends Error {
  override name = 'AccountError';
}

export const emailSchema = z
  .string()
  .trim()
  .max(254, 'must be at most 254 characters')
  .pipe(z.email('must be an email address'));

export const tenantRoleSchema = z.enum(TENANT_ROLES, `must be one of ${TENANT_ROLES.join(', ')}`);

export interface Account {
  kind: 'operator' | 'tenant_user';
  id: string;
  email: string;
  tenantId: string | null;
  role: TenantRole | 'operator';
  passwordHash: string;
  disabled: boolean;
}

interface TenantUserByEmail {
  id: string | null;
  tenant_id: string;
  email: string;
  role: TenantRole;
  password_hash: string;
  disabled: boolean;
}

/** The tenant user with this email, whatever its tenant (the function answers one all-NULL row when there is none). */
async function tenantUserByEmail(db: Queryable, email: string): Promise<TenantUserByEmail | undefined> {
  const { rows } = await db.query<TenantUserByEmail>('SELECT id, tenant_id, email, role, password_hash, disabled FROM auth_find_tenant_user($1)', [email]);
  return rows[0]?.id ? rows[0] : undefined;
}

async function emailTaken(db: Queryable, email: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM operators WHERE lower(email) = lower($1)', [email]);
  return (rowCount ?? 0) > 0 || (await tenantUserByEmail(db, email)) !== undefined;
}

const isUniqueViolation = (err: unknown) => (err as { code?: string }).code === '23505';
const duplicate = (email: string) => new AccountError(`an account with the email ${email} already exists`);

export async function createOperator(pool: Pool, input: { email: string; password: string }): Promise<{ id: string; email: string }> {
  const email = emailSchema.parse(input.email);
  checkPasswordPolicy(input.password, email);
  if (await emailTaken(pool, email)) throw duplicate(email);
  const hash = await hashPassword(input.password);
  try {
    const { rows } = await pool.query<{ id: string }>('INSERT INTO operators (email, password_hash) VALUES ($1, $2) RETURNING id', [email, hash]);
    return { id: rows[0]!.id, email };
  } catch (err) {
    if (isUniqueViolation(err)) throw duplicate(email);
    throw err;
  }
}

export interface CreatedTenantUser {
  id: string;
  tenantId: string;
  email: string;
  role: TenantRole;
  createdAt: Date;
}

/**
 * Creates a tenant user inside the tenant's scope. `then` runs in the same transaction after the
 * insert (the admin API appends its audit event there, so the user and its audit row commit together).
 */
export async function createTenantUser(
  pool: Pool,
  input: { tenantId: string; email: string; role: TenantRole; password: string },
  then?: (tx: PoolClient, created: CreatedTenantUser) => Promise<void>,
): Promise<CreatedTenantUser> {
  const email = emailSchema.parse(input.email);
  const role = tenantRoleSchema.parse(input.role);
  checkPasswordPolicy(input.password, email);
  if (await emailTaken(pool, email)) throw duplicate(email);
  // Hashed before the transaction opens: scrypt takes ~100 ms and needs no connection.
  const hash = await hashPassword(input.password);
  try {
    return await withTenant(pool, input.tenantId, async (tx) => {
      const { rows } = await tx.query<{ id: string; created_at: Date }>(
        'INSERT INTO tenant_users (tenant_id, email, role, password_hash) VALUES ($1, $2, $3, $4) RETURNING id, created_at',
        [input.tenantId, email, role, hash],
      );
      const created = { id: rows[0]!.id, tenantId: input.tenantId, email, role, createdAt: rows[0]!.created_at };
      if (then) await then(tx, created);
      return created;
    });
  } catch (err) {
    // The unique index spans every tenant (the check above can lose a race against another tenant's insert).
    if (isUniqueViolation(err)) throw duplicate(email);
    if ((err as { code?: string }).code === '23503') throw new AccountError(`no tenant ${input.tenantId}`);
    throw err;
  }
}

/** The account an email signs in to (operators first; the two sets are kept disjoint on creation). */
export async function findAccountByEmail(pool: Pool, email: string): Promise<Account | undefined> {
  const trimmed = email.trim();
  const { rows } = await pool.query<{ id: string; email: string; password_hash: string; disabled: boolean }>(
    'SELECT id, email, password_hash, disabled_at IS NOT NULL AS disabled FROM operators WHERE lower(email) = lower($1)',
    [trimmed],
  );
  const op = rows[0];
  if (op) return { kind: 'operator', id: op.id, email: op.email, tenantId: null, role: 'operator', passwordHash: op.password_hash, disabled: op.disabled };
  const u = await tenantUserByEmail(pool, trimmed);
  if (!u) return undefined;
  return { kind: 'tenant_user', id: u.id!, email: u.email, tenantId: u.tenant_id, role: u.role, passwordHash: u.password_hash, disabled: u.disabled };
}

/** Stores a new hash (a login re-hashing with today's parameters), in the account's scope. */
export async function updatePasswordHash(pool: Pool, account: Pick<Account, 'kind' | 'id' | 'tenantId'>, hash: string): Promise<void> {
  if (account.kind === 'operator') {
    await pool.query('UPDATE operators SET password_hash = $2 WHERE id = $1', [account.id, hash]);
    return;
  }
  await withTenant(pool, account.tenantId!, (tx) => tx.query('UPDATE tenant_users SET password_hash = $2 WHERE id = $1', [account.id, hash]));
}

/**
 * Who an account id belongs to, for operator tools that are given only an id (`sessions:revoke
 * --user`): the operators table, else each tenant's users in that tenant's scope. A walk over every
 * tenant, so for rare operator commands only, never for a request path.
 */
export async function findAccountById(pool: Pool, id: string): Promise<{ kind: 'operator' | 'tenant_user'; id: string; tenantId: string | null } | undefined> {
  const op = await pool.query('SELECT 1 FROM operators WHERE id = $1', [id]);
  if (op.rowCount === 1) return { kind: 'operator', id, tenantId: null };
  for (const tenantId of await platformTenantIds(pool)) {
    const found = await withTenant(pool, tenantId, async (tx) => (await tx.query('SELECT 1 FROM tenant_users WHERE id = $1', [id])).rowCount === 1);
    if (found) return { kind: 'tenant_user', id, tenantId };
  }
  return undefined;
}
