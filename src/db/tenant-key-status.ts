import { SECRET_COLUMNS } from '../crypto/secret-columns';
import type { Queryable } from './tenant-scope';

/**
 * One tenant's data keys as its people may see them (inside the tenant's scope): versions, which
 * master key wraps each, age, how many encryptions each made and how many stored secrets each
 * still encrypts. Metadata only: the wrapped key is never selected.
 */

export interface TenantKeyStatus {
  dataKeys: Array<{
    version: number;
    masterKeyVersion: number;
    createdAt: Date;
    rewrappedAt: Date | null;
    supersededAt: Date | null;
    encryptions: number;
    /** Secrets (channel tokens, model API keys) this version encrypts now. */
    secrets: number;
  }>;
  secrets: Array<{ table: string; column: string; byDataKeyVersion: Record<string, number> }>;
}

export async function tenantKeyStatus(tx: Queryable): Promise<TenantKeyStatus> {
  const { rows: keys } = await tx.query<{ version: number; master_key_version: number; created_at: Date; rewrapped_at: Date | null; superseded_at: Date | null; encryptions: string }>(
    'SELECT version, master_key_version, created_at, rewrapped_at, superseded_at, encryptions::text FROM tenant_data_keys ORDER BY version',
  );
  const perVersion = new Map<number, number>();
  const secrets: TenantKeyStatus['secrets'] = [];
  for (const col of SECRET_COLUMNS) {
    // Table and column names come from the fixed SECRET_COLUMNS list, never from input.
    const { rows } = await tx.query<{ version: number | null; n: number }>(
      `SELECT ${col.keyVersionColumn} AS version, count(*)::int AS n FROM ${col.table} WHERE ${col.column} IS NOT NULL GROUP BY 1 ORDER BY 1`,
    );
    for (const r of rows) if (r.version !== null) perVersion.set(r.version, (perVersion.get(r.version) ?? 0) + r.n);
    secrets.push({ table: col.table, column: col.column, byDataKeyVersion: Object.fromEntries(rows.map((r) => [String(r.version), r.n])) });
  }
  return {
    dataKeys: keys.map((k) => ({
      version: k.version,
      masterKeyVersion: k.master_key_version,
      createdAt: k.created_at,
      rewrappedAt: k.rewrapped_at,
      supersededAt: k.superseded_at,
      encryptions: Number(k.encryptions),
      secrets: perVersion.get(k.version) ?? 0,
    })),
    secrets,
  };
}
