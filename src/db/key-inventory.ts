import type { Pool } from 'pg';
import type { KeyProvider } from '../crypto/key-provider';
import { SECRET_COLUMNS, type SecretColumn } from '../crypto/secret-columns';
import type { SecretVault } from '../crypto/vault';
import { dataKeyAgeDays, dataKeyDueReasons, DAY_MS, DEFAULT_DATA_KEY_POLICY, type DataKeyDueReason, type DataKeyPolicy, type DueDataKey } from '../shared/data-key-policy';
import { platformTenantIds, withTenant, type Queryable } from './tenant-scope';

/**
 * What the key hierarchy looks like in the database: how many data keys each master key
 * version still wraps and how many secrets each data key version still encrypts.
 *
 * tenant_data_keys, channels and tenant_settings have row-level security. Plans across tenants
 * are made from the allow-listed `data_key_inventory()` (key metadata, never a wrapped key) and
 * `platform_tenant_ids()`; everything that reads a secret or changes a key runs per tenant inside
 * `withTenant`.
 */

interface InventoryRow {
  tenantId: string;
  version: number;
  masterKeyVersion: number;
  createdAt: Date;
  supersededAt: Date | null;
  encryptions: number;
}

async function dataKeyInventory(db: Queryable): Promise<InventoryRow[]> {
  const { rows } = await db.query<{ tenant_id: string; version: number; master_key_version: number; created_at: Date; superseded_at: Date | null; encryptions: string }>(
    'SELECT tenant_id, version, master_key_version, created_at, superseded_at, encryptions::text AS encryptions FROM data_key_inventory() ORDER BY created_at, tenant_id, version',
  );
  return rows.map((r) => ({
    tenantId: r.tenant_id,
    version: r.version,
    masterKeyVersion: r.master_key_version,
    createdAt: r.created_at,
    supersededAt: r.superseded_at,
    encryptions: Number(r.encryptions),
  }));
}

/** Tenants that still hold a superseded data key (the only ones with secrets to re-encrypt or keys to destroy). */
async function tenantsWithSupersededKeys(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ tenant_id: string }>(
    'SELECT DISTINCT tenant_id FROM data_key_inventory() WHERE superseded_at IS NOT NULL ORDER BY tenant_id',
  );
  return rows.map((r) => r.tenant_id);
}

/** A secret of `col` is stale when the data key that encrypted it has been superseded. */
const staleWhere = (col: SecretColumn) =>
  `EXISTS (SELECT 1 FROM tenant_data_keys k WHERE k.tenant_id = s.tenant_id AND k.version = s.${col.keyVersionColumn} AND k.superseded_at IS NOT NULL)`;

/** One tenant data key as `keys:status` lists it, judged by the rotation policy. */
export interface TenantDataKeyStatus {
  tenantId: string;
  version: number;
  masterKeyVersion: number;
  createdAt: string;
  ageDays: number;
  encryptions: number;
  superseded: boolean;
  /** A current key that reached a policy limit: the next scheduled DataKeyRotation gives the tenant a new one. */
  due: boolean;
  /** Which limits it reached (empty when not due). */
  dueBecause: DataKeyDueReason[];
}

export interface KeyStatus {
  activeMasterKeyVersion: number;
  configuredMasterKeyVersions: number[];
  masterKeys: Array<{ version: number; dataKeys: number; retired: boolean; configured: boolean }>;
  dataKeys: Array<{ version: number; tenants: number; superseded: number; encryptions: number; oldestCreatedAt: string | null }>;
  /** The data-key rotation policy the `due` flags were computed with. */
  policy: { maxAgeDays: number; maxEncryptions: number };
  /** Every tenant data key, oldest first. */
  tenantDataKeys: TenantDataKeyStatus[];
  secrets: Array<{ table: string; column: string; byDataKeyVersion: Record<string, number>; onSupersededKeys: number }>;
  pending: { rewrap: number; reencrypt: number };
  /** Current data keys due under `policy` (the scheduled DataKeyRotation rotates them). */
  dueForRotation: number;
}

