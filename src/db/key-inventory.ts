import type { Pool } from 'pg';
import type { KeyProvider } from '../crypto/key-provider';
import { SECRET_COLUMNS } from '../crypto/secret-columns';
import type { SecretVault } from '../crypto/vault';

/**
 * What the key hierarchy looks like in the database: how many data keys each master key
 * version still wraps and how many secrets each data key version still encrypts.
 */

export interface KeyStatus {
  activeMasterKeyVersion: number;
  configuredMasterKeyVersions: number[];
  masterKeys: Array<{ version: number; dataKeys: number; retired: boolean; configured: boolean }>;
  dataKeys: Array<{ version: number; tenants: number; superseded: number; encryptions: number; oldestCreatedAt: string | null }>;
  secrets: Array<{ table: string; column: string; byDataKeyVersion: Record<string, number>; onSupersededKeys: number }>;
  pending: { rewrap: number; reencrypt: number };
}

export async function keyStatus(pool: Pool, provider: KeyProvider): Promise<KeyStatus> {
  const masters = await pool.query<{ version: number; n: number }>(
    'SELECT master_key_version AS version, count(*)::int AS n FROM tenant_data_keys GROUP BY 1',
  );
  const retired = new Set((await pool.query<{ version: number }>('SELECT version FROM retired_master_keys')).rows.map((r) => r.version));
  const versions = new Set([...provider.versions, ...masters.rows.map((r) => r.version), ...retired]);
  const dataKeys = await pool.query<{ version: number; tenants: number; superseded: number; encryptions: string; oldest: Date | null }>(
    `SELECT version, count(*)::int AS tenants, count(superseded_at)::int AS superseded,
            sum(encryptions)::text AS encryptions, min(created_at) AS oldest
     FROM tenant_data_keys GROUP BY version ORDER BY version`,
  );
  const secrets: KeyStatus['secrets'] = [];
  let reencrypt = 0;
  for (const col of SECRET_COLUMNS) {
    const { rows } = await pool.query<{ version: number | null; n: number; stale: number }>(
      `SELECT s.${col.keyVersionColumn} AS version, count(*)::int AS n, count(*) FILTER (WHERE k.superseded_at IS NOT NULL)::int AS stale
       FROM ${col.table} s LEFT JOIN tenant_data_keys k ON k.tenant_id = s.tenant_id AND k.version = s.${col.keyVersionColumn}
       WHERE s.${col.column} IS NOT NULL
       GROUP BY 1 ORDER BY 1`,
    );
    const stale = rows.reduce((sum, r) => sum + r.stale, 0);
    reencrypt += stale;
    secrets.push({ table: col.table, column: col.column, byDataKeyVersion: Object.fromEntries(rows.map((r) => [String(r.version), r.n])), onSupersededKeys: stale });
  }
  const byMaster = new Map(masters.rows.map((r) => [r.version, r.n]));
  return {
    activeMasterKeyVersion: provider.activeVersion,
    configuredMasterKeyVersions: [...provider.versions],
    masterKeys: [...versions].sort((a, b) => b - a).map((version) => ({
      version,
      dataKeys: byMaster.get(version) ?? 0,
      retired: retired.has(version),
      configured: provider.versions.includes(version),
    })),
    dataKeys: dataKeys.rows.map((r) => ({ version: r.version, tenants: r.tenants, superseded: r.superseded, encryptions: Number(r.encryptions), oldestCreatedAt: r.oldest?.toISOString() ?? null })),
    secrets,
    pending: { rewrap: masters.rows.filter((r) => r.version !== provider.activeVersion).reduce((s, r) => s + r.n, 0), reencrypt },
  };
}

export class KeyInUseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyInUseError';
  }
}

