import { type Queryable } from '../db/tenant-scope';
import { checkpointFileChains, readCheckpointFile, sameCheckpoint, tableCheckpoints, verifyCheckpointSignature, type SignedCheckpoint } from './checkpoints';
import { computeAuditHash, ZERO_HASH, type HashedAuditRow } from './hash';
import type { AuditKeyring } from './keys';
import { isAuditChainId } from './log';
import { auditChainIds, inChainScope } from './scope';
import type { AuditActorType } from './types';

/**
 * Verifies the audit log: every chain (or one tenant's) is recomputed from its latest anchor (or
 * seq 1 and the zero hash): sequence numbers contiguous, every prev_hash equal to the previous
 * row's hash, every hash recomputed from the row. Then the checkpoints: each signature (with the
 * configured public keys), the table's and the file's copies agreeing (one missing from either is
 * a finding), the event at each checkpoint's lastSeq having its lastId and lastHash, and no
 * checkpoint beyond the chain's head. Hash links cannot show that the tail was cut off, or cut off
 * and replaced by a forged suffix with recomputed hashes; the checkpoints do.
 *
 * Every finding names its chain, seq and row id; `firstBad` is the lowest-seq finding of a chain.
 * For a checkpoint whose signed hash differs from the row at its lastSeq, the first row that can no
 * longer be proven is the one after the last checkpoint (or anchor) that still matches: that row
 * is named, with the range. For a truncated tail, the first missing seq is named (no row id).
 *
 * Row-level security: each chain is read in its own scope (one transaction per chain when given a
 * Pool); the chains come from `audit_chain_ids()` and the checkpoint files. An id there that is no
 * chain (neither `platform` nor a tenant id: forged behind the app's back) belongs to no scope, so
 * nothing can read it: it is a finding of its own.
 */

export type FindingKind =
  | 'gap'
  | 'duplicate_seq'
  | 'broken_link'
  | 'hash_mismatch'
  | 'checkpoint_bad_signature'
  | 'checkpoint_unknown_key'
  | 'checkpoint_missing_from_file'
  | 'checkpoint_missing_from_table'
  | 'checkpoint_copies_differ'
  | 'checkpoint_file_line'
  | 'checkpoint_beyond_head'
  | 'checkpoint_hash_mismatch'
  | 'checkpoint_id_mismatch'
  | 'checkpoint_count_mismatch'
  | 'anchor_unsealed'
  | 'invalid_chain';

export interface AuditFinding {
  chainId: string;
  /** The first bad row's seq (for a truncated tail: the first missing seq); null when no row applies. */
  seq: number | null;
  /** The row's id, when there is a row. */
  id: string | null;
  kind: FindingKind;
  problem: string;
}

export interface ChainReport {
  chainId: string;
  ok: boolean;
  anchor: { seq: number; hash: string } | null;
  /** Highest seq present (the anchor's when no row is left). */
  headSeq: number;
  eventsChecked: number;
  checkpoints: { table: number; file: number; checked: number; lastSeq: number | null };
  /** Events after the last checkpoint: not yet protected against truncation. */
  unsealedEvents: number;
  findingCount: number;
  /** The first findings (at most `maxFindingsPerChain`), in the order found. */
  findings: AuditFinding[];
  firstBad: AuditFinding | null;
}

export interface AuditVerifyReport {
  ok: boolean;
  checkedAt: string;
  durationMs: number;
  scope: string;
  checkpointDir: string | null;
  keyIds: string[];
  totals: { chains: number; events: number; checkpoints: number; brokenChains: number };
  /** Limits of this verification (no keys, no checkpoint directory): not breaks. */
  warnings: string[];
  chains: ChainReport[];
}

export interface VerifyOptions {
  keyring: AuditKeyring;
  /** AUDIT_CHECKPOINT_DIR; null: the file copies are not compared (a warning). */
  dir: string | null;
  /** Only this tenant's chain (or `platform`). */
  tenantId?: string;
  /** Rows per query while walking a chain. */
  batchSize?: number;
  maxFindingsPerChain?: number;
  /** Hash links only, as if there were no checkpoints (shows what only checkpoints can detect). */
  ignoreCheckpoints?: boolean;
}

