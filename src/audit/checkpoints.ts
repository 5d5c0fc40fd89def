import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Pool, PoolClient } from 'pg';
import type { Config } from '../config';
import { withScope, type Queryable } from '../db/tenant-scope';
import type { Logger } from '../logger';
import { jcs } from './hash';
import { AuditKeyring, AuditSigner } from './keys';
import { isAuditChainId, onAuditAppended } from './log';
import { auditChainIds, chainTenant } from './scope';

export { auditChainIds };

/**
 * Signed checkpoints of the audit chains.
 *
 * A checkpoint states "chain C had `count` events; the last one, seq `lastSeq` (row id `lastId`),
 * has hash `lastHash`", signed with Ed25519 by the key in AUDIT_SIGNING_KEY (never stored in the
 * database). It is written twice: as a row of `audit_checkpoints` (immutable like the log) and as
 * one JSON line appended to `<AUDIT_CHECKPOINT_DIR>/<chainId>.jsonl` (opened with 'a', fsynced),
 * a location outside the database (a volume, an object-store mount with append semantics, a WORM
 * bucket sync). Hash links alone cannot reveal a truncated tail, or a tail replaced by a suffix
 * with recomputed hashes: a signed checkpoint beyond the current head, or whose lastHash differs
 * from the stored event's, does (src/audit/verify.ts).
 *
 * Policy, per chain: a checkpoint when ≥ N events (AUDIT_CHECKPOINT_EVERY_EVENTS) were appended
 * since the last one, or when ≥ M ms (AUDIT_CHECKPOINT_EVERY_MS) passed since the last one (since
 * the first unsealed event for a chain that has none) and there are new events.
 *  - `runCheckpointPass` checks every chain: the worker calls it on a timer
 *    (`startAuditCheckpointer`) or from a Temporal Schedule's activity;
 *  - `startAuditCheckpointer` also listens to appends (src/audit/log.ts) and seals a chain right
 *    after a commit crosses a multiple of N — outside the appender's transaction, and a failure
 *    is only logged.
 *
 * Row-level security: a chain's events and checkpoints are visible only in its scope, so a pass
 * lists chain ids (`audit_chain_ids()`) and then looks at, and seals, each chain in one short
 * transaction in the chain's scope.
 *
 * Writing order, per chain, under a transaction-scoped advisory lock (one sealer per chain across
 * processes; appends are never blocked): INSERT the row → append + fsync the file line → COMMIT.
 * A crash between the fsync and the commit leaves a line without a row; the next pass finds the
 * file's last line newer than the table's last row, checks its signature and inserts it ("healed").
 * Every process that seals must therefore share one AUDIT_CHECKPOINT_DIR (or run the pass in one
 * worker only): a per-host directory would lack the other hosts' lines, which verify reports.
 */

export const CHECKPOINT_FORMAT = 'switchboard-audit-checkpoint/v1';

/** What is signed: UTF-8 of the JCS of exactly these fields. */
export interface CheckpointPayload {
  format: typeof CHECKPOINT_FORMAT;
  chainId: string;
  lastSeq: number;
  lastId: number;
  /** Hex SHA-256. */
  lastHash: string;
  /** Events from genesis through lastSeq (= lastSeq: sequence numbers are contiguous from 1). */
  count: number;
  /** ISO-8601, milliseconds. */
  createdAt: string;
  keyId: string;
}

export interface SignedCheckpoint extends CheckpointPayload {
  /** Base64 Ed25519 signature of `checkpointMessage(payload)`. */
  signature: string;
}

export function checkpointPayload(c: CheckpointPayload): CheckpointPayload {
  return {
    format: CHECKPOINT_FORMAT,
    chainId: c.chainId,
    lastSeq: c.lastSeq,
    lastId: c.lastId,
    lastHash: c.lastHash,
    count: c.count,
    createdAt: c.createdAt,
    keyId: c.keyId,
  };
}

export function checkpointMessage(c: CheckpointPayload): Buffer {
  return Buffer.from(jcs(checkpointPayload(c)), 'utf8');
}

