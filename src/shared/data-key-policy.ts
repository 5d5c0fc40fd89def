/**
 * When a tenant's data key is due for rotation (issue 8: every 90 days or 2^30 encryptions,
 * whichever comes first). Imported by workflow code (the scheduled DataKeyRotation), by the
 * activity that lists due tenants and by `keys:status`, so every one of them decides alike: keep
 * this module free of imports and of clocks (the caller passes `asOf`).
 */

export interface DataKeyPolicy {
  /** A current data key at least this old (ms since its creation) is due. */
  maxAgeMs: number;
  /**
   * A current data key that has encrypted this many secrets is due. AES-GCM with random 96-bit
   * nonces: the collision risk grows with the count, so rotate far below 2^32.
   */
  maxEncryptions: number;
}

export const DAY_MS = 86_400_000;

/** The configuration defaults (DATA_KEY_MAX_AGE_DAYS, DATA_KEY_MAX_ENCRYPTIONS), for callers without a config. */
export const DEFAULT_DATA_KEY_POLICY: DataKeyPolicy = { maxAgeMs: 90 * DAY_MS, maxEncryptions: 2 ** 30 };

/** Which limit a key reached: its age, its usage count, or both. */
export type DataKeyDueReason = 'age' | 'encryptions';

/** What the policy needs of one key (a `data_key_inventory()` row; times as epoch ms). */
export interface DataKeyUsage {
  tenantId: string;
  version: number;
  createdAt: number;
  /** Null for the tenant's current key; a superseded key encrypts nothing new and is never due. */
  supersededAt: number | null;
  encryptions: number;
}

export interface DueDataKey {
  tenantId: string;
  version: number;
  reasons: DataKeyDueReason[];
}

/** The limits `key` has reached under `policy` at `asOf` (epoch ms); empty when it is not due. */
export function dataKeyDueReasons(key: Omit<DataKeyUsage, 'tenantId' | 'version'>, policy: DataKeyPolicy, asOf: number): DataKeyDueReason[] {
  if (key.supersededAt !== null) return [];
  const reasons: DataKeyDueReason[] = [];
  if (asOf - key.createdAt >= policy.maxAgeMs) reasons.push('age');
  if (key.encryptions >= policy.maxEncryptions) reasons.push('encryptions');
  return reasons;
}

/** The current keys due for rotation, in the order given (one per tenant: only current keys qualify). */
export function dueDataKeys(keys: readonly DataKeyUsage[], policy: DataKeyPolicy, asOf: number): DueDataKey[] {
  const due: DueDataKey[] = [];
  for (const k of keys) {
    const reasons = dataKeyDueReasons(k, policy, asOf);
    if (reasons.length > 0) due.push({ tenantId: k.tenantId, version: k.version, reasons });
  }
  return due;
}

/** Whole days since `createdAt` at `asOf` (never negative: a clock a little behind the database's reads as 0). */
export function dataKeyAgeDays(createdAt: number, asOf: number): number {
  return Math.max(0, Math.floor((asOf - createdAt) / DAY_MS));
}
