import type { Pool } from 'pg';
import { z } from 'zod';
import { checkPasswordPolicy, hashPassword } from './passwords';
import { TENANT_ROLES, type TenantRole } from './permissions';

/**
 * Accounts: platform operators and tenant users (migrations/0007_people.sql). One email is one
 * account across both tables, so the login form needs nothing but an email and a password.
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

async function emailTaken(pool: Pool, email: string): Promise<boolean> {
  const { rowCount } = await pool.query(
    'SELECT 1 FROM operators WHERE lower(email) = lower($1) UNION ALL SELECT 1 FROM tenant_users WHERE lower(email) = lower($1)',
    [email],
  );
  return (rowCount ?? 0) > 0;
}

const isUniqueViolation = (err: unknown) => (err as { code?: string }).code === '23505';

export async function createOperator(pool: Pool, input: { email: string; password: string }): Promise<{ id: string; email: string }> {
  const email = emailSchema.parse(input.email);
  checkPasswordPolicy(input.password, email);
  if (await emailTaken(pool, email)) throw new AccountError(`an account with the email ${email} already exists`);
  const hash = await hashPassword(input.password);
  try {
    const { rows } = await pool.query<{ id: string }>('INSERT INTO operators (email, password_hash) VALUES ($1, $2) RETURNING id', [email, hash]);
    return { id: rows[0]!.id, email };
  } catch (err) {
    if (isUniqueViolation(err)) throw new AccountError(`an account with the email ${email} already exists`);
    throw err;
  }
}

export async function createTenantUser(pool: Pool, input: { tenantId: string; email: string; role: TenantRole; password: string }): Promise<{ id: string; tenantId: string; email: string; role: TenantRole }> {
  const email = emailSchema.parse(input.email);
  const role = tenantRoleSchema.parse(input.role);
  checkPasswordPolicy(input.password, email);
  if (await emailTaken(pool, email)) throw new AccountError(`an account with the email ${email} already exists`);
  const hash = await hashPassword(input.password);
  try {
    const { rows } = await pool.query<{ id: string }>(
      'INSERT INTO tenant_users (tenant_id, email, role, password_hash) VALUES ($1, $2, $3, $4) RETURNING id',
      [input.tenantId, email, role, hash],
    );
    return { id: rows[0]!.id, tenantId: input.tenantId, email, role };
  } catch (err) {
    if (isUniqueViolation(err)) throw new AccountError(`an account with the email ${email} already exists`);
    if ((err as { code?: string }).code === '23503') throw new AccountError(`no tenant ${input.tenantId}`);
    throw err;
  }
}

/** The account an email signs in to (operators first; the two sets are kept disjoint on creation). */
export async function findAccountByEmail(pool: Pool, email: string): Promise<Account | undefined> {
  const { rows } = await pool.query<{ kind: 'operator' | 'tenant_user'; id: string; email: string; tenant_id: string | null; role: string; password_hash: string; disabled: boolean }>(
    `SELECT 'operator' AS kind, id, email, NULL::uuid AS tenant_id, 'operator' AS role, password_hash, disabled_at IS NOT NULL AS disabled
       FROM operators WHERE lower(email) = lower($1)
     UNION ALL
     SELECT 'tenant_user', id, email, tenant_id, role, password_hash, disabled_at IS NOT NULL
       FROM tenant_users WHERE lower(email) = lower($1)
     ORDER BY 1 LIMIT 1`,
    [email.trim()],
  );
  const r = rows[0];
  if (!r) return undefined;
  return { kind: r.kind, id: r.id, email: r.email, tenantId: r.tenant_id, role: r.role as Account['role'], passwordHash: r.password_hash, disabled: r.disabled };
}

/** Stores a new hash (a login re-hashing with today's parameters). */
export async function updatePasswordHash(pool: Pool, account: Pick<Account, 'kind' | 'id'>, hash: string): Promise<void> {
  const table = account.kind === 'operator' ? 'operators' : 'tenant_users';
  await pool.query(`UPDATE ${table} SET password_hash = $2 WHERE id = $1`, [account.id, hash]);
}
