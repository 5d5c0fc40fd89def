import { Pool } from 'pg';
import { withScope, type Queryable } from '../db/tenant-scope';
import { scrubSecretsInText } from '../logger';
import { jsonSafeString, sanitizeAuditDetails } from './details';
import { computeAuditHash, isoMillis, type HashedAuditRow } from './hash';
import { auditChainId, type AuditActorType, type AuditEventInput } from './types';

/**
 * The audit log: one hash chain per tenant plus the `platform` chain (src/audit/hash.ts for the
 * hash, migrations/0004_audit_log.sql for the table and what the database enforces).
 *
 * Appending to a chain: take the chain's transaction-scoped advisory lock
 * (`pg_advisory_xact_lock(hashtextextended(chain))`), read its head (last seq and hash), insert
 * seq + 1 with hash = SHA-256(head hash ‖ JCS(row)) computed here; the lock is released at
 * COMMIT/ROLLBACK, so the next appender sees this row. Appends to ONE chain are serialized; other
 * chains never wait (no global lock, and no head table the app would have to UPDATE).
 * Rows are hashed on the head this process last saw (`heads` below); the database checks that head
 * under the lock and answers `stale` with the real one when another process moved it, and the
 * row is rehashed and sent again.
 *
 * Row-level security (migrations/0008_row_level_security.sql): a chain is readable and writable
 * only inside its scope — `withPlatform` for `platform`, `withTenant(tenantId)` for a tenant's —
 * and a scope holds exactly one chain. A client is taken to be inside the caller's scope already
 * (an event for another chain then fails on the policy, or is refused by `audit_append_batch`:
 * it never lands elsewhere). With a Pool, this module opens each chain's scope itself, except on
 * the coalesced path, whose one statement enters the chains' scopes in turn (see below). Three
 * paths:
 *  - one event, with a Pool (the common case): coalesced with this process's other concurrent
 *    appends — any mix of chains — into `audit_append_batch()` statements outside any scope (one
 *    round trip and one commit for many events; the function scopes itself to each chain in turn,
 *    migrations/0011_audit_append_scoped.sql); it only tries chain locks, so it never waits or
 *    deadlocks;
 *  - one event, in the caller's transaction: `audit_append()`, one round trip;
 *  - several events in one call: `audit_lock_chain_head()` per chain (in a fixed order), then one
 *    multi-row INSERT per chain. In the caller's transaction all or none; with a Pool one scope
 *    transaction per chain, so a call spanning chains is atomic per chain only.
 *
 * Atomicity with the action it records: pass the PoolClient of the action's transaction (inside
 * withTenant/withPlatform) and the audit row commits or rolls back with it: a token stored without
 * its audit row is impossible. The chain stays locked until that transaction ends, so keep it
 * short, and never wait inside it for an append to the same chain through the Pool (that one waits
 * for this lock). With a Pool, the promise resolves once the row is committed.
 * REPEATABLE READ / SERIALIZABLE callers' snapshots predate the lock, so a busy chain fails on
 * UNIQUE (chain_id, seq) there — never forks: audit inside READ COMMITTED transactions
 * (PostgreSQL's default).
 *
 * Idempotency: `idempotencyKey` is unique across the log. A repeat on the same chain returns the
 * row written first (`duplicate: true`), whatever the new event says; a repeat on another chain
 * cannot see that row (another scope) and fails on the unique index instead. Workflows append
 * through the `recordAuditEvent` activity (activities/audit.ts), keyed by workflow id + a sequence
 * number the workflow chooses, so activity retries never write twice.
 *
 * After a commit that crosses a multiple of the checkpoint interval, listeners (the checkpointer,
 * src/audit/checkpoints.ts) are told, outside the caller's transaction; a listener's failure never
 * reaches the caller.
 */

export interface AppendResult {
  chainId: string;
  seq: number;
  /** Hex SHA-256 of the stored row (the existing row's, for a duplicate). */
  hash: string;
  /** True when `idempotencyKey` had already been written: nothing new was appended. */
  duplicate: boolean;
}

export interface AuditAppendItem {
  event: AuditEventInput;
  idempotencyKey?: string;
}