export function signCheckpoint(signer: AuditSigner, c: Omit<CheckpointPayload, 'format' | 'keyId'>): SignedCheckpoint {
  const payload = checkpointPayload({ ...c, format: CHECKPOINT_FORMAT, keyId: signer.keyId });
  return { ...payload, signature: signer.sign(checkpointMessage(payload)).toString('base64') };
}

export function verifyCheckpointSignature(keyring: AuditKeyring, c: SignedCheckpoint): boolean {
  if (c.format !== CHECKPOINT_FORMAT || typeof c.signature !== 'string') return false;
  return keyring.verify(c.keyId, checkpointMessage(c), Buffer.from(c.signature, 'base64'));
}

/** Both copies compare equal when every signed field and the signature are equal. */
export function sameCheckpoint(a: SignedCheckpoint, b: SignedCheckpoint): boolean {
  return jcs({ ...checkpointPayload(a), signature: a.signature }) === jcs({ ...checkpointPayload(b), signature: b.signature });
}

// ---- the table ----------------------------------------------------------------------------------

interface CheckpointRow {
  chain_id: string;
  last_seq: string;
  last_id: string;
  last_hash: Buffer;
  event_count: string;
  created_at: Date;
  key_id: string;
  signature: Buffer;
}

const CHECKPOINT_COLUMNS = 'chain_id, last_seq, last_id, last_hash, event_count, created_at, key_id, signature';

export function checkpointFromRow(r: CheckpointRow): SignedCheckpoint {
  return {
    format: CHECKPOINT_FORMAT,
    chainId: r.chain_id,
    lastSeq: Number(r.last_seq),
    lastId: Number(r.last_id),
    lastHash: r.last_hash.toString('hex'),
    count: Number(r.event_count),
    createdAt: r.created_at.toISOString(),
    keyId: r.key_id,
    signature: Buffer.from(r.signature).toString('base64'),
  };
}

/** A chain's checkpoint rows; `db` must be in the chain's scope (a client of withTenant/withPlatform). */
export async function tableCheckpoints(db: Queryable, chainId: string): Promise<SignedCheckpoint[]> {
  const { rows } = await db.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain_id = $1 ORDER BY last_seq`, [chainId]);
  return rows.map(checkpointFromRow);
}

/** `ifAbsent`: a concurrent seal of the same position is not an error (returns false). In the chain's scope. */
export async function insertCheckpoint(db: Queryable, c: SignedCheckpoint, ifAbsent = false): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO audit_checkpoints (${CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)${ifAbsent ? ' ON CONFLICT (chain_id, last_seq) DO NOTHING' : ''}`,
    [c.chainId, c.lastSeq, c.lastId, Buffer.from(c.lastHash, 'hex'), c.count, c.createdAt, c.keyId, Buffer.from(c.signature, 'base64')],
  );
  return rowCount === 1;
}

// ---- the files ----------------------------------------------------------------------------------

export function checkpointFile(dir: string, chainId: string): string {
  if (!isAuditChainId(chainId)) throw new Error(`not an audit chain id: ${JSON.stringify(chainId)}`);
  return path.join(dir, `${chainId}.jsonl`);
}