/** The configured data-key rotation policy (DATA_KEY_MAX_AGE_DAYS, DATA_KEY_MAX_ENCRYPTIONS). */
export function dataKeyPolicyFromConfig(config: { DATA_KEY_MAX_AGE_DAYS: number; DATA_KEY_MAX_ENCRYPTIONS: number }): DataKeyPolicy {
  return { maxAgeMs: config.DATA_KEY_MAX_AGE_DAYS * DAY_MS, maxEncryptions: config.DATA_KEY_MAX_ENCRYPTIONS };
}

export interface KeyStatusOptions {
  /** Default: DATA_KEY_MAX_AGE_DAYS / DATA_KEY_MAX_ENCRYPTIONS's defaults (callers with a config pass theirs). */
  policy?: DataKeyPolicy;
  /** Default: now. */
  asOf?: Date;
}

export async function keyStatus(pool: Pool, provider: KeyProvider, opts: KeyStatusOptions = {}): Promise<KeyStatus> {
  const policy = opts.policy ?? DEFAULT_DATA_KEY_POLICY;
  const asOf = (opts.asOf ?? new Date()).getTime();
  const inventory = await dataKeyInventory(pool);
  const retired = new Set((await pool.query<{ version: number }>('SELECT version FROM retired_master_keys')).rows.map((r) => r.version));

  const byMaster = new Map<number, number>();
  const byVersion = new Map<number, { tenants: number; superseded: number; encryptions: number; oldest: Date }>();
  for (const k of inventory) {
    byMaster.set(k.masterKeyVersion, (byMaster.get(k.masterKeyVersion) ?? 0) + 1);
    const v = byVersion.get(k.version) ?? { tenants: 0, superseded: 0, encryptions: 0, oldest: k.createdAt };
    v.tenants += 1;
    if (k.supersededAt) v.superseded += 1;
    v.encryptions += k.encryptions;
    if (k.createdAt < v.oldest) v.oldest = k.createdAt;
    byVersion.set(k.version, v);
  }
  const versions = new Set([...provider.versions, ...byMaster.keys(), ...retired]);
  const tenantDataKeys: TenantDataKeyStatus[] = inventory.map((k) => {
    const dueBecause = dataKeyDueReasons({ createdAt: k.createdAt.getTime(), supersededAt: k.supersededAt?.getTime() ?? null, encryptions: k.encryptions }, policy, asOf);
    return {
      tenantId: k.tenantId,
      version: k.version,
      masterKeyVersion: k.masterKeyVersion,
      createdAt: k.createdAt.toISOString(),
      ageDays: dataKeyAgeDays(k.createdAt.getTime(), asOf),
      encryptions: k.encryptions,
      superseded: k.supersededAt !== null,
      due: dueBecause.length > 0,
      dueBecause,
    };
  });

  // Secrets are counted inside each tenant's scope, then summed.
  const perColumn = SECRET_COLUMNS.map(() => ({ byVersion: new Map<string, number>(), stale: 0 }));
  for (const tenantId of await platformTenantIds(pool)) {
    await withTenant(pool, tenantId, async (tx) => {
      for (const [i, col] of SECRET_COLUMNS.entries()) {
        const { rows } = await tx.query<{ version: number | null; n: number; stale: number }>(
          `SELECT s.${col.keyVersionColumn} AS version, count(*)::int AS n, count(*) FILTER (WHERE ${staleWhere(col)})::int AS stale
           FROM ${col.table} s WHERE s.${col.column} IS NOT NULL GROUP BY 1`,
        );
        const acc = perColumn[i]!;
        for (const r of rows) {
          acc.byVersion.set(String(r.version), (acc.byVersion.get(String(r.version)) ?? 0) + r.n);
          acc.stale += r.stale;
        }
      }
    });
  }
  const secrets: KeyStatus['secrets'] = SECRET_COLUMNS.map((col, i) => {
    const acc = perColumn[i]!;
    // Numeric versions in ascending order, a NULL version (if any) last, like the former ORDER BY.
    const entries = [...acc.byVersion.entries()].sort(([a], [b]) => (a === 'null' ? 1 : b === 'null' ? -1 : Number(a) - Number(b)));
    return { table: col.table, column: col.column, byDataKeyVersion: Object.fromEntries(entries), onSupersededKeys: acc.stale };
  });

  return {
    activeMasterKeyVersion: provider.activeVersion,
    configuredMasterKeyVersions: [...provider.versions],
    masterKeys: [...versions].sort((a, b) => b - a).map((version) => ({
      version,
      dataKeys: byMaster.get(version) ?? 0,
      retired: retired.has(version),
      configured: provider.versions.includes(version),
    })),
    dataKeys: [...byVersion.entries()]
      .sort(([a], [b]) => a - b)
      .map(([version, v]) => ({ version, tenants: v.tenants, superseded: v.superseded, encryptions: v.encryptions, oldestCreatedAt: v.oldest.toISOString() })),
    policy: { maxAgeDays: policy.maxAgeMs / DAY_MS, maxEncryptions: policy.maxEncryptions },
    tenantDataKeys,
    secrets,
    pending: {
      rewrap: [...byMaster.entries()].filter(([v]) => v !== provider.activeVersion).reduce((s, [, n]) => s + n, 0),
      reencrypt: secrets.reduce((s, c) => s + c.onSupersededKeys, 0),
    },
    dueForRotation: tenantDataKeys.filter((k) => k.due).length,
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
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM data_key_inventory() WHERE master_key_version = $1', [version]);
  const n = rows[0]!.n;
  if (n > 0) throw new KeyInUseError(`master key version ${version} still wraps ${n} data key(s): run the key rotation first (npm run cli -- keys:rotate)`);
  await pool.query('INSERT INTO retired_master_keys (version) VALUES ($1) ON CONFLICT DO NOTHING', [version]);
}

/** Data keys wrapped by an older master key version, oldest first. */
export async function dataKeysToRewrap(pool: Pool, activeVersion: number, limit: number): Promise<Array<{ tenantId: string; version: number }>> {
  const { rows } = await pool.query<{ tenant_id: string; version: number }>(
    'SELECT tenant_id, version FROM data_key_inventory() WHERE master_key_version <> $1 ORDER BY created_at, tenant_id, version LIMIT $2',
    [activeVersion, limit],
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, version: r.version }));
}

