import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import { DecryptionError, gcmOpen, gcmSeal, NONCE_BYTES, TAG_BYTES } from './aead';
import { withTenant, type Queryable } from '../db/tenant-scope';
import type { KeyProvider } from './key-provider';

/**
 * Envelope encryption for tenant secrets (channel tokens, AI keys).
 *
 *   master key (KeyProvider, versioned) ─wraps→ tenant data key (random 256-bit, versioned,
 *   stored wrapped in tenant_data_keys) ─encrypts→ secret (AES-256-GCM, format below)
 *
 * Secret format v2: 0x02 ‖ data key version (u32 BE) ‖ nonce (12) ‖ ciphertext ‖ tag (16).
 * AAD: tenant id, table, column, row id and data key version, so a ciphertext copied to another
 * row, column or tenant, or relabelled with another key version, fails to decrypt.
 * Wrapped data key: 0x01 ‖ master key version (u32 BE) ‖ provider output; its AAD binds tenant id,
 * data key version and master key version.
 *
 * tenant_data_keys has row-level security: every read and write here is for one tenant, either on
 * the client of the caller's `withTenant` transaction or in a `withTenant` of the vault's own.
 */

export const SECRET_FORMAT_V2 = 0x02;
const WRAP_FORMAT_V1 = 0x01;
const HEADER_BYTES = 5;
const SEP = '\x1f';

export type { Queryable };

export interface SecretLocation {
  tenantId: string;
  table: string;
  column: string;
  rowId: string;
}

export interface SealedSecret {
  blob: Buffer;
  /** The tenant data key version that encrypted it (also in the blob's header). */
  keyVersion: number;
}

export class DataKeyMissingError extends DecryptionError {
  constructor(tenantId: string, version: number) {
    super(`data key ${version} of tenant ${tenantId} does not exist (destroyed or never created)`);
    this.name = 'DataKeyMissingError';
  }
}

export function secretAad(loc: SecretLocation, keyVersion: number): Buffer {
  return Buffer.from(['sb-secret-v2', loc.tenantId, loc.table, loc.column, loc.rowId, String(keyVersion)].join(SEP), 'utf8');
}