/** Appends one line and fsyncs it (and, for a new file, the directory entry). */
export function appendCheckpointLine(dir: string, c: SignedCheckpoint): void {
  const file = checkpointFile(dir, c.chainId);
  const created = !existsSync(file);
  if (created) mkdirSync(dir, { recursive: true });
  const fd = openSync(file, 'a', 0o640);
  try {
    const line = Buffer.from(`${jcs(c)}\n`, 'utf8');
    let written = 0;
    while (written < line.length) written += writeSync(fd, line, written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) {
    try {
      const dfd = openSync(dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      // Platforms without directory fsync: the file's own fsync is what we can do.
    }
  }
}

export interface FileCheckpointLine {
  line: number;
  checkpoint?: SignedCheckpoint;
  /** Why the line is not a checkpoint. */
  error?: string;
}

function parseLine(text: string, line: number): FileCheckpointLine {
  try {
    const v = JSON.parse(text) as SignedCheckpoint;
    const ok =
      v !== null && typeof v === 'object' && typeof v.chainId === 'string' && Number.isSafeInteger(v.lastSeq) && Number.isSafeInteger(v.lastId) &&
      typeof v.lastHash === 'string' && Number.isSafeInteger(v.count) && typeof v.createdAt === 'string' && typeof v.keyId === 'string' && typeof v.signature === 'string';
    return ok ? { line, checkpoint: { ...checkpointPayload(v), format: v.format, signature: v.signature } } : { line, error: 'not a checkpoint object' };
  } catch {
    return { line, error: 'not valid JSON' };
  }
}

/** Every line of a chain's checkpoint file (an absent file has none). */
export function readCheckpointFile(dir: string, chainId: string): FileCheckpointLine[] {
  const file = checkpointFile(dir, chainId);
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((text, i) => parseLine(text, i + 1));
}

/** The last complete line of a chain's file, read from its tail only. */
function readLastCheckpointLine(dir: string, chainId: string): SignedCheckpoint | undefined {
  const file = checkpointFile(dir, chainId);
  if (!existsSync(file)) return undefined;
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n').filter((l) => l.trim() !== '');
    const last = lines[lines.length - 1];
    return last === undefined ? undefined : parseLine(last, 0).checkpoint;
  } finally {
    closeSync(fd);
  }
}

/** Chain ids that have a checkpoint file in `dir`. */
export function checkpointFileChains(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .map((f) => f.slice(0, -'.jsonl'.length))
    .filter(isAuditChainId);
}

// ---- sealing ------------------------------------------------------------------------------------

export interface CheckpointPolicy {
  /** N: seal once this many events were appended since the chain's last checkpoint. */
  everyEvents: number;
  /** M: seal a chain with new events once this long passed since its last checkpoint. */
  everyMs: number;
}

export interface CheckpointOptions extends CheckpointPolicy {
  dir: string;
  /** Only these chains (default: every chain with events). */
  chains?: string[];
  /** Seal every chain (of `chains`) with new events, due or not. */
  force?: boolean;
  now?: () => Date;
}

export interface CheckpointWritten {
  chainId: string;
  lastSeq: number;
  count: number;
  keyId: string;
  /** Re-inserted from the file's last line after a crash between file write and commit. */
  healed?: boolean;
}

interface ChainStatus {
  head_seq: string | null;
  cp_seq: string | null;
  cp_at: Date | null;
  first_open_at: Date | null;
}

/** One chain's head, last checkpoint, and when its first unsealed event was recorded (in its scope). */
const STATUS = `
  SELECT (SELECT e.seq FROM audit_events e WHERE e.chain_id = $1 ORDER BY e.seq DESC LIMIT 1) AS head_seq,
         cp.last_seq AS cp_seq, cp.created_at AS cp_at,
         (SELECT f.recorded_at FROM audit_events f WHERE f.chain_id = $1 AND f.seq > coalesce(cp.last_seq, 0)
           ORDER BY f.seq LIMIT 1) AS first_open_at
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT k.last_seq, k.created_at FROM audit_checkpoints k WHERE k.chain_id = $1
                        ORDER BY k.last_seq DESC LIMIT 1) cp ON true`;

/**
 * Seals the chains that are due under the policy (or all of `chains` with new events, with
 * `force`). Returns the checkpoints written. Needs a Pool: each chain is looked at and sealed in
 * its own short transaction in its scope, never inside a caller's.
 */
export async function checkpointChains(pool: Pool, signer: AuditSigner, opts: CheckpointOptions): Promise<CheckpointWritten[]> {
  const now = (opts.now ?? (() => new Date()))();
  // A listed id that is no chain (a row forged behind the app's back) cannot be sealed: verify reports it.
  const chains = opts.chains ?? (await auditChainIds(pool)).filter(isAuditChainId);
  const written: CheckpointWritten[] = [];
  for (const chainId of chains) {
    const file = checkpointFile(opts.dir, chainId); // validates the chain id before anything is written
    written.push(
      ...(await withScope(pool, chainTenant(chainId), async (tx) => {
        const s = (await tx.query<ChainStatus>({ name: 'audit_checkpoint_status', text: STATUS, values: [chainId] })).rows[0]!;
        const head = s.head_seq === null ? 0 : Number(s.head_seq);
        const sealed = s.cp_seq === null ? 0 : Number(s.cp_seq);
        if (head <= sealed) return [];
        const since = s.cp_at ?? s.first_open_at ?? now;
        const due = opts.force || head - sealed >= opts.everyEvents || now.getTime() - since.getTime() >= opts.everyMs;
        return due ? sealIn(tx, signer, chainId, file, now) : [];
      })),
    );
  }
  return written;
}

/** Checkpoints one chain at its current head (if it moved past its last checkpoint), in its scope. */
export async function sealChain(pool: Pool, signer: AuditSigner, chainId: string, dir: string, now = new Date()): Promise<CheckpointWritten[]> {
  const file = checkpointFile(dir, chainId); // validates the chain id before anything is written
  return withScope(pool, chainTenant(chainId), (tx) => sealIn(tx, signer, chainId, file, now));
}

/** The seal itself, in the caller's scope transaction: the row, then the file line; the caller commits. */
async function sealIn(client: PoolClient, signer: AuditSigner, chainId: string, file: string, now: Date): Promise<CheckpointWritten[]> {
  const written: CheckpointWritten[] = [];
  const locked = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock(hashtextextended('switchboard.audit-checkpoint:' || $1, 0)) AS ok", [chainId]);
  if (!locked.rows[0]!.ok) return written; // another process is sealing this chain right now
  const head = (
    await client.query<{ id: string; seq: string; hash: Buffer }>('SELECT id, seq, hash FROM audit_events WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1', [chainId])
  ).rows[0];
  const last = (
    await client.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain_id = $1 ORDER BY last_seq DESC LIMIT 1`, [chainId])
  ).rows[0];
  let sealedSeq = last ? Number(last.last_seq) : 0;
  const dir = path.dirname(file);

  // A line the file has but the table lacks (crash between fsync and commit): put it back.
  const tail = readLastCheckpointLine(dir, chainId);
  if (tail && tail.chainId === chainId && tail.lastSeq > sealedSeq && verifyCheckpointSignature(new AuditKeyring([signer.publicKey]), tail)) {
    await insertCheckpoint(client, tail);
    written.push({ chainId, lastSeq: tail.lastSeq, count: tail.count, keyId: tail.keyId, healed: true });
    sealedSeq = tail.lastSeq;
  }

  if (head && Number(head.seq) > sealedSeq) {
    const checkpoint = signCheckpoint(signer, {
      chainId,
      lastSeq: Number(head.seq),
      lastId: Number(head.id),
      lastHash: head.hash.toString('hex'),
      count: Number(head.seq),
      createdAt: now.toISOString(),
    });
    await insertCheckpoint(client, checkpoint);
    appendCheckpointLine(dir, checkpoint);
    written.push({ chainId, lastSeq: checkpoint.lastSeq, count: checkpoint.count, keyId: checkpoint.keyId });
  }
  return written;
}

export interface CheckpointDeps extends CheckpointPolicy {
  pool: Pool;
  signer: AuditSigner;
  dir: string;
  logger?: Logger;
}

/** One pass over every chain (timer or Temporal Schedule). Throws on database/file errors. */
export async function runCheckpointPass(deps: CheckpointDeps, opts: { force?: boolean; now?: () => Date } = {}): Promise<{ chains: number; checkpoints: CheckpointWritten[] }> {
  const written = await checkpointChains(deps.pool, deps.signer, { dir: deps.dir, everyEvents: deps.everyEvents, everyMs: deps.everyMs, ...opts });
  const chains = new Set(written.map((w) => w.chainId)).size;
  if (written.length > 0) deps.logger?.info({ chains, checkpoints: written.length, healed: written.filter((w) => w.healed).length }, 'audit: checkpoints written');
  return { chains, checkpoints: written };
}

export interface AuditCheckpointer {
  /** Runs a pass now (what the timer does). */
  runNow(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The worker's checkpointing: a timer pass every min(M, 60 s), plus an immediate seal of a chain
 * whose committed appends cross a multiple of N. Appends made inside a caller's transaction are
 * looked at a second later (they may not be committed yet; the timer catches them otherwise).
 */
export function startAuditCheckpointer(deps: CheckpointDeps & { intervalMs?: number }): AuditCheckpointer {
  const inFlight = new Map<string, Promise<void>>();
  const again = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

  const sealSoon = (chainId: string): void => {
    if (stopped) return;
    if (inFlight.has(chainId)) {
      again.add(chainId);
      return;
    }
    const run = checkpointChains(deps.pool, deps.signer, { dir: deps.dir, everyEvents: deps.everyEvents, everyMs: deps.everyMs, chains: [chainId] })
      .then((w) => {
        if (w.length > 0) deps.logger?.debug({ chainId, lastSeq: w[w.length - 1]!.lastSeq }, 'audit: checkpoint written');
      })
      .catch((err: unknown) => deps.logger?.warn({ err, chainId }, 'audit: checkpoint failed; the next pass retries'))
      .finally(() => {
        inFlight.delete(chainId);
        if (again.delete(chainId)) sealSoon(chainId);
      });
    inFlight.set(chainId, run);
  };

  const unsubscribe = onAuditAppended((n) => {
    if (Math.floor(n.fromSeq / deps.everyEvents) === Math.floor(n.toSeq / deps.everyEvents)) return;
    if (n.committed) {
      setImmediate(() => sealSoon(n.chainId));
    } else {
      const t = setTimeout(() => {
        timers.delete(t);
        sealSoon(n.chainId);
      }, 1000);
      t.unref();
      timers.add(t);
    }
  });

  let passing: Promise<void> | undefined;
  const runNow = (): Promise<void> => {
    passing ??= runCheckpointPass(deps)
      .then(() => undefined)
      .catch((err: unknown) => deps.logger?.warn({ err }, 'audit: checkpoint pass failed; retrying at the next interval'))
      .finally(() => {
        passing = undefined;
      });
    return passing;
  };
  const interval = setInterval(() => void runNow(), deps.intervalMs ?? Math.min(deps.everyMs, 60_000));
  interval.unref();

  return {
    runNow,
    async stop() {
      stopped = true;
      clearInterval(interval);
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      await Promise.all([passing, ...inFlight.values()]);
    },
  };
}

/** The signer, keyring and settings from the configuration; `null` parts when not configured. */
export function auditSettings(config: Pick<Config, 'AUDIT_SIGNING_KEY' | 'AUDIT_PREVIOUS_PUBLIC_KEYS' | 'AUDIT_CHECKPOINT_DIR' | 'AUDIT_CHECKPOINT_EVERY_EVENTS' | 'AUDIT_CHECKPOINT_EVERY_MS'>): {
  signer: AuditSigner | null;
  keyring: AuditKeyring;
  dir: string | null;
  policy: CheckpointPolicy;
} {
  const signer = config.AUDIT_SIGNING_KEY ? AuditSigner.fromSpec(config.AUDIT_SIGNING_KEY) : null;
  return {
    signer,
    keyring: AuditKeyring.from({ signer, previousPublicKeys: config.AUDIT_PREVIOUS_PUBLIC_KEYS }),
    dir: config.AUDIT_CHECKPOINT_DIR ? path.resolve(config.AUDIT_CHECKPOINT_DIR) : null,
    policy: { everyEvents: config.AUDIT_CHECKPOINT_EVERY_EVENTS, everyMs: config.AUDIT_CHECKPOINT_EVERY_MS },
  };
}

/**
 * For the worker: starts checkpointing when AUDIT_SIGNING_KEY and AUDIT_CHECKPOINT_DIR are set
 * (both required in production); otherwise logs a warning and returns null.
 */
export function startAuditCheckpointerFromConfig(config: Config, pool: Pool, logger?: Logger): AuditCheckpointer | null {
  const { signer, dir, policy } = auditSettings(config);
  if (!signer || !dir) {
    logger?.warn('audit: AUDIT_SIGNING_KEY or AUDIT_CHECKPOINT_DIR not set: no checkpoints, so a truncated audit log tail would go unnoticed');
    return null;
  }
  return startAuditCheckpointer({ pool, signer, dir, logger, ...policy });
}