export async function countDataKeysToRewrap(pool: Pool, activeVersion: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM data_key_inventory() WHERE master_key_version <> $1', [activeVersion]);
  return rows[0]!.n;
}

/**
 * Tenants whose current data key is older than `before` (a rotation started at `before`); with
 * `tenantIds`, only those tenants (a policy-driven rotation of the due ones).
 */
export async function tenantsWithDataKeyOlderThan(pool: Pool, before: Date, limit: number, tenantIds?: readonly string[]): Promise<string[]> {
  const { rows } = await pool.query<{ tenant_id: string }>(
    `SELECT tenant_id FROM data_key_inventory()
     WHERE superseded_at IS NULL AND created_at < $1 AND ($3::uuid[] IS NULL OR tenant_id = ANY($3::uuid[]))
     ORDER BY tenant_id LIMIT $2`,
    [before, limit, tenantIds ?? null],
  );
  return rows.map((r) => r.tenant_id);
}

export interface DueDataKeyPage {
  due: DueDataKey[];
  /** Resume after this tenant id; null once every current key has been looked at. */
  next: string | null;
}

/**
 * The tenants whose current data key is due under `policy` at `asOf`, by tenant id after `after`,
 * at most `limit`. The decision is the shared policy function's (the same one `keys:status` and the
 * workflow use); the database only pages through current keys, `scanSize` at a time.
 */