/** A Pool (each chain is read in its own scope), or a client already in the one chain's scope. */
type Db = Queryable;

export interface AuditEventRow {
  id: string;
  chain_id: string;
  seq: string;
  tenant_id: string | null;
  occurred_at: Date;
  actor_type: AuditActorType;
  actor_id: string | null;
  action: string;
  resource: string | null;
  outcome: 'success' | 'failure';
  reason: string | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
  recorded_at: Date;
  prev_hash: Buffer;
  hash: Buffer;
}

export const EVENT_COLUMNS =
  'id, chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome, reason, ip, user_agent, request_id, details, recorded_at, prev_hash, hash';

/** A stored row as it was hashed. */
export function hashedFromRow(r: AuditEventRow): HashedAuditRow {
  return {
    chainId: r.chain_id,
    seq: Number(r.seq),
    tenantId: r.tenant_id,
    occurredAt: r.occurred_at.toISOString(),
    actorType: r.actor_type,
    actorId: r.actor_id,
    action: r.action,
    resource: r.resource,
    outcome: r.outcome,
    reason: r.reason,
    ip: r.ip,
    userAgent: r.user_agent,
    requestId: r.request_id,
    details: r.details,
  };
}

export async function latestAnchor(db: Db, chainId: string): Promise<{ seq: number; hash: Buffer } | null> {
  const { rows } = await db.query<{ anchor_seq: string; anchor_hash: Buffer }>(
    'SELECT anchor_seq, anchor_hash FROM audit_anchors WHERE chain_id = $1 ORDER BY anchor_seq DESC LIMIT 1',
    [chainId],
  );
  return rows[0] ? { seq: Number(rows[0].anchor_seq), hash: rows[0].anchor_hash } : null;
}

/** Every chain the log knows of: with events, checkpoints (table or file) or anchors. */
async function allChains(db: Db, dir: string | null): Promise<string[]> {
  const ids = new Set(await auditChainIds(db));
  if (dir) for (const c of checkpointFileChains(dir)) ids.add(c);
  return [...ids].sort();
}

/** The report for a listed id that is no chain: nothing in any scope can read (or append to) it. */
function invalidChainReport(chainId: string): ChainReport {
  const finding: AuditFinding = {
    chainId,
    seq: null,
    id: null,
    kind: 'invalid_chain',
    problem: 'rows under an id that is neither platform nor a tenant id (written behind the application: no scope can read them)',
  };
  return {
    chainId,
    ok: false,
    anchor: null,
    headSeq: 0,
    eventsChecked: 0,
    checkpoints: { table: 0, file: 0, checked: 0, lastSeq: null },
    unsealedEvents: 0,
    findingCount: 1,
    findings: [finding],
    firstBad: finding,
  };
}

interface CheckpointEntry {
  lastSeq: number;
  table?: SignedCheckpoint;
  file?: SignedCheckpoint;
  /** The copy whose signature verified (what positions are checked against). */
  trusted?: SignedCheckpoint;
}

/** Verifies one chain: with a Pool in one transaction in the chain's scope, else in the caller's. */
export function verifyChain(db: Db, chainId: string, opts: VerifyOptions): Promise<ChainReport> {
  if (!isAuditChainId(chainId)) return Promise.resolve(invalidChainReport(chainId));
  return inChainScope(db, chainId, (tx) => verifyChainIn(tx, chainId, opts));
}

