import type { Pool } from 'pg';
import { withScope, type Queryable } from '../db/tenant-scope';
import { sealChain, tableCheckpoints, verifyCheckpointSignature, type SignedCheckpoint } from './checkpoints';
import { computeAuditHash, hashedFields, jcs, ZERO_HASH, type HashedAuditRow } from './hash';
import { AuditKeyring, parseAuditPublicKey, type AuditSigner } from './keys';
import { isAuditChainId } from './log';
import { chainTenant } from './scope';
import { EVENT_COLUMNS, hashedFromRow, latestAnchor, type AuditEventRow } from './verify';

/**
 * `audit:export`: one chain's events in a time range as JSON Lines, with what an auditor needs to
 * verify them offline (format documented in docs/security.md, "Audit trail"):
 *
 *   {"type":"header", format, chainId, range, segment, start, sealed, publicKeys, …}
 *   {"type":"event", inRange, id, recordedAt, prevHash, hash, <the hashed fields>}   one per event
 *   {"type":"checkpoint", <signed checkpoint fields>, signature}                     covering ones
 *   {"type":"end", events, eventsInRange, checkpoints}
 *
 * A range rarely starts and ends on checkpoints, so the exported segment is widened to them: it
 * starts right after the last checkpoint (or anchor, or genesis) before the range — the first
 * event's prevHash is then that checkpoint's signed lastHash — and ends at the first checkpoint at
 * or after the range's last event, whose signed lastHash must equal that event's hash. Events of
 * the widening have `inRange: false`. When the range's end is not sealed yet, export seals the
 * chain first (if AUDIT_SIGNING_KEY and AUDIT_CHECKPOINT_DIR are configured); otherwise the header
 * says `sealed: false` and the tail is proven by the hash links only.
 *
 * The chain is read in its scope (row-level security): the range and its checkpoints in one
 * transaction, the seal (when needed) in its own, then the segment in one more.
 */

export const EXPORT_FORMAT = 'switchboard-audit-export/v1';

export interface ExportOptions {
  /** Tenant id, or `platform`. */
  tenantId: string;
  from: Date;
  to: Date;
  keyring: AuditKeyring;
  /** To seal an unsealed range end first. */
  signer?: AuditSigner | null;
  dir?: string | null;
  now?: () => Date;
}

export interface ExportSummary {
  chainId: string;
  events: number;
  eventsInRange: number;
  checkpoints: number;
  segment: { firstSeq: number; lastSeq: number } | null;
  sealed: boolean;
  sealedNow: boolean;
}

export type LineSink = (line: string) => void | Promise<void>;

export interface ExportHeader {
  type: 'header';
  format: typeof EXPORT_FORMAT;
  chainId: string;
  tenantId: string | null;
  exportedAt: string;
  range: { from: string; to: string };
  segment: { firstSeq: number; lastSeq: number } | null;
  /** What the first event's prevHash must be: genesis (zero hash), an anchor or a checkpoint. */
  start: { kind: 'genesis' | 'anchor' | 'checkpoint'; seq: number; hash: string } | null;
  sealed: boolean;
  hash: string;
  publicKeys: Array<{ keyId: string; publicKey: string }>;
}