export async function dueDataKeyTenants(
  pool: Pool,
  policy: DataKeyPolicy,
  asOf: Date,
  page: { after?: string | null; limit: number; scanSize?: number },
): Promise<DueDataKeyPage> {
  const scanSize = page.scanSize ?? 1000;
  const due: DueDataKey[] = [];
  let after = page.after ?? null;
  for (;;) {
    const { rows } = await pool.query<{ tenant_id: string; version: number; created_at: Date; encryptions: string }>(
      `SELECT tenant_id, version, created_at, encryptions::text AS encryptions FROM data_key_inventory()
       WHERE superseded_at IS NULL AND ($1::uuid IS NULL OR tenant_id > $1::uuid) ORDER BY tenant_id LIMIT $2`,
      [after, scanSize],
    );
    for (const r of rows) {
      after = r.tenant_id;
      const reasons = dataKeyDueReasons({ createdAt: r.created_at.getTime(), supersededAt: null, encryptions: Number(r.encryptions) }, policy, asOf.getTime());
      if (reasons.length > 0) due.push({ tenantId: r.tenant_id, version: r.version, reasons });
      if (due.length >= page.limit) return { due, next: after };
    }
    if (rows.length < scanSize) return { due, next: null };
  }
}

/**
 * Re-encrypts up to `limit` secrets that still use a superseded data key, each in its own
 * transaction (in its tenant's scope) with the row locked, so a concurrent token update is never
 * overwritten.
 */
export async function reencryptStaleSecrets(pool: Pool, vault: SecretVault, limit: number, onEach?: () => void): Promise<{ reencrypted: number; remaining: number }> {
  let reencrypted = 0;
  const tenants = await tenantsWithSupersededKeys(pool);
  for (const tenantId of tenants) {
    if (reencrypted >= limit) break;
    for (const col of SECRET_COLUMNS) {
      if (reencrypted >= limit) break;
      const { rows } = await withTenant(pool, tenantId, (tx) =>
        tx.query<{ id: string }>(`SELECT id FROM ${col.table} s WHERE ${staleWhere(col)} ORDER BY id LIMIT $1`, [limit - reencrypted]),
      );
      for (const row of rows) {
        const done = await withTenant(pool, tenantId, async (tx) => {
          const locked = await tx.query<{ blob: Buffer }>(`SELECT ${col.column} AS blob FROM ${col.table} s WHERE id = $1 AND ${staleWhere(col)} FOR UPDATE`, [row.id]);
          if (!locked.rows[0]) return false;
          const loc = { tenantId, table: col.table, column: col.aadColumn, rowId: row.id };
          const plaintext = await vault.decrypt(loc, locked.rows[0].blob, tx);
          const sealed = await vault.encrypt(loc, plaintext, tx);
          await tx.query(`UPDATE ${col.table} SET ${col.column} = $2, ${col.keyVersionColumn} = $3 WHERE id = $1`, [row.id, sealed.blob, sealed.keyVersion]);
          return true;
        });
        if (done) reencrypted += 1;
        onEach?.();
      }
    }
  }
  let remaining = 0;
  for (const tenantId of tenants) {
    remaining += await withTenant(pool, tenantId, async (tx) => {
      let n = 0;
      for (const col of SECRET_COLUMNS) {
        const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${col.table} s WHERE ${staleWhere(col)}`);
        n += rows[0]!.n;
      }
      return n;
    });
  }
  return { reencrypted, remaining };
}

/** Destroys superseded data keys that no secret uses any more. */
export async function destroyUnusedSupersededKeys(pool: Pool): Promise<number> {
  const inUse = SECRET_COLUMNS.map(
    (col) => `EXISTS (SELECT 1 FROM ${col.table} s WHERE s.tenant_id = k.tenant_id AND s.${col.keyVersionColumn} = k.version)`,
  ).join(' OR ');
  let destroyed = 0;
  for (const tenantId of await tenantsWithSupersededKeys(pool)) {
    const { rowCount } = await withTenant(pool, tenantId, (tx) => tx.query(`DELETE FROM tenant_data_keys k WHERE k.superseded_at IS NOT NULL AND NOT (${inUse})`));
    destroyed += rowCount ?? 0;
  }
  return destroyed;
}