async function verifyChainIn(db: Db, chainId: string, opts: VerifyOptions): Promise<ChainReport> {
  const batchSize = opts.batchSize ?? 5000;
  const maxFindings = opts.maxFindingsPerChain ?? 50;
  const findings: AuditFinding[] = [];
  let findingCount = 0;
  let firstBad: AuditFinding | null = null;
  const add = (f: Omit<AuditFinding, 'chainId'>) => {
    const finding = { chainId, ...f };
    findingCount += 1;
    if (findings.length < maxFindings) findings.push(finding);
    if (firstBad === null || (finding.seq !== null && (firstBad.seq === null || finding.seq < firstBad.seq))) firstBad = finding;
  };
  const checkSignatures = opts.keyring.size > 0;

  // ---- checkpoints: both copies, signatures ----
  const anchor = await latestAnchor(db, chainId);
  const anchorSeq = anchor?.seq ?? 0;
  const entries = new Map<number, CheckpointEntry>();
  const entry = (seq: number) => {
    let e = entries.get(seq);
    if (!e) entries.set(seq, (e = { lastSeq: seq }));
    return e;
  };
  const table = opts.ignoreCheckpoints ? [] : await tableCheckpoints(db, chainId);
  for (const c of table) entry(c.lastSeq).table = c;
  let fileCount = 0;
  if (opts.dir && !opts.ignoreCheckpoints) {
    for (const line of readCheckpointFile(opts.dir, chainId)) {
      if (!line.checkpoint) {
        add({ seq: null, id: null, kind: 'checkpoint_file_line', problem: `checkpoint file line ${line.line}: ${line.error}` });
        continue;
      }
      const c = line.checkpoint;
      fileCount += 1;
      if (c.chainId !== chainId) {
        add({ seq: null, id: null, kind: 'checkpoint_file_line', problem: `checkpoint file line ${line.line} is for chain ${c.chainId}` });
        continue;
      }
      const e = entry(c.lastSeq);
      if (e.file && !sameCheckpoint(e.file, c)) {
        add({ seq: c.lastSeq, id: null, kind: 'checkpoint_copies_differ', problem: `checkpoint file has two different checkpoints at seq ${c.lastSeq} (line ${line.line})` });
      }
      e.file ??= c;
    }
  }
  const sorted = [...entries.values()].sort((a, b) => a.lastSeq - b.lastSeq);
  for (const e of sorted) {
    // Checkpoints of purged epochs may have left the table; the file keeps them.
    const purged = e.lastSeq < anchorSeq;
    if (opts.dir && e.table && !e.file) {
      add({ seq: e.lastSeq, id: null, kind: 'checkpoint_missing_from_file', problem: `checkpoint at seq ${e.lastSeq} is in audit_checkpoints but not in the checkpoint file` });
    }
    if (e.file && !e.table && !purged) {
      add({ seq: e.lastSeq, id: null, kind: 'checkpoint_missing_from_table', problem: `checkpoint at seq ${e.lastSeq} is in the checkpoint file but not in audit_checkpoints (deleted from the database)` });
    }
    if (e.table && e.file && !sameCheckpoint(e.table, e.file)) {
      add({ seq: e.lastSeq, id: null, kind: 'checkpoint_copies_differ', problem: `checkpoint at seq ${e.lastSeq} differs between audit_checkpoints and the checkpoint file` });
    }
    for (const [where, c] of [['table', e.table], ['file', e.file]] as const) {
      if (!c) continue;
      if (!checkSignatures) {
        e.trusted ??= c;
        continue;
      }
      if (!opts.keyring.has(c.keyId)) {
        add({ seq: e.lastSeq, id: null, kind: 'checkpoint_unknown_key', problem: `checkpoint at seq ${e.lastSeq} (${where}) is signed by unknown key ${c.keyId}` });
      } else if (!verifyCheckpointSignature(opts.keyring, c)) {
        add({ seq: e.lastSeq, id: null, kind: 'checkpoint_bad_signature', problem: `checkpoint at seq ${e.lastSeq} (${where}): signature does not verify` });
      } else {
        e.trusted ??= c;
      }
    }
    const t = e.trusted;
    if (t && t.count !== t.lastSeq) {
      add({ seq: e.lastSeq, id: null, kind: 'checkpoint_count_mismatch', problem: `checkpoint at seq ${e.lastSeq} counts ${t.count} events` });
    }
  }
  if (anchor && !opts.ignoreCheckpoints) {
    const sealing = entries.get(anchor.seq)?.trusted;
    if (!sealing || sealing.lastHash !== anchor.hash.toString('hex')) {
      add({ seq: anchor.seq, id: null, kind: 'anchor_unsealed', problem: `anchor at seq ${anchor.seq} is not backed by a signed checkpoint with the same hash` });
    }
  }

  // ---- the chain itself ----
  let expected = anchorSeq + 1;
  let prevHash = anchor?.hash ?? ZERO_HASH;
  let eventsChecked = 0;
  let contiguous = true;
  // The last seq proven by the anchor or a matching checkpoint, and the row right after it.
  let provenSeq = anchorSeq;
  let firstUnproven: { seq: number; id: string } | null = null;
  // Seq of the latest row-level finding (gap, link, hash): it locates a break better than a checkpoint.
  let lastRowFinding = 0;
  let after = anchorSeq;
  for (;;) {
    const { rows } = await db.query<AuditEventRow>(
      `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [chainId, after, batchSize],
    );
    for (const r of rows) {
      const seq = Number(r.seq);
      const findingsBeforeRow = findingCount;
      eventsChecked += 1;
      if (seq !== expected) {
        contiguous = false;
        add(
          seq < expected
            ? { seq, id: r.id, kind: 'duplicate_seq', problem: `seq ${seq} appears again (row ${r.id})` }
            : { seq, id: r.id, kind: 'gap', problem: `seq ${expected}${seq - 1 > expected ? `..${seq - 1}` : ''} missing before this row (deleted)` },
        );
      } else if (!r.prev_hash.equals(prevHash)) {
        add({ seq, id: r.id, kind: 'broken_link', problem: `prev_hash does not match the previous row's hash (row inserted, removed or reordered)` });
      }
      const recomputed = computeAuditHash(r.prev_hash.length === 32 ? r.prev_hash : ZERO_HASH, hashedFromRow(r));
      if (!recomputed.equals(r.hash)) {
        add({ seq, id: r.id, kind: 'hash_mismatch', problem: `hash does not match the row's content (row altered)` });
      }
      if (findingCount > findingsBeforeRow) lastRowFinding = seq;
      if (seq === provenSeq + 1) firstUnproven = { seq, id: r.id };
      const cp = entries.get(seq)?.trusted;
      if (cp && seq >= anchorSeq) {
        if (cp.lastHash !== r.hash.toString('hex')) {
          // With no row-level finding since the last proof, nothing narrows it down: every row after
          // the last matching checkpoint is unproven, so the first of them is named. Otherwise the
          // row-level finding is the first bad row and this one is named at the checkpoint's seq.
          const from = lastRowFinding > provenSeq ? { seq, id: r.id } : (firstUnproven ?? { seq, id: r.id });
          add({
            seq: from.seq,
            id: from.id,
            kind: 'checkpoint_hash_mismatch',
            problem: `rows ${from.seq}..${seq} do not match the checkpoint signed at ${cp.createdAt}: seq ${seq} has hash ${r.hash.toString('hex').slice(0, 16)}…, the checkpoint says ${cp.lastHash.slice(0, 16)}… (rows replaced or forged)`,
          });
        } else {
          if (String(cp.lastId) !== r.id) {
            add({ seq, id: r.id, kind: 'checkpoint_id_mismatch', problem: `row id ${r.id} differs from the checkpoint's ${cp.lastId} (row deleted and re-inserted)` });
          }
          if (contiguous && cp.count !== anchorSeq + eventsChecked) {
            add({ seq, id: r.id, kind: 'checkpoint_count_mismatch', problem: `checkpoint counts ${cp.count} events, the chain has ${anchorSeq + eventsChecked} through seq ${seq}` });
          }
          provenSeq = seq;
          firstUnproven = null;
        }
      }
      prevHash = r.hash;
      expected = seq + 1;
      after = seq;
    }
    if (rows.length < batchSize) break;
  }
  const headSeq = after;

  const beyond = sorted.filter((e) => e.trusted && e.lastSeq > headSeq);
  if (beyond.length > 0) {
    const last = beyond[beyond.length - 1]!.trusted!;
    add({
      seq: headSeq + 1,
      id: null,
      kind: 'checkpoint_beyond_head',
      problem: `seq ${headSeq + 1}..${last.lastSeq} missing: the checkpoint signed at ${last.createdAt} covers ${last.count} events, the chain ends at seq ${headSeq} (tail truncated)`,
    });
  }

  const lastCp = sorted.filter((e) => e.trusted).pop();
  return {
    chainId,
    ok: findingCount === 0,
    anchor: anchor ? { seq: anchor.seq, hash: anchor.hash.toString('hex') } : null,
    headSeq,
    eventsChecked,
    checkpoints: { table: table.length, file: fileCount, checked: sorted.filter((e) => e.trusted).length, lastSeq: lastCp?.lastSeq ?? null },
    unsealedEvents: Math.max(0, headSeq - (lastCp?.lastSeq ?? anchorSeq)),
    findingCount,
    findings,
    firstBad,
  };
}