export class AuditEventError extends TypeError {
  override name = 'AuditEventError';
}

const ACTOR_TYPES: ReadonlySet<AuditActorType> = new Set(['system', 'operator', 'tenant_user', 'meta', 'api_key']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ACTION = /^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/;
/** Lowest and highest accepted occurredAt (ISO-8601 with a 4-digit year; hashed as text). */
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const LIMITS = { actorId: 200, resource: 500, reason: 500, ip: 64, userAgent: 512, requestId: 200, idempotencyKey: 200 } as const;

/** Is this an audit chain id (`platform` or a lower-case UUID)? Also guards file names and SQL literals. */
export function isAuditChainId(id: string): boolean {
  return id === 'platform' || (UUID.test(id) && id === id.toLowerCase());
}

interface PreparedEvent {
  row: Omit<HashedAuditRow, 'seq'>;
  idempotencyKey: string | null;
}

/** Optional text: trimmed to its limit, well-formed, without U+0000; credentials scrubbed where asked. */
function text(value: unknown, limit: number, field: string, scrub = false): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') throw new AuditEventError(`${field} must be a string`);
  const s = jsonSafeString(scrub ? scrubSecretsInText(value) : value);
  return s.length > limit ? s.slice(0, limit) : s;
}

function occurredAt(value: unknown): string {
  if (value === undefined || value === null) return isoMillis(new Date());
  // Workflows pass dates through Temporal payloads, where they arrive as ISO strings.
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
  const t = date?.getTime();
  if (t === undefined || Number.isNaN(t) || t < MIN_TIME || t > MAX_TIME) throw new AuditEventError('occurredAt must be a valid date between 1970 and 9999');
  return isoMillis(date!);
}

/** Validates and normalizes an event into exactly what is hashed and stored. */
export function prepareAuditEvent(event: AuditEventInput, idempotencyKey?: string): PreparedEvent {
  if (event === null || typeof event !== 'object') throw new AuditEventError('event must be an object');
  let tenantId: string | null = null;
  if (event.tenantId !== null && event.tenantId !== undefined) {
    if (typeof event.tenantId !== 'string' || !UUID.test(event.tenantId)) throw new AuditEventError('tenantId must be a UUID or null');
    tenantId = event.tenantId.toLowerCase();
  }
  const actorType = event.actor?.type;
  if (!ACTOR_TYPES.has(actorType)) throw new AuditEventError(`actor.type must be one of ${[...ACTOR_TYPES].join(', ')}`);
  if (typeof event.action !== 'string' || event.action.length > 100 || !ACTION.test(event.action)) {
    throw new AuditEventError('action must look like `token.stored` (lower-case words joined by dots)');
  }
  if (event.outcome !== 'success' && event.outcome !== 'failure') throw new AuditEventError('outcome must be success or failure');
  const key = text(idempotencyKey, Number.MAX_SAFE_INTEGER, 'idempotencyKey');
  if (key !== null && key.length > LIMITS.idempotencyKey) throw new AuditEventError(`idempotencyKey is longer than ${LIMITS.idempotencyKey} characters`);
  return {
    idempotencyKey: key,
    row: {
      chainId: auditChainId(tenantId),
      tenantId,
      occurredAt: occurredAt(event.occurredAt),
      actorType,
      actorId: text(event.actor.id, LIMITS.actorId, 'actor.id'),
      action: event.action,
      resource: text(event.resource, LIMITS.resource, 'resource', true),
      outcome: event.outcome,
      reason: text(event.reason, LIMITS.reason, 'reason', true),
      ip: text(event.ip, LIMITS.ip, 'ip'),
      userAgent: text(event.userAgent, LIMITS.userAgent, 'userAgent', true),
      requestId: text(event.requestId, LIMITS.requestId, 'requestId'),
      details: sanitizeAuditDetails(event.details),
    },
  };
}

// ---- post-commit listeners ----------------------------------------------------------------------

export interface AuditAppendNotice {
  chainId: string;
  /** Seq before this append (the previous head) and the new head. */
  fromSeq: number;
  toSeq: number;
  /** False when the append ran in the caller's transaction: it may not be committed (yet, or ever). */
  committed: boolean;
}