/** Marks a master key version retired; refused while it is active or still wraps any data key. */
export async function retireMasterKey(pool: Pool, provider: KeyProvider, version: number): Promise<void> {
  if (version === provider.activeVersion) {
    throw new KeyInUseError(`master key version ${version} is the active one: add a newer version to MASTER_KEYS and rotate first`);
  }
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenant_data_keys WHERE master_key_version = $1', [version]);
  const n = rows[0]!.n;
  if (n > 0) throw new KeyInUseError(`master key version ${version} still wraps ${n} data key(s): run the key rotation first (npm run cli -- keys:rotate)`);
  await pool.query('INSERT INTO retired_master_keys (version) VALUES ($1) ON CONFLICT DO NOTHING', [version]);
}

/** Data keys wrapped by an older master key version, oldest first. */
export async function dataKeysToRewrap(pool: Pool, activeVersion: number, limit: number): Promise<Array<{ tenantId: string; version: number }>> {
  const { rows } = await pool.query<{ tenant_id: string; version: number }>(
    'SELECT tenant_id, version FROM tenant_data_keys WHERE master_key_version <> $1 ORDER BY created_at, tenant_id, version LIMIT $2',
    [activeVersion, limit],
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, version: r.version }));
}

export async function countDataKeysToRewrap(pool: Pool, activeVersion: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenant_data_keys WHERE master_key_version <> $1', [activeVersion]);
  return rows[0]!.n;
}

/** Tenants whose current data key is older than `before` (a rotation started at `before`). */
export async function tenantsWithDataKeyOlderThan(pool: Pool, before: Date, limit: number): Promise<string[]> {
  const { rows } = await pool.query<{ tenant_id: string }>(
    `SELECT tenant_id FROM tenant_data_keys WHERE superseded_at IS NULL AND created_at < $1 ORDER BY tenant_id LIMIT $2`,
    [before, limit],
  );
  return rows.map((r) => r.tenant_id);
}

/**
 * Re-encrypts up to `limit` secrets that still use a superseded data key, each in its own
 * transaction with the row locked, so a concurrent token update is never overwritten.
 */
export async function reencryptStaleSecrets(pool: Pool, vault: SecretVault, limit: number, onEach?: () => void): Promise<{ reencrypted: number; remaining: number }> {
  let reencrypted = 0;
  let remaining = 0;
  for (const col of SECRET_COLUMNS) {
    const staleWhere = `EXISTS (SELECT 1 FROM tenant_data_keys k WHERE k.tenant_id = s.tenant_id AND k.version = s.${col.keyVersionColumn} AND k.superseded_at IS NOT NULL)`;
    const { rows } = await pool.query<{ id: string; tenant_id: string }>(`SELECT id, tenant_id FROM ${col.table} s WHERE ${staleWhere} LIMIT $1`, [limit - reencrypted]);
    for (const row of rows) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const locked = await client.query<{ blob: Buffer }>(`SELECT ${col.column} AS blob FROM ${col.table} s WHERE id = $1 AND ${staleWhere} FOR UPDATE`, [row.id]);
        if (locked.rows[0]) {
          const loc = { tenantId: row.tenant_id, table: col.table, column: col.aadColumn, rowId: row.id };
          const plaintext = await vault.decrypt(loc, locked.rows[0].blob, client);
          const sealed = await vault.encrypt(loc, plaintext, client);
          await client.query(`UPDATE ${col.table} SET ${col.column} = $2, ${col.keyVersionColumn} = $3 WHERE id = $1`, [row.id, sealed.blob, sealed.keyVersion]);
          reencrypted += 1;
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
      onEach?.();
    }
    const left = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${col.table} s WHERE ${staleWhere}`);
    remaining += left.rows[0]!.n;
  }
  return { reencrypted, remaining };
}

/** Destroys superseded data keys that no secret uses any more. */
export async function destroyUnusedSupersededKeys(pool: Pool): Promise<number> {
  const inUse = SECRET_COLUMNS.map(
    (col) => `EXISTS (SELECT 1 FROM ${col.table} s WHERE s.tenant_id = k.tenant_id AND s.${col.keyVersionColumn} = k.version)`,
  ).join(' OR ');
  const { rowCount } = await pool.query(`DELETE FROM tenant_data_keys k WHERE k.superseded_at IS NOT NULL AND NOT (${inUse})`);
  return rowCount ?? 0;
}
