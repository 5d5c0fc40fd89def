import type { Pool } from 'pg';
import { withScope, type Queryable } from '../db/tenant-scope';
import { appendCheckpointLine, insertCheckpoint, signCheckpoint, tableCheckpoints } from './checkpoints';
import type { AuditKeyring, AuditSigner } from './keys';
import { appendAuditEvent } from './log';
import { chainTenant } from './scope';
import { verifyChain } from './verify';

/**
 * Audit retention (docs/security.md, "Audit retention"). A chain's events are grouped in monthly
 * epochs (calendar month of occurred_at, UTC). Only the chain's OLDEST epoch can be purged, and
 * only when it is whole, sealed by a signed checkpoint at its last event, and past the chain's
 * retention (tenants.audit_retention_months, default 84, minimum 13; the platform chain:
 * audit_retention_settings). The database decides all of that: `audit_purge_epoch()` (migration
 * 0005) is the only way to delete audit rows; it records an anchor (the epoch's last seq and hash)
 * so the verifier starts there. Here: discovery of candidate epochs, the batch loop, the
 * `retention.purged` event (same transaction as the purge), and sealing epoch boundaries.
 *
 * Row-level security: candidates come from the allow-listed `audit_expired_epochs()` (migration
 * 0009: chain ids and epochs only, across chains in one statement); every purge and seal then runs
 * in the chain's scope (a deleted tenant's chain included: the policies compare ids only).
 */

export const PLATFORM_RETENTION_MONTHS = 84;
export const MIN_RETENTION_MONTHS = 13;

export type PurgeStatus = 'purged' | 'not_expired' | 'not_sealed' | 'not_oldest' | 'not_whole' | 'empty' | 'invalid_epoch' | 'invalid_chain';

export interface EpochPurge {
  chainId: string;
  /** YYYY-MM-01 */
  epoch: string;
  status: PurgeStatus;
  purged: number;
  anchorSeq: number | null;
}

export interface ExpiredEpoch {
  chainId: string;
  epoch: string;
}

/**
 * Each chain's oldest epoch when it is past the chain's retention (the database re-checks when it
 * purges), oldest first. Needs no scope: `audit_expired_epochs()` returns chain ids and epochs only.
 */
export async function findExpiredEpochs(db: Queryable, opts: { limit: number; exclude?: string[]; now?: Date }): Promise<ExpiredEpoch[]> {
  const { rows } = await db.query<{ chain_id: string; epoch: string }>(
    "SELECT chain_id, to_char(epoch, 'YYYY-MM-DD') AS epoch FROM audit_expired_epochs($1, $2::text[], $3::timestamptz)",
    [opts.limit, opts.exclude ?? [], (opts.now ?? new Date()).toISOString()],
  );
  return rows.map((r) => ({ chainId: r.chain_id, epoch: r.epoch }));
}

/**
 * Purges one epoch through `audit_purge_epoch()` and, in the same transaction, appends the
 * `retention.purged` event to the chain (after the new anchor, so verification passes from it).
 */
export async function purgeEpoch(pool: Pool, chainId: string, epoch: string): Promise<EpochPurge> {
  return withScope(pool, chainTenant(chainId), async (client) => {
    const { rows } = await client.query<{ r_status: PurgeStatus; r_purged: string; r_anchor_seq: string | null; r_anchor_hash: Buffer | null }>(
      'SELECT r_status, r_purged, r_anchor_seq, r_anchor_hash FROM audit_purge_epoch($1, $2::date)',
      [chainId, epoch],
    );
    const r = rows[0]!;
    const result: EpochPurge = { chainId, epoch, status: r.r_status, purged: Number(r.r_purged), anchorSeq: r.r_anchor_seq === null ? null : Number(r.r_anchor_seq) };
    if (r.r_status === 'purged') {
      await appendAuditEvent(
        client,
        {
          tenantId: chainId === 'platform' ? null : chainId,
          actor: { type: 'system', id: 'audit-retention' },
          action: 'retention.purged',
          resource: `audit_chain:${chainId}`,
          outcome: 'success',
          details: { epoch: epoch.slice(0, 7), purgedEvents: result.purged, anchorSeq: result.anchorSeq, anchorHash: r.r_anchor_hash!.toString('hex') },
        },
        { idempotencyKey: `retention:${chainId}:${epoch.slice(0, 7)}` },
      );
    }
    return result;
  });
}

