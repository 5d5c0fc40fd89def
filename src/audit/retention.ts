import { withTransaction } from '../db/pool';
import type { Pool, PoolClient } from 'pg';
import { appendCheckpointLine, insertCheckpoint, signCheckpoint, tableCheckpoints } from './checkpoints';
import type { AuditKeyring, AuditSigner } from './keys';
import { appendAuditEvent } from './log';
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
  retentionMonths: number;
}

/**
 * Each chain's oldest epoch when it is past the chain's retention (the database re-checks). The
 * chains come from a loose index scan; the oldest event is the chain's first seq.
 */
export async function findExpiredEpochs(db: Pick<Pool | PoolClient, 'query'>, opts: { limit: number; exclude?: string[]; now?: Date }): Promise<ExpiredEpoch[]> {
  const { rows } = await db.query<{ chain_id: string; epoch: string; months: number }>(
    `WITH RECURSIVE chains(c) AS (
       (SELECT chain_id FROM audit_events ORDER BY chain_id LIMIT 1)
       UNION ALL
       SELECT (SELECT e.chain_id FROM audit_events e WHERE e.chain_id > chains.c ORDER BY e.chain_id LIMIT 1)
         FROM chains WHERE chains.c IS NOT NULL
     ),
     firsts AS (
       SELECT ch.c AS chain_id,
              date_trunc('month', (SELECT e.occurred_at FROM audit_events e WHERE e.chain_id = ch.c ORDER BY e.seq LIMIT 1) AT TIME ZONE 'UTC') AS epoch
         FROM chains ch WHERE ch.c IS NOT NULL AND NOT (ch.c = ANY($2::text[]))
     ),
     policy AS (
       SELECT f.chain_id, f.epoch,
              greatest(coalesce(t.audit_retention_months, s.platform_retention_months, ${PLATFORM_RETENTION_MONTHS}), ${MIN_RETENTION_MONTHS}) AS months
         FROM firsts f
         CROSS JOIN audit_retention_settings s
         LEFT JOIN tenants t ON f.chain_id <> 'platform' AND t.id::text = f.chain_id
     )
     SELECT chain_id, to_char(epoch, 'YYYY-MM-DD') AS epoch, months FROM policy
      WHERE ((epoch + interval '1 month' + make_interval(months => months)) AT TIME ZONE 'UTC') <= $3::timestamptz
      ORDER BY epoch, chain_id
      LIMIT $1`,
    [opts.limit, opts.exclude ?? [], (opts.now ?? new Date()).toISOString()],
  );
  return rows.map((r) => ({ chainId: r.chain_id, epoch: r.epoch, retentionMonths: r.months }));
}

/**
 * Purges one epoch through `audit_purge_epoch()` and, in the same transaction, appends the
 * `retention.purged` event to the chain (after the new anchor, so verification passes from it).
 */
export async function purgeEpoch(pool: Pool, chainId: string, epoch: string): Promise<EpochPurge> {
  return withTransaction(pool, async (client) => {
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
  const { rows } = await pool.query<{ id: string; seq: string; hash: Buffer }>(
    `SELECT id, seq, hash FROM audit_events
      WHERE chain_id = $1 AND occurred_at < (($2::date + interval '1 month')::timestamp AT TIME ZONE 'UTC')
      ORDER BY seq DESC LIMIT 1`,
    [chainId, epoch],
  );
  const last = rows[0];
  if (!last) return false;
  const seq = Number(last.seq);
  const checkpoints = await tableCheckpoints(pool, chainId);
  if (checkpoints.some((c) => c.lastSeq === seq)) return true;
  if (!checkpoints.some((c) => c.lastSeq > seq)) return false; // the live checkpointer seals it later
  const report = await verifyChain(pool, chainId, { keyring: seal.keyring, dir: seal.dir });
  if (!report.ok) return false; // never sign over a broken chain: the verification reports it
  const checkpoint = signCheckpoint(seal.signer, { chainId, lastSeq: seq, lastId: Number(last.id), lastHash: last.hash.toString('hex'), count: seq, createdAt: new Date().toISOString() });
  return withTransaction(pool, async (client) => {
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
