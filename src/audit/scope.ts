import { Pool } from 'pg';
import { withScope, type Queryable } from '../db/tenant-scope';

/**
 * Where an audit chain lives under row-level security (migrations/0008_row_level_security.sql):
 * the platform chain in the platform scope, a tenant's chain in that tenant's scope — also a
 * deleted tenant's, since the policies compare ids only. A scope sees exactly one chain, so every
 * cross-chain job lists chain ids through `audit_chain_ids()` and works chain by chain.
 */

/** The tenant a chain belongs to: null for `platform`, else the chain id (a tenant id). */
export function chainTenant(chainId: string): string | null {
  return chainId === 'platform' ? null : chainId;
}

/**
 * Runs `fn` in the chain's scope. A Pool opens it (one transaction); anything else is a client the
 * caller already scoped (its withTenant/withPlatform transaction), used as it is.
 */
export function inChainScope<T>(db: Queryable, chainId: string, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db instanceof Pool ? withScope(db, chainTenant(chainId), fn) : fn(db);
}

/**
 * Every chain with events, checkpoints or anchors (a deleted tenant's included), through the
 * allow-listed SECURITY DEFINER `audit_chain_ids()`: ids only, no scope needed.
 */
export async function auditChainIds(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ c: string }>('SELECT c FROM audit_chain_ids() AS t(c) ORDER BY c');
  return rows.map((r) => r.c);
}