type AppendListener = (notice: AuditAppendNotice) => void;
const listeners = new Set<AppendListener>();

/** Subscribes to appends (the checkpointer does); returns the unsubscribe function. */
export function onAuditAppended(listener: AppendListener): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

function notify(notices: AuditAppendNotice[]): void {
  if (listeners.size === 0) return;
  for (const notice of notices) {
    for (const listener of listeners) {
      try {
        listener(notice);
      } catch {
        // Never the caller's problem: the timer pass checkpoints the chain anyway.
      }
    }
  }
}

// ---- appending ----------------------------------------------------------------------------------

const HEAD_SQL = 'SELECT last_seq, last_hash FROM audit_lock_chain_head($1)';
const APPEND_ONE_SQL =
  'SELECT r_status, r_seq, r_hash, r_chain_id FROM audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)';
const COLUMNS = 'chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome, reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash';
const INSERT_MANY_SQL = `INSERT INTO audit_events (${COLUMNS})
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[],
                       $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[], $15::text[], $16::bytea[], $17::bytea[])`;
const EXISTING_SQL = 'SELECT idempotency_key, chain_id, seq, hash FROM audit_events WHERE idempotency_key = ANY($1::text[])';

/**
 * Each chain's head as this process last saw it (after its own appends). Only a guess: the
 * single-event path sends it with the row and `audit_append` checks it under the chain's lock
 * (`stale` → recompute on the real head and call again), so another process's appends, or a
 * rolled-back transaction, cost one extra round trip, never a wrong link. Bounded; oldest evicted.
 */
const heads = new Map<string, { seq: number; hash: Buffer }>();
const MAX_CACHED_HEADS = 10_000;
const UNKNOWN_HEAD = { seq: -1, hash: Buffer.alloc(32) };

function rememberHead(chainId: string, seq: number, hash: Buffer): void {
  heads.delete(chainId);
  heads.set(chainId, { seq, hash });
  if (heads.size > MAX_CACHED_HEADS) heads.delete(heads.keys().next().value!);
}

/**
 * Single-event appends through a Pool are coalesced: while up to `MAX_IN_FLIGHT` statements are
 * running, new events wait and then go together — any mix of chains, grouped by chain in arrival
 * order — into `audit_append_batch()` statements sent outside any scope (autocommit): one round
 * trip and one commit for many events (group commit). Row-level security still applies to every
 * row: outside a scope the function enters each chain's own scope in turn and leaves none behind
 * (migrations/0011_audit_append_scoped.sql). Because the database now works chain by chain (an
 * INSERT per chain, each with its own start-up cost), the waiting events are shared among the free
 * slots rather than all sent in the first: with every appender waiting on one statement, the next
 * flush would otherwise carry all of them again and the second slot would never be used (one
 * backend, one core). A chain with rows in flight takes no new rows until they are answered, so
 * one process never races itself for a chain. Per row the database answers:
 *  - appended / duplicate: done;
 *  - stale (another process appended, or the head was unknown): the head is remembered and the
 *    row goes back to the front of the queue, to be rehashed on it;
 *  - busy (another transaction holds the chain's lock, e.g. a caller's open transaction): the
 *    chain's rows are appended one by one with `audit_append()` in the chain's scope, which waits
 *    for the lock.
 * If the statement fails as a whole, every row is retried alone, so one bad row fails only its own
 * caller. Each caller's promise resolves after the statement carrying its row has committed.
 */
/**
 * Statements in flight per pool: two backends work side by side; more made smaller batches and more
 * CPU per event in bench/audit-append.ts (docs/benchmarks.md), and leaves the pool to other work.
 */
const MAX_IN_FLIGHT = 2;
const MAX_BATCH = 256;
const MAX_STALE_ROUNDS = 5;

interface Waiting {
  p: PreparedEvent;
  staleRounds: number;
  resolve: (r: { result: AppendResult; fromSeq: number }) => void;
  reject: (err: unknown) => void;
}

const APPEND_BATCH_SQL =
  'SELECT r_status, r_seq, r_hash, r_chain_id FROM audit_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)';

type BatchAnswer = { r_status: 'appended' | 'stale' | 'duplicate' | 'busy'; r_seq: string | null; r_hash: Buffer | null; r_chain_id: string };