export async function exportAuditChain(pool: Pool, sink: LineSink, opts: ExportOptions): Promise<ExportSummary> {
  const chainId = opts.tenantId.toLowerCase();
  if (!isAuditChainId(chainId)) throw new Error(`not a tenant id: ${JSON.stringify(opts.tenantId)}`);
  const now = (opts.now ?? (() => new Date()))();
  const scope = chainTenant(chainId);
  const trusted = async (tx: Queryable) => (await tableCheckpoints(tx, chainId)).filter((c) => verifyCheckpointSignature(opts.keyring, c));
  const range = await withScope(pool, scope, async (tx) => ({
    bounds: (
      await tx.query<{ min: string | null; max: string | null }>(
        'SELECT min(seq) AS min, max(seq) AS max FROM audit_events WHERE chain_id = $1 AND occurred_at >= $2 AND occurred_at < $3',
        [chainId, opts.from, opts.to],
      )
    ).rows[0]!,
    checkpoints: await trusted(tx),
  }));
  const bounds = range.bounds;
  let checkpoints = range.checkpoints;
  let sealedNow = false;
  const maxSeq = bounds.max === null ? null : Number(bounds.max);
  if (maxSeq !== null && !checkpoints.some((c) => c.lastSeq >= maxSeq) && opts.signer && opts.dir) {
    sealedNow = (await sealChain(pool, opts.signer, chainId, opts.dir, now)).length > 0;
    checkpoints = await withScope(pool, scope, trusted);
  }

  const header: ExportHeader = {
    type: 'header',
    format: EXPORT_FORMAT,
    chainId,
    tenantId: chainId === 'platform' ? null : chainId,
    exportedAt: now.toISOString(),
    range: { from: opts.from.toISOString(), to: opts.to.toISOString() },
    segment: null,
    start: null,
    sealed: false,
    hash: 'SHA-256(prevHash ‖ UTF-8(JCS(event without type, inRange, id, recordedAt, prevHash, hash)))',
    publicKeys: opts.keyring.publicKeys(),
  };
  const summary: ExportSummary = { chainId, events: 0, eventsInRange: 0, checkpoints: 0, segment: null, sealed: false, sealedNow };

  if (bounds.min === null || maxSeq === null) {
    await sink(jcs(header));
    await sink(jcs({ type: 'end', events: 0, eventsInRange: 0, checkpoints: 0 }));
    return summary;
  }
  const minSeq = Number(bounds.min);
  return withScope(pool, scope, (tx) => writeSegment(tx, sink, opts, { header, summary, checkpoints, minSeq, maxSeq }));
}

/** The segment (start proof, events, covering checkpoints), in the chain's scope. */
async function writeSegment(
  tx: Queryable,
  sink: LineSink,
  opts: ExportOptions,
  { header, summary, checkpoints, minSeq, maxSeq }: { header: ExportHeader; summary: ExportSummary; checkpoints: SignedCheckpoint[]; minSeq: number; maxSeq: number },
): Promise<ExportSummary> {
  const chainId = header.chainId;
  const anchor = await latestAnchor(tx, chainId);
  const before = checkpoints.filter((c) => c.lastSeq < minSeq).pop();
  let start: NonNullable<ExportHeader['start']> = { kind: 'genesis', seq: 0, hash: ZERO_HASH.toString('hex') };
  if (anchor && anchor.seq >= (before?.lastSeq ?? 0)) start = { kind: 'anchor', seq: anchor.seq, hash: anchor.hash.toString('hex') };
  else if (before) start = { kind: 'checkpoint', seq: before.lastSeq, hash: before.lastHash };
  const end = checkpoints.find((c) => c.lastSeq >= maxSeq);
  const lastSeq = end?.lastSeq ?? maxSeq;
  const covering = checkpoints.filter((c) => c.lastSeq >= start.seq && c.lastSeq <= lastSeq);

  header.segment = { firstSeq: start.seq + 1, lastSeq };
  header.start = start;
  header.sealed = end !== undefined;
  summary.segment = header.segment;
  summary.sealed = header.sealed;
  await sink(jcs(header));

  const fromMs = opts.from.getTime();
  const toMs = opts.to.getTime();
  let after = start.seq;
  for (;;) {
    const { rows } = await tx.query<AuditEventRow>(
      `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT 2000`,
      [chainId, after, lastSeq],
    );
    for (const r of rows) {
      const t = r.occurred_at.getTime();
      const inRange = t >= fromMs && t < toMs;
      await sink(jcs({ type: 'event', inRange, id: r.id, recordedAt: r.recorded_at.toISOString(), prevHash: r.prev_hash.toString('hex'), hash: r.hash.toString('hex'), ...hashedFromRow(r) }));
      summary.events += 1;
      if (inRange) summary.eventsInRange += 1;
      after = Number(r.seq);
    }
    if (rows.length < 2000) break;
  }
  for (const c of covering) await sink(jcs({ type: 'checkpoint', ...c }));
  summary.checkpoints = covering.length;
  await sink(jcs({ type: 'end', events: summary.events, eventsInRange: summary.eventsInRange, checkpoints: covering.length }));
  return summary;
}