export async function verifyAuditLog(db: Db, opts: VerifyOptions): Promise<AuditVerifyReport> {
  const started = Date.now();
  const warnings: string[] = [];
  if (opts.keyring.size === 0) warnings.push('no AUDIT_SIGNING_KEY or AUDIT_PREVIOUS_PUBLIC_KEYS: checkpoint signatures were not checked');
  if (!opts.dir) warnings.push('no AUDIT_CHECKPOINT_DIR: the file copies of the checkpoints were not compared with the table');
  let chainIds: string[];
  if (opts.tenantId !== undefined) {
    const id = opts.tenantId.toLowerCase();
    if (!isAuditChainId(id)) throw new Error(`not a tenant id: ${JSON.stringify(opts.tenantId)}`);
    chainIds = [id];
  } else {
    chainIds = await allChains(db, opts.dir);
  }
  const chains: ChainReport[] = [];
  for (const chainId of chainIds) chains.push(await verifyChain(db, chainId, opts));
  if (chains.some((c) => c.eventsChecked > 0 && c.checkpoints.checked === 0) && opts.keyring.size > 0) {
    warnings.push('some chains have no checkpoint yet: their tail is not protected against truncation');
  }
  const broken = chains.filter((c) => !c.ok);
  return {
    ok: broken.length === 0,
    checkedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    scope: opts.tenantId ?? 'all chains',
    checkpointDir: opts.dir,
    keyIds: opts.keyring.ids(),
    totals: {
      chains: chains.length,
      events: chains.reduce((n, c) => n + c.eventsChecked, 0),
      checkpoints: chains.reduce((n, c) => n + c.checkpoints.checked, 0),
      brokenChains: broken.length,
    },
    warnings,
    chains,
  };
}

