import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import { platformTenantIds, withPlatform, withScope, withTenant, type Queryable } from '../db/tenant-scope';
import type { Principal, Role } from './permissions';

/**
 * API keys for machine access: `sb_<prefix>_<secret>`, shown once at creation. The 12-character
 * prefix is public (it finds the row and names the key in lists and audit events); the database
 * stores SHA-256 of the whole key — the secret has 256 random bits, so a fast hash is enough (a
 * slow one would only make every API call slower). A tenant key carries one tenant role; a
 * platform key (no tenant) acts as an operator.
 */

export class ApiKeyError extends Error {
  override name = 'ApiKeyError';
}

const PREFIX_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const KEY = /^sb_([0-9a-z]{12})_([A-Za-z0-9_-]{43})$/;
/** last_used_at is written at most this often per key. */
const TOUCH_EVERY_MS = 60_000;

export const looksLikeApiKey = (value: string): boolean => value.startsWith('sb_');
const hashKey = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

export interface CreatedApiKey {
  id: string;
  /** The key itself: returned once, never stored. */
  key: string;
  prefix: string;
  tenantId: string | null;
  role: Role;
  name: string;
  createdAt: Date;
}

/** Validates the request and makes the key (nothing stored yet). */
function newKey(input: { tenantId: string | null; role: Role; name: string }): { key: string; prefix: string; name: string } {
  if ((input.tenantId === null) !== (input.role === 'operator')) {
    throw new ApiKeyError(input.tenantId === null ? 'a platform key (no tenant) must have the role operator' : 'a tenant key must have a tenant role (owner, admin, developer or viewer), not operator');
  }
  const name = input.name.trim();
  if (name.length < 1 || name.length > 100) throw new ApiKeyError('the key name must be 1–100 characters');
  const prefix = Array.from({ length: 12 }, () => PREFIX_ALPHABET[randomInt(PREFIX_ALPHABET.length)]).join('');
  return { key: `sb_${prefix}_${randomBytes(32).toString('base64url')}`, prefix, name };
}

/** Stores a new key in the caller's scope (the key's tenant, or the platform for a platform key). */
export async function createApiKeyIn(tx: Queryable, input: { tenantId: string | null; role: Role; name: string; createdBy: string }): Promise<CreatedApiKey> {
  const { key, prefix, name } = newKey(input);
  try {
    const { rows } = await tx.query<{ id: string; created_at: Date }>(
      'INSERT INTO api_keys (tenant_id, role, name, prefix, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at',
      [input.tenantId, input.role, name, prefix, hashKey(key), input.createdBy.slice(0, 200)],
    );
    return { id: rows[0]!.id, key, prefix, tenantId: input.tenantId, role: input.role, name, createdAt: rows[0]!.created_at };
  } catch (err) {
    if ((err as { code?: string }).code === '23503') throw new ApiKeyError(`no tenant ${input.tenantId}`);
    throw err;
  }
}

export async function createApiKey(pool: Pool, input: { tenantId: string | null; role: Role; name: string; createdBy: string }): Promise<CreatedApiKey> {
  newKey(input); // refuses a bad role/name before a transaction (and a tenant scope) is opened
  return withScope(pool, input.tenantId, (tx) => createApiKeyIn(tx, input));
}

/**
 * The principal an API key stands for, or undefined when it is malformed, unknown or revoked.
 * Found by its public prefix through the allow-listed `auth_find_api_key()` (no tenant is known
 * yet); the secret's hash is compared here in constant time; the last-use touch is written in the
 * key's own scope.
 */
export async function resolveApiKey(pool: Pool, key: string): Promise<Principal | undefined> {
  const m = KEY.exec(key);
  if (!m) return undefined;
  const { rows } = await pool.query<{ id: string | null; tenant_id: string | null; role: Role; secret_hash: Buffer | null; stale: boolean }>(
    'SELECT id, tenant_id, role, secret_hash, stale FROM auth_find_api_key($1, $2)',
    [m[1], TOUCH_EVERY_MS],
  );
  const r = rows[0];
  // A non-set SQL function answers one all-NULL row when nothing matched.
  if (!r?.id || !r.secret_hash || !timingSafeEqual(r.secret_hash, hashKey(key))) return undefined;
  if (r.stale) await withScope(pool, r.tenant_id, (tx) => tx.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [r.id]));
  return { kind: 'api_key', id: r.id, role: r.role, tenantId: r.tenant_id, credential: 'api_key', apiKeyId: r.id };
}

/** Revokes a key of the caller's scope; undefined when the scope has no key with this id. */
export async function revokeApiKeyIn(tx: Queryable, id: string): Promise<{ revoked: boolean; tenantId: string | null } | undefined> {
  const { rows } = await tx.query<{ tenant_id: string | null; was_revoked: boolean }>(
    `UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())
       FROM api_keys old WHERE k.id = $1 AND old.id = k.id
     RETURNING k.tenant_id, old.revoked_at IS NOT NULL AS was_revoked`,
    [id],
  );
  const r = rows[0];
  return r ? { revoked: !r.was_revoked, tenantId: r.tenant_id } : undefined;
}

/**
 * Revokes a key. With its tenant (null: a platform key) in that scope; without (an operator's
 * `api-keys:revoke --id`), the platform's keys are tried, then each tenant's in its own scope.
 */
export async function revokeApiKey(pool: Pool, id: string, tenantId?: string | null): Promise<{ revoked: boolean; tenantId: string | null } | undefined> {
  if (tenantId !== undefined) return withScope(pool, tenantId, (tx) => revokeApiKeyIn(tx, id));
  const platform = await withPlatform(pool, (tx) => revokeApiKeyIn(tx, id));
  if (platform) return platform;
  for (const t of await platformTenantIds(pool)) {
    const result = await withTenant(pool, t, (tx) => revokeApiKeyIn(tx, id));
    if (result) return result;
  }
  return undefined;
}

export interface ApiKeyInfo {
  id: string;
  prefix: string;
  tenantId: string | null;
  role: Role;
  name: string;
  createdBy: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const INFO_COLUMNS = `id, prefix, tenant_id AS "tenantId", role, name, created_by AS "createdBy", created_at AS "createdAt",
  last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"`;

/** The caller's scope's keys (a tenant's, or the platform's), oldest first, without any secret. */
export async function listApiKeysIn(tx: Queryable, opts: { includeRevoked?: boolean } = {}): Promise<ApiKeyInfo[]> {
  const { rows } = await tx.query<ApiKeyInfo>(`SELECT ${INFO_COLUMNS} FROM api_keys WHERE ($1::boolean OR revoked_at IS NULL) ORDER BY created_at, id`, [
    opts.includeRevoked ?? true,
  ]);
  return rows;
}

/** One key of the caller's scope, without its secret; `forUpdate` locks it for the rest of the transaction. */
export async function getApiKeyIn(tx: Queryable, id: string, opts: { forUpdate?: boolean } = {}): Promise<ApiKeyInfo | undefined> {
  const { rows } = await tx.query<ApiKeyInfo>(`SELECT ${INFO_COLUMNS} FROM api_keys WHERE id = $1${opts.forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0];
}

/** A tenant's keys (null: the platform keys), without any secret. */
export async function listApiKeys(pool: Pool, tenantId: string | null): Promise<ApiKeyInfo[]> {
  return withScope(pool, tenantId, (tx) => listApiKeysIn(tx));
}