class AppendCoalescer {
  private queue: Waiting[] = [];
  private inFlight = 0;
  private readonly busy = new Set<string>();
  private scheduled = false;
  private readonly maxInFlight: number;

  constructor(private readonly pool: Pool) {
    const size = (pool as unknown as { options?: { max?: number } }).options?.max ?? 10;
    this.maxInFlight = Math.max(1, Math.min(MAX_IN_FLIGHT, size - 1));
  }

  append(p: PreparedEvent): Promise<{ result: AppendResult; fromSeq: number }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ p, staleRounds: 0, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // After the current I/O callbacks: events arriving in the same turn share a statement.
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const ready = this.queue.reduce((n, w) => (this.busy.has(w.p.row.chainId) ? n : n + 1), 0);
      if (ready === 0) return;
      // The ready rows are shared among the free slots: the database works chain by chain (a
      // statement sees one scope at a time), so two halves side by side take half the time of one
      // whole, on two backends; the commit they each pay is the small part.
      const share = Math.min(MAX_BATCH, Math.ceil(ready / (this.maxInFlight - this.inFlight)));
      const chains = new Set<string>();
      const batch: Waiting[] = [];
      const rest: Waiting[] = [];
      for (const w of this.queue) {
        const chainId = w.p.row.chainId;
        // A chain in the batch takes its later rows too (up to MAX_BATCH); a free chain joins while there is room.
        const take = chains.has(chainId) ? batch.length < MAX_BATCH : !this.busy.has(chainId) && batch.length < share;
        if (take) {
          chains.add(chainId);
          batch.push(w);
        } else {
          rest.push(w);
        }
      }
      // Rows of a chain left behind wait their turn behind the ones sent (the chain is now busy).
      this.queue = rest;
      for (const c of chains) this.busy.add(c);
      this.inFlight += 1;
      void this.send(batch);
    }
  }

  /** The statement is answered: its slot is free, and chains not left to `oneByOne` take rows again. */
  private answered(chains: Iterable<string>, keepBusy: ReadonlySet<string>): void {
    this.inFlight -= 1;
    for (const c of chains) if (!keepBusy.has(c)) this.busy.delete(c);
    if (this.queue.length > 0) this.schedule();
  }

  /** Appends `rows` one by one (their chains stay busy meanwhile), then frees their chains. */
  private async fallBack(rows: Waiting[]): Promise<void> {
    try {
      await this.oneByOne(rows);
    } finally {
      for (const w of rows) this.busy.delete(w.p.row.chainId);
      if (this.queue.length > 0) this.schedule();
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    // Grouped by chain (stable), each row hashed on its predecessor, from the remembered head.
    const groups = new Map<string, Waiting[]>();
    for (const w of batch) {
      const g = groups.get(w.p.row.chainId);
      if (g) g.push(w);
      else groups.set(w.p.row.chainId, [w]);
    }
    const ordered: Waiting[] = [];
    const fromSeqs: number[] = [];
    const cols: unknown[][] = Array.from({ length: 17 }, () => []);
    for (const [chainId, rows] of groups) {
      let head = heads.get(chainId) ?? UNKNOWN_HEAD;
      for (const w of rows) {
        const row: HashedAuditRow = { ...w.p.row, seq: head.seq + 1 };
        // Unknown head: the database answers `stale` with it; nothing worth hashing yet.
        const hash = head === UNKNOWN_HEAD ? UNKNOWN_HEAD.hash : computeAuditHash(head.hash, row);
        const values = [
          chainId, head.seq, head.hash, hash, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource,
          row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details), w.p.idempotencyKey,
        ];
        values.forEach((v, c) => cols[c]!.push(v));
        ordered.push(w);
        fromSeqs.push(head.seq);
        if (head !== UNKNOWN_HEAD) head = { seq: row.seq, hash };
      }
    }

    let answers: BatchAnswer[];
    try {
      // The pool itself, not withScope: outside any scope the function enters each chain's own.
      answers = (await this.pool.query<BatchAnswer>({ name: 'audit_append_batch', text: APPEND_BATCH_SQL, values: cols })).rows;
      if (answers.length !== ordered.length) throw new Error(`audit_append_batch answered ${answers.length} rows for ${ordered.length}`);
    } catch {
      for (const chainId of groups.keys()) heads.delete(chainId);
      this.answered(groups.keys(), new Set(groups.keys()));
      await this.fallBack(ordered);
      return;
    }

    const requeue: Waiting[] = [];
    const blocked: Waiting[] = [];
    const notices: AuditAppendNotice[] = [];
    answers.forEach((a, i) => {
      const w = ordered[i]!;
      const chainId = w.p.row.chainId;
      const seq = a.r_seq === null ? NaN : Number(a.r_seq);
      switch (a.r_status) {
        case 'appended':
          rememberHead(chainId, seq, a.r_hash!);
          notices.push({ chainId, fromSeq: fromSeqs[i]!, toSeq: seq, committed: true });
          w.resolve({ result: { chainId, seq, hash: a.r_hash!.toString('hex'), duplicate: false }, fromSeq: fromSeqs[i]! });
          break;
        case 'duplicate':
          w.resolve({ result: { chainId: a.r_chain_id, seq, hash: a.r_hash!.toString('hex'), duplicate: true }, fromSeq: seq });
          break;
        case 'stale':
          rememberHead(chainId, seq, a.r_hash!);
          w.staleRounds += 1;
          (w.staleRounds > MAX_STALE_ROUNDS ? blocked : requeue).push(w);
          break;
        default:
          blocked.push(w);
      }
    });
    notify(notices);
    // Back to the front, in order: they precede anything queued for their chains since. A chain
    // with a blocked row stays busy (also for its stale rows) until `fallBack` has appended it.
    const blockedChains = new Set(blocked.map((w) => w.p.row.chainId));
    const stillBlocked = requeue.filter((w) => blockedChains.has(w.p.row.chainId));
    if (requeue.length > 0) this.queue.unshift(...requeue.filter((w) => !blockedChains.has(w.p.row.chainId)));
    this.answered(groups.keys(), blockedChains);
    if (blocked.length > 0) await this.fallBack(orderedSubset(ordered, [...blocked, ...stillBlocked]));
  }

  /** Chains in parallel, each chain's rows in order, one `audit_append()` each (waits for locks). */
  private async oneByOne(rows: Waiting[]): Promise<void> {
    const byChain = new Map<string, Waiting[]>();
    for (const w of rows) byChain.set(w.p.row.chainId, [...(byChain.get(w.p.row.chainId) ?? []), w]);
    await Promise.all(
      [...byChain.values()].map(async (chainRows) => {
        for (const w of chainRows) {
          try {
            const outcome = await appendOneRetrying(this.pool, w.p);
            if (!outcome.result.duplicate) notify([{ chainId: outcome.result.chainId, fromSeq: outcome.fromSeq, toSeq: outcome.result.seq, committed: true }]);
            w.resolve(outcome);
          } catch (err) {
            w.reject(err);
          }
        }
      }),
    );
  }
}