export interface SealSettings {
  signer: AuditSigner;
  keyring: AuditKeyring;
  dir: string;
}

/**
 * Checkpoints usually land every N events, not at month ends. For an expired epoch whose last
 * event has no checkpoint of its own but is covered by a later signed checkpoint, the chain is
 * verified first (the later checkpoint proves every row up to it), then a checkpoint at the
 * epoch's last event is signed and written (table, then file, then commit — like sealChain).
 * Returns true when the epoch boundary is (now) sealed.
 */
export async function sealEpochBoundary(pool: Pool, seal: SealSettings, chainId: string, epoch: string): Promise<boolean> {
  const scope = chainTenant(chainId);
  const { last, checkpoints } = await withScope(pool, scope, async (tx) => ({
    last: (
      await tx.query<{ id: string; seq: string; hash: Buffer }>(
        `SELECT id, seq, hash FROM audit_events
          WHERE chain_id = $1 AND occurred_at < (($2::date + interval '1 month')::timestamp AT TIME ZONE 'UTC')
          ORDER BY seq DESC LIMIT 1`,
        [chainId, epoch],
      )
    ).rows[0],
    checkpoints: await tableCheckpoints(tx, chainId),
  }));
  if (!last) return false;
  const seq = Number(last.seq);
  if (checkpoints.some((c) => c.lastSeq === seq)) return true;
  if (!checkpoints.some((c) => c.lastSeq > seq)) return false; // the live checkpointer seals it later
  const report = await verifyChain(pool, chainId, { keyring: seal.keyring, dir: seal.dir });
  if (!report.ok) return false; // never sign over a broken chain: the verification reports it
  const checkpoint = signCheckpoint(seal.signer, { chainId, lastSeq: seq, lastId: Number(last.id), lastHash: last.hash.toString('hex'), count: seq, createdAt: new Date().toISOString() });
  return withScope(pool, scope, async (client) => {
    const locked = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock(hashtextextended('switchboard.audit-checkpoint:' || $1, 0)) AS ok", [chainId]);
    if (!locked.rows[0]!.ok) return false;
    if (await insertCheckpoint(client, checkpoint, true)) appendCheckpointLine(seal.dir, checkpoint);
    return true;
  });
}

export interface PurgeBatchResult {
  /** Epochs purged in this call. */
  epochs: number;
  events: number;
  purges: EpochPurge[];
  /** Expired epochs kept, and why (unsealed, not whole, …). */
  refused: EpochPurge[];
  /** True when the batch was full: call again. */
  more: boolean;
}

/**
 * Purges up to `batchSize` expired epochs (a chain may give several, oldest first). A chain whose
 * oldest expired epoch is refused is skipped for the rest of the call.
 */
export async function purgeExpiredEpochs(
  pool: Pool,
  opts: { batchSize: number; seal?: SealSettings | null; now?: Date; onProgress?: (done: number) => void },
): Promise<PurgeBatchResult> {
  const result: PurgeBatchResult = { epochs: 0, events: 0, purges: [], refused: [], more: false };
  const skip: string[] = [];
  while (result.epochs < opts.batchSize) {
    const candidates = await findExpiredEpochs(pool, { limit: opts.batchSize - result.epochs, exclude: skip, now: opts.now });
    if (candidates.length === 0) return result;
    for (const c of candidates) {
      let p = await purgeEpoch(pool, c.chainId, c.epoch);
      if (p.status === 'not_sealed' && opts.seal && (await sealEpochBoundary(pool, opts.seal, c.chainId, c.epoch))) {
        p = await purgeEpoch(pool, c.chainId, c.epoch);
      }
      if (p.status === 'purged') {
        result.epochs += 1;
        result.events += p.purged;
        result.purges.push(p);
        opts.onProgress?.(result.epochs);
      } else {
        result.refused.push(p);
        skip.push(c.chainId);
      }
    }
  }
  result.more = true;
  return result;
}
