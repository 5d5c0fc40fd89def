import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
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

export async function createApiKey(pool: Pool, input: { tenantId: string | null; role: Role; name: string; createdBy: string }): Promise<CreatedApiKey> {
  if ((input.tenantId === null) !== (input.role === 'operator')) {
    throw new ApiKeyError(input.tenantId === null ? 'a platform key (no tenant) must have the role operator' : 'a tenant key must have a tenant role (owner, admin, developer or viewer), not operator');
  }
  const name = input.name.trim();
  if (name.length < 1 || name.length > 100) throw new ApiKeyError('the key name must be 1–100 characters');
  const prefix = Array.from({ length: 12 }, () => PREFIX_ALPHABET[randomInt(PREFIX_ALPHABET.length)]).join('');
  const key = `sb_${prefix}_${randomBytes(32).toString('base64url')}`;
  try {
    const { rows } = await pool.query<{ id: string; created_at: Date }>(
      'INSERT INTO api_keys (tenant_id, role, name, prefix, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at',
      [input.tenantId, input.role, name, prefix, hashKey(key), input.createdBy.slice(0, 200)],
    );
    return { id: rows[0]!.id, key, prefix, tenantId: input.tenantId, role: input.role, name, createdAt: rows[0]!.created_at };
  } catch (err) {
    if ((err as { code?: string }).code === '23503') throw new ApiKeyError(`no tenant ${input.tenantId}`);
    throw err;
  }
}

/** The principal an API key stands for, or undefined when it is malformed, unknown or revoked. */
export async function resolveApiKey(pool: Pool, key: string): Promise<Principal | undefined> {
  const m = KEY.exec(key);
  if (!m) return undefined;
  const { rows } = await pool.query<{ id: string; tenant_id: string | null; role: Role; secret_hash: Buffer; stale: boolean }>(
    `SELECT id, tenant_id, role, secret_hash,
            (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2::double precision / 1000)) AS stale
       FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL`,
    [m[1], TOUCH_EVERY_MS],
  );
  const r = rows[0];
  if (!r || !timingSafeEqual(r.secret_hash, hashKey(key))) return undefined;
  if (r.stale) await pool.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [r.id]);
  return { kind: 'api_key', id: r.id, role: r.role, tenantId: r.tenant_id, credential: 'api_key', apiKeyId: r.id };
}

export async function revokeApiKey(pool: Pool, id: string): Promise<{ revoked: boolean; tenantId: string | null } | undefined> {
  const { rows } = await pool.query<{ tenant_id: string | null; was_revoked: boolean }>(
    `UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())
       FROM api_keys old WHERE k.id = $1 AND old.id = k.id
     RETURNING k.tenant_id, old.revoked_at IS NOT NULL AS was_revoked`,
    [id],
  );
  const r = rows[0];
  return r ? { revoked: !r.was_revoked, tenantId: r.tenant_id } : undefined;
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

/** A tenant's keys (null: the platform keys), without any secret. */
export async function listApiKeys(pool: Pool, tenantId: string | null): Promise<ApiKeyInfo[]> {
  const { rows } = await pool.query<ApiKeyInfo>(
    `SELECT id, prefix, tenant_id AS "tenantId", role, name, created_by AS "createdBy", created_at AS "createdAt",
            last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
       FROM api_keys WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY created_at`,
    [tenantId],
  );
  return rows;
}