function wrapAad(tenantId: string, keyVersion: number, masterVersion: number): Buffer {
  return Buffer.from(['sb-dek-v1', tenantId, String(keyVersion), String(masterVersion)].join(SEP), 'utf8');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Reads the data key version from a secret's header without decrypting it. */
export function secretKeyVersion(blob: Buffer): number {
  if (blob.length < HEADER_BYTES + NONCE_BYTES + TAG_BYTES || blob[0] !== SECRET_FORMAT_V2) {
    throw new DecryptionError('unknown secret format');
  }
  return blob.readUInt32BE(1);
}

interface DataKeyRow {
  version: number;
  master_key_version: number;
  wrapped_key: Buffer;
}

interface CacheEntry {
  key: Buffer;
  /** The row's wrapped key it was unwrapped from (or wrapped into). */
  wrapped: Buffer;
  expiresAt: number;
}

export interface VaultOptions {
  /** Unwrapped data keys kept in memory: bounded, and dropped after the TTL. */
  cacheMaxEntries?: number;
  cacheTtlMs?: number;
  now?: () => number;
}

export class SecretVault {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly cacheMax: number;
  private readonly cacheTtlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly pool: Pool,
    readonly keys: KeyProvider,
    opts: VaultOptions = {},
  ) {
    this.cacheMax = opts.cacheMaxEntries ?? 10_000;
    this.cacheTtlMs = opts.cacheTtlMs ?? 5 * 60_000;
    this.now = opts.now ?? Date.now;
  }

  // ---- data keys ------------------------------------------------------------------------------

  private cacheGet(tenantId: string, version: number): CacheEntry | undefined {
    const id = `${tenantId}/${version}`;
    const hit = this.cache.get(id);
    if (!hit) return undefined;
    if (hit.expiresAt <= this.now()) {
      this.cache.delete(id);
      return undefined;
    }
    // Refresh LRU position.
    this.cache.delete(id);
    this.cache.set(id, hit);
    return hit;
  }

  private cachePut(tenantId: string, version: number, key: Buffer, wrapped: Buffer): void {
    const id = `${tenantId}/${version}`;
    this.cache.delete(id);
    this.cache.set(id, { key, wrapped, expiresAt: this.now() + this.cacheTtlMs });
    while (this.cache.size > this.cacheMax) this.cache.delete(this.cache.keys().next().value as string);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /** Forgets a tenant's unwrapped keys (after crypto-shredding or rotation). */
  evictTenant(tenantId: string): void {
    for (const id of [...this.cache.keys()]) if (id.startsWith(`${tenantId}/`)) this.cache.delete(id);
  }

  private async unwrapRow(tenantId: string, row: DataKeyRow): Promise<Buffer> {
    const blob = row.wrapped_key;
    if (blob[0] !== WRAP_FORMAT_V1 || blob.readUInt32BE(1) !== row.master_key_version) {
      throw new DecryptionError('wrapped data key header does not match its row');
    }
    return this.keys.unwrap(row.master_key_version, blob.subarray(HEADER_BYTES), wrapAad(tenantId, row.version, row.master_key_version));
  }

  private async wrapKey(tenantId: string, version: number, key: Buffer, masterVersion = this.keys.activeVersion): Promise<Buffer> {
    const wrapped = await this.keys.wrap(masterVersion, key, wrapAad(tenantId, version, masterVersion));
    return Buffer.concat([Buffer.from([WRAP_FORMAT_V1]), u32(masterVersion), wrapped]);
  }

  /**
   * Runs `fn` on the caller's client when it passed one (its transaction, its tenant scope), else
   * in a transaction of our own scoped to the tenant. The pool itself counts as "none passed": a
   * bare pool query has no tenant scope and row-level security would refuse it.
   */
  private inTenant<T>(tenantId: string, db: Queryable | undefined, fn: (db: Queryable) => Promise<T>): Promise<T> {
    return db && db !== this.pool ? fn(db) : withTenant(this.pool, tenantId, fn);
  }

  private async dataKey(tenantId: string, version: number, db?: Queryable): Promise<Buffer> {
    // The warm path (issue #3: p99 ≤ 50 µs) never touches the database.
    const cached = this.cacheGet(tenantId, version);
    if (cached) return cached.key;
    const { rows } = await this.inTenant(tenantId, db, (q) =>
      q.query<DataKeyRow>('SELECT version, master_key_version, wrapped_key FROM tenant_data_keys WHERE tenant_id = $1 AND version = $2', [tenantId, version]),
    );
    if (!rows[0]) throw new DataKeyMissingError(tenantId, version);
    const key = await this.unwrapRow(tenantId, rows[0]);
    this.cachePut(tenantId, version, key, rows[0].wrapped_key);
    return key;
  }

  /** The tenant's current data key, created on first use (races settle on the primary key). */
  private async activeDataKey(tenantId: string, db: Queryable): Promise<{ version: number; key: Buffer }> {
    const { rows } = await db.query<DataKeyRow>(
      // Locked: a data-key rotation (which supersedes this row) waits until the caller's
      // transaction has committed the secret, so the re-encryption pass is sure to see it.
      // FOR NO KEY UPDATE, not FOR SHARE: the usage count below updates this row in the same
      // transaction, and two encryptors each holding a share lock would deadlock upgrading it.
      `SELECT version, master_key_version, wrapped_key FROM tenant_data_keys
       WHERE tenant_id = $1 AND superseded_at IS NULL ORDER BY version DESC LIMIT 1 FOR NO KEY UPDATE`,
      [tenantId],
    );
    const row = rows[0];
    if (row) {
      // Trusted only if cached from this very row: a key this process created in a transaction
      // that then rolled back must not encrypt under the version another process committed.
      const hit = this.cacheGet(tenantId, row.version);
      const key = hit?.wrapped.equals(row.wrapped_key) ? hit.key : await this.unwrapRow(tenantId, row);
      this.cachePut(tenantId, row.version, key, row.wrapped_key);
      return { version: row.version, key };
    }
    return this.createDataKey(tenantId, 1, db);
  }

  private async createDataKey(tenantId: string, version: number, db: Queryable): Promise<{ version: number; key: Buffer }> {
    const key = randomBytes(32);
    const wrapped = await this.wrapKey(tenantId, version, key);
    const inserted = await db.query(
      `INSERT INTO tenant_data_keys (tenant_id, version, master_key_version, wrapped_key)
       VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, version) DO NOTHING`,
      [tenantId, version, this.keys.activeVersion, wrapped],
    );
    if (inserted.rowCount === 1) {
      this.cachePut(tenantId, version, key, wrapped);
      return { version, key };
    }
    // Someone else created it first: use theirs.
    return { version, key: await this.dataKey(tenantId, version, db) };
  }

  // ---- secrets --------------------------------------------------------------------------------

  /**
   * Encrypts under the tenant's active data key. Pass the client of your `withTenant` transaction
   * to stay in it (the secret, the key's creation and its usage count then commit together).
   */
  async encrypt(loc: SecretLocation, plaintext: string, db?: Queryable): Promise<SealedSecret> {
    return this.inTenant(loc.tenantId, db, async (q) => {
      const { version, key } = await this.activeDataKey(loc.tenantId, q);
      const nonce = randomBytes(NONCE_BYTES);
      const { ciphertext, tag } = gcmSeal(key, nonce, Buffer.from(plaintext, 'utf8'), secretAad(loc, version));
      // Usage count drives the data-key rotation policy (GCM with random nonces: stay far below 2^32).
      await q.query('UPDATE tenant_data_keys SET encryptions = encryptions + 1 WHERE tenant_id = $1 AND version = $2', [loc.tenantId, version]);
      return { blob: Buffer.concat([Buffer.from([SECRET_FORMAT_V2]), u32(version), nonce, ciphertext, tag]), keyVersion: version };
    });
  }

  /** Decrypts; a cold data key is read on `db` (the caller's scoped client) or in a scope of its own. */
  async decrypt(loc: SecretLocation, blob: Buffer, db?: Queryable): Promise<string> {
    const version = secretKeyVersion(blob);
    const key = await this.dataKey(loc.tenantId, version, db);
    const nonce = blob.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
    const tag = blob.subarray(blob.length - TAG_BYTES);
    const ciphertext = blob.subarray(HEADER_BYTES + NONCE_BYTES, blob.length - TAG_BYTES);
    return gcmOpen(key, nonce, ciphertext, tag, secretAad(loc, version)).toString('utf8');
  }

  // ---- rotation -------------------------------------------------------------------------------

  /** Re-wraps one data key under the active master key; false if it already was (idempotent). */
  async rewrapDataKey(tenantId: string, version: number): Promise<boolean> {
    const target = this.keys.activeVersion;
    return withTenant(this.pool, tenantId, async (tx) => {
      const { rows } = await tx.query<DataKeyRow>(
        'SELECT version, master_key_version, wrapped_key FROM tenant_data_keys WHERE tenant_id = $1 AND version = $2',
        [tenantId, version],
      );
      const row = rows[0];
      if (!row || row.master_key_version === target) return false;
      const key = await this.unwrapRow(tenantId, row);
      const wrapped = await this.wrapKey(tenantId, version, key, target);
      // Only if nobody rewrapped it meanwhile: concurrent rotations never clobber each other.
      const { rowCount } = await tx.query(
        `UPDATE tenant_data_keys SET master_key_version = $3, wrapped_key = $4, rewrapped_at = now()
         WHERE tenant_id = $1 AND version = $2 AND master_key_version = $5`,
        [tenantId, version, target, wrapped, row.master_key_version],
      );
      return rowCount === 1;
    });
  }

  /** Starts a new data key version for the tenant; existing secrets keep decrypting with the old one. */
  async rotateDataKey(tenantId: string, onRotated?: (tx: Queryable, version: number) => Promise<void>): Promise<number> {
    return withTenant(this.pool, tenantId, async (tx) => {
      // Serialize rotations of one tenant; other tenants are unaffected.
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`dek:${tenantId}`]);
      const { rows } = await tx.query<{ max: number | null }>('SELECT max(version) AS max FROM tenant_data_keys WHERE tenant_id = $1', [tenantId]);
      const next = (rows[0]?.max ?? 0) + 1;
      await tx.query('UPDATE tenant_data_keys SET superseded_at = now() WHERE tenant_id = $1 AND superseded_at IS NULL', [tenantId]);
      await this.createDataKey(tenantId, next, tx);
      // The caller's record of the rotation (its audit event) commits with the key, or neither does.
      if (onRotated) await onRotated(tx, next);
      return next;
    });
  }
}