/** The members of `subset`, in the order they have in `all`. */
function orderedSubset<T>(all: T[], subset: T[]): T[] {
  const members = new Set(subset);
  return all.filter((x) => members.has(x));
}

const coalescers = new WeakMap<Pool, AppendCoalescer>();

function coalescerFor(pool: Pool): AppendCoalescer {
  let c = coalescers.get(pool);
  if (!c) coalescers.set(pool, (c = new AppendCoalescer(pool)));
  return c;
}

function rowValues(row: HashedAuditRow, key: string | null, prevHash: Buffer, hash: Buffer): unknown[] {
  return [
    row.chainId, row.seq, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource,
    row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details), key, prevHash, hash,
  ];
}

const MAX_STALE_RETRIES = 20;
const UNIQUE_VIOLATION = '23505';
const MAX_ATTEMPTS = 3;

/**
 * `appendOne` in its own transaction in the chain's scope, retrying when a same-key append won a
 * race (the repeat then finds the key and answers `duplicate`).
 */
async function appendOneRetrying(pool: Pool, p: PreparedEvent): Promise<{ result: AppendResult; fromSeq: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await withScope(pool, p.row.tenantId, (tx) => appendOne(tx, p));
    } catch (err) {
      if ((err as { code?: string }).code === UNIQUE_VIOLATION && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}

/**
 * One event, one statement (`audit_append`) in the caller's transaction. The first call takes the
 * chain's lock, so a stale head is answered once and the second call appends.
 */
async function appendOne(db: Queryable, p: PreparedEvent): Promise<{ result: AppendResult; fromSeq: number }> {
  const chainId = p.row.chainId;
  let head = heads.get(chainId) ?? UNKNOWN_HEAD;
  for (let attempt = 0; attempt < MAX_STALE_RETRIES; attempt++) {
    const row: HashedAuditRow = { ...p.row, seq: head.seq + 1 };
    // With an unknown head the call only fetches it (the check fails), so nothing needs hashing.
    const hash = head === UNKNOWN_HEAD ? UNKNOWN_HEAD.hash : computeAuditHash(head.hash, row);
    const values = [
      chainId, head.seq, head.hash, hash, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource,
      row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details), p.idempotencyKey,
    ];
    let r: { r_status: 'appended' | 'stale' | 'duplicate'; r_seq: string; r_hash: Buffer; r_chain_id: string };
    try {
      r = (await db.query<typeof r>({ name: 'audit_append', text: APPEND_ONE_SQL, values })).rows[0]!;
    } catch (err) {
      heads.delete(chainId);
      throw err;
    }
    const seq = Number(r.r_seq);
    if (r.r_status === 'appended') {
      rememberHead(chainId, seq, r.r_hash);
      return { result: { chainId, seq, hash: r.r_hash.toString('hex'), duplicate: false }, fromSeq: head.seq };
    }
    if (r.r_status === 'duplicate') {
      return { result: { chainId: r.r_chain_id, seq, hash: r.r_hash.toString('hex'), duplicate: true }, fromSeq: seq };
    }
    head = { seq, hash: r.r_hash };
    rememberHead(chainId, seq, r.r_hash);
  }
  throw new Error(`audit chain ${chainId}: head kept moving after ${MAX_STALE_RETRIES} attempts (another writer bypassing audit_append?)`);
}