/** The report for a terminal. */
export function formatAuditReport(report: AuditVerifyReport): string {
  const lines: string[] = [];
  const t = report.totals;
  lines.push(`audit log verification — ${report.checkedAt} (${report.durationMs} ms), scope: ${report.scope}`);
  lines.push(`keys: ${report.keyIds.length ? report.keyIds.join(', ') : 'none'}; checkpoint files: ${report.checkpointDir ?? 'not configured'}`);
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  lines.push('');
  for (const c of report.chains) {
    const anchor = c.anchor ? `, from anchor seq ${c.anchor.seq}` : '';
    lines.push(
      `${c.ok ? 'OK    ' : 'BROKEN'} ${c.chainId}: ${c.eventsChecked} events (head seq ${c.headSeq}${anchor}), ` +
        `${c.checkpoints.checked} checkpoints checked (table ${c.checkpoints.table}, file ${c.checkpoints.file}), ${c.unsealedEvents} unsealed`,
    );
    if (c.firstBad) {
      const f: AuditFinding = c.firstBad;
      lines.push(`       first bad row: seq ${f.seq ?? '–'}${f.id ? `, id ${f.id}` : ''}: ${f.kind}: ${f.problem}`);
      for (const other of c.findings.filter((x) => x !== f).slice(0, 9)) {
        lines.push(`       also: seq ${other.seq ?? '–'}${other.id ? `, id ${other.id}` : ''}: ${other.kind}: ${other.problem}`);
      }
      if (c.findingCount > 10) lines.push(`       … ${c.findingCount - 10} more findings (--json yes lists ${c.findings.length})`);
    }
  }
  lines.push('');
  lines.push(
    report.ok
      ? `CLEAN: ${t.chains} chains, ${t.events} events, ${t.checkpoints} checkpoints verified`
      : `BROKEN: ${t.brokenChains} of ${t.chains} chains have findings (${t.events} events, ${t.checkpoints} checkpoints checked)`,
  );
  return `${lines.join('\n')}\n`;
}