export interface ExportVerification {
  ok: boolean;
  events: number;
  checkpointsVerified: number;
  sealed: boolean;
  problems: string[];
}

/**
 * What an auditor runs on an export, offline: every event's hash recomputed, the links from the
 * start proof to the end, every checkpoint's signature, and the checkpoints' hashes at their seqs.
 * `publicKeys` are the auditor's own trusted keys (raw base64, as published out of band); without
 * them the export's header keys are used, which proves integrity but not authorship.
 */
export function verifyAuditExport(lines: string[], publicKeys?: string[]): ExportVerification {
  const problems: string[] = [];
  const parsed = lines.filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  const header = parsed[0] as unknown as ExportHeader | undefined;
  if (!header || header.type !== 'header' || header.format !== EXPORT_FORMAT) {
    return { ok: false, events: 0, checkpointsVerified: 0, sealed: false, problems: ['first line is not a switchboard-audit-export/v1 header'] };
  }
  const keyring = new AuditKeyring((publicKeys ?? header.publicKeys.map((k) => k.publicKey)).map(parseAuditPublicKey));
  const events = parsed.filter((p) => p.type === 'event') as unknown as Array<HashedAuditRow & { prevHash: string; hash: string; id: string }>;
  const checkpoints = parsed.filter((p) => p.type === 'checkpoint') as unknown as SignedCheckpoint[];
  const hashes = new Map<number, string>();
  let expected = header.start ? header.start.seq + 1 : 1;
  let prev = header.start?.hash ?? ZERO_HASH.toString('hex');
  for (const e of events) {
    if (e.seq !== expected) problems.push(`seq ${expected} expected, found ${e.seq}`);
    if (e.prevHash !== prev) problems.push(`seq ${e.seq}: prevHash does not link`);
    const recomputed = computeAuditHash(Buffer.from(e.prevHash, 'hex'), hashedFields(e)).toString('hex');
    if (recomputed !== e.hash) problems.push(`seq ${e.seq}: hash does not match the event`);
    hashes.set(e.seq, e.hash);
    prev = e.hash;
    expected = e.seq + 1;
  }
  let checkpointsVerified = 0;
  for (const c of checkpoints) {
    if (c.chainId !== header.chainId) problems.push(`checkpoint at seq ${c.lastSeq} is for another chain`);
    if (!verifyCheckpointSignature(keyring, c)) {
      problems.push(`checkpoint at seq ${c.lastSeq}: signature does not verify with the trusted keys`);
      continue;
    }
    const atSeq = c.lastSeq === header.start?.seq ? header.start.hash : hashes.get(c.lastSeq);
    if (atSeq === undefined) problems.push(`checkpoint at seq ${c.lastSeq} is outside the exported segment`);
    else if (atSeq !== c.lastHash) problems.push(`checkpoint at seq ${c.lastSeq}: the exported hash differs from the signed one`);
    else checkpointsVerified += 1;
  }
  const lastSeq = header.segment?.lastSeq;
  const sealed = lastSeq !== undefined && checkpoints.some((c) => c.lastSeq === lastSeq && hashes.get(lastSeq) === c.lastHash);
  if (header.start?.kind === 'checkpoint' && !checkpoints.some((c) => c.lastSeq === header.start!.seq && c.lastHash === header.start!.hash)) {
    problems.push(`the start checkpoint (seq ${header.start.seq}) is not in the export`);
  }
  if (header.sealed && !sealed) problems.push('the header says sealed, but no checkpoint signs the last event');
  return { ok: problems.length === 0, events: events.length, checkpointsVerified, sealed, problems };
}