/** Appends within the caller's transaction (or ours). Returns results in input order, and what to notify. */
async function appendWithin(db: Queryable, prepared: PreparedEvent[], committed: boolean): Promise<{ results: AppendResult[]; notices: AuditAppendNotice[] }> {
  const results: AppendResult[] = new Array(prepared.length);
  const byChain = new Map<string, number[]>();
  prepared.forEach((p, i) => {
    const list = byChain.get(p.row.chainId);
    if (list) list.push(i);
    else byChain.set(p.row.chainId, [i]);
  });
  // A fixed lock order: two batches over the same chains cannot deadlock each other.
  const chains = [...byChain.keys()].sort();
  const locked = new Map<string, { seq: number; hash: Buffer }>();
  for (const chainId of chains) {
    const { rows } = await db.query<{ last_seq: string; last_hash: Buffer }>({ name: 'audit_head', text: HEAD_SQL, values: [chainId] });
    locked.set(chainId, { seq: Number(rows[0]!.last_seq), hash: rows[0]!.last_hash });
  }

  // Idempotency, checked while holding the chains' locks: a same-chain repeat that committed
  // before us is visible now; one in this batch is matched below.
  const keys = prepared.map((p) => p.idempotencyKey).filter((k): k is string => k !== null);
  const seen = new Map<string, AppendResult>();
  if (keys.length > 0) {
    const { rows } = await db.query<{ idempotency_key: string; chain_id: string; seq: string; hash: Buffer }>(EXISTING_SQL, [keys]);
    for (const r of rows) seen.set(r.idempotency_key, { chainId: r.chain_id, seq: Number(r.seq), hash: r.hash.toString('hex'), duplicate: true });
  }

  const notices: AuditAppendNotice[] = [];
  for (const chainId of chains) {
    const head = locked.get(chainId)!;
    const fromSeq = head.seq;
    const batch: unknown[][] = [];
    for (const i of byChain.get(chainId)!) {
      const p = prepared[i]!;
      const existing = p.idempotencyKey === null ? undefined : seen.get(p.idempotencyKey);
      if (existing) {
        results[i] = { ...existing, duplicate: true };
        continue;
      }
      const row: HashedAuditRow = { ...p.row, seq: head.seq + 1 };
      const hash = computeAuditHash(head.hash, row);
      batch.push(rowValues(row, p.idempotencyKey, head.hash, hash));
      head.seq = row.seq;
      head.hash = hash;
      results[i] = { chainId, seq: row.seq, hash: hash.toString('hex'), duplicate: false };
      if (p.idempotencyKey !== null) seen.set(p.idempotencyKey, results[i]!);
    }
    if (batch.length > 0) {
      const columns = batch[0]!.map((_, c) => batch.map((values) => values[c]));
      await db.query({ name: 'audit_insert_many', text: INSERT_MANY_SQL, values: columns });
      notices.push({ chainId, fromSeq, toSeq: head.seq, committed });
    }
  }
  return { results, notices };
}

function rememberNoticedHeads(notices: AuditAppendNotice[], results: AppendResult[]): void {
  for (const n of notices) rememberHead(n.chainId, n.toSeq, Buffer.from(results.find((r) => r.chainId === n.chainId && r.seq === n.toSeq)!.hash, 'hex'));
}

/** One chain's events in one scope transaction of their own; retried when a same-key append won a race. */
async function appendChainInScope(pool: Pool, prepared: PreparedEvent[]): Promise<AppendResult[]> {
  const tenantId = prepared[0]!.row.tenantId;
  for (let attempt = 1; ; attempt++) {
    let outcome: { results: AppendResult[]; notices: AuditAppendNotice[] };
    try {
      outcome = await withScope(pool, tenantId, (tx) => appendWithin(tx, prepared, true));
    } catch (err) {
      heads.delete(prepared[0]!.row.chainId);
      // A same-key append, or an append that bypassed the lock, won the race: the repeat then
      // finds the key and returns it as a duplicate.
      if ((err as { code?: string }).code === UNIQUE_VIOLATION && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
    rememberNoticedHeads(outcome.notices, outcome.results);
    notify(outcome.notices);
    return outcome.results;
  }
}

/**
 * Appends events (any mix of chains). With a PoolClient (inside the caller's withTenant or
 * withPlatform) the caller's transaction decides: all or none. With a Pool each chain's events go
 * in one transaction in that chain's scope (one statement for a single event): all or none per
 * chain, chains in a fixed order. Results are in input order.
 */
export async function appendAuditEvents(db: Queryable, items: readonly AuditAppendItem[]): Promise<AppendResult[]> {
  const prepared = items.map((item) => prepareAuditEvent(item.event, item.idempotencyKey));
  if (prepared.length === 0) return [];
  const pool = db instanceof Pool ? db : null;

  if (prepared.length === 1) {
    if (pool) return [(await coalescerFor(pool).append(prepared[0]!)).result]; // notifies itself
    const { result, fromSeq } = await appendOne(db, prepared[0]!);
    if (!result.duplicate) notify([{ chainId: result.chainId, fromSeq, toSeq: result.seq, committed: false }]);
    return [result];
  }

  if (!pool) {
    const { results, notices } = await appendWithin(db, prepared, false);
    rememberNoticedHeads(notices, results);
    notify(notices);
    return results;
  }

  const byChain = new Map<string, number[]>();
  prepared.forEach((p, i) => byChain.set(p.row.chainId, [...(byChain.get(p.row.chainId) ?? []), i]));
  const results: AppendResult[] = new Array(prepared.length);
  for (const chainId of [...byChain.keys()].sort()) {
    const indexes = byChain.get(chainId)!;
    const chainResults = await appendChainInScope(pool, indexes.map((i) => prepared[i]!));
    indexes.forEach((i, k) => (results[i] = chainResults[k]!));
  }
  return results;
}

/** Appends one event; see `appendAuditEvents` and the module comment. */
export async function appendAuditEvent(db: Queryable, event: AuditEventInput, opts: { idempotencyKey?: string } = {}): Promise<AppendResult> {
  const [result] = await appendAuditEvents(db, [{ event, idempotencyKey: opts.idempotencyKey }]);
  return result!;
}
