import type { Pool } from 'pg';
import { withPlatform } from './tenant-scope';

/**
 * Token buckets in `graph_call_budgets` (migration 0013), shared by every worker: a caller takes
 * one token per Graph call, so however many workers, activities and retries run at once, the
 * calls stay within the budget. A platform table (no tenant, no RLS): it holds counters only.
 *
 * The guarantee: in ANY 60-second window at most `perMinute` calls are granted. A bucket of
 * capacity C refilled at R tokens per second grants at most C + 60·R in 60 s (it starts the
 * window with at most C tokens and gains at most 60·R during it), so C and R are chosen with
 * C + 60·R ≤ perMinute:
 *
 *   C = max(1, floor(perMinute / 60))       (one second's worth of burst)
 *   R = max(perMinute − C, 1) / 61  per s
 *
 * 61 rather than 60 leaves a second of refill unspent: grants are timed by the database's clock,
 * Meta counts on its own, and a call reaches Meta a little after its grant, so calls granted just
 * over 60 s apart can land just under 60 s apart. (perMinute = 1 gives C = 1, R = 1/61: grants
 * at least 61 s apart, still at most one per window.)
 *
 * All timing is the database's (`clock_timestamp()`), never the process's: workers on several
 * machines share one clock. The grant is ONE `UPDATE … WHERE <enough tokens> RETURNING`, so two
 * callers can never both take the last token; the first call for a name INSERTs the bucket.
 */

export type GraphCallGrant = { granted: true; at: Date } | { granted: false; waitMs: number };

export interface BucketShape {
  capacity: number;
  /** Tokens per millisecond. */
  ratePerMs: number;
}

export function bucketShape(perMinute: number): BucketShape {
  if (!Number.isInteger(perMinute) || perMinute < 1) throw new Error(`graph call budget: perMinute must be a positive integer, got ${perMinute}`);
  const capacity = Math.max(1, Math.floor(perMinute / 60));
  return { capacity, ratePerMs: Math.max(perMinute - capacity, 1) / 61_000 };
}

export interface AcquireOptions {
  /**
   * The instant to act at instead of the database clock: for replaying a recorded sequence of
   * requests (the property test). Production callers never set it.
   */
  at?: Date;
}

// $1 name, $2 capacity, $3 rate per ms, $4 the instant (NULL = clock_timestamp()).
// Tokens available now = least(capacity, tokens + rate · elapsed); elapsed never negative, and
// refilled_at never moves back, so a late or skewed caller can only lose refill, never gain it.
const AVAILABLE = `least($2::float8, b.tokens + $3::float8 * greatest(0, extract(epoch FROM (coalesce($4::timestamptz, clock_timestamp()) - b.refilled_at)) * 1000))`;

const TAKE = `
  WITH cur AS (SELECT tokens, refilled_at FROM graph_call_budgets WHERE name = $1),
  taken AS (
    UPDATE graph_call_budgets b
       SET tokens = ${AVAILABLE} - 1,
           refilled_at = greatest(b.refilled_at, coalesce($4::timestamptz, clock_timestamp()))
     WHERE b.name = $1 AND ${AVAILABLE} >= 1
    RETURNING b.refilled_at
  )
  SELECT (SELECT refilled_at FROM taken) AS granted_at,
         cur.tokens, cur.refilled_at, coalesce($4::timestamptz, clock_timestamp()) AS now
    FROM cur`;

const CREATE = `
  INSERT INTO graph_call_budgets (name, tokens, refilled_at)
  VALUES ($1, $2::float8 - 1, coalesce($3::timestamptz, clock_timestamp()))
  ON CONFLICT (name) DO NOTHING
  RETURNING refilled_at`;

/**
 * Takes one call from the named budget, or says how long until one is available. Callers wait
 * `waitMs` and ask again (another caller may take that token first: then they wait again).
 */
export async function acquireGraphCall(pool: Pool, name: string, perMinute: number, opts: AcquireOptions = {}): Promise<GraphCallGrant> {
  const { capacity, ratePerMs } = bucketShape(perMinute);
  const at = opts.at ?? null;
  return withPlatform(pool, async (db) => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rows } = await db.query<{ granted_at: Date | null; tokens: number; refilled_at: Date; now: Date }>(TAKE, [name, capacity, ratePerMs, at]);
      const row = rows[0];
      if (row) {
        if (row.granted_at) return { granted: true, at: row.granted_at };
        // Read from the statement's snapshot: close enough for a wait, and the next ask re-checks.
        const elapsed = Math.max(0, row.now.getTime() - row.refilled_at.getTime());
        const available = Math.min(capacity, Number(row.tokens) + ratePerMs * elapsed);
        return { granted: false, waitMs: Math.max(1, Math.ceil((1 - available) / ratePerMs)) };
      }
      // First use of this budget: the bucket starts full, less this call.
      const created = await db.query<{ refilled_at: Date }>(CREATE, [name, capacity, at]);
      if (created.rows[0]) return { granted: true, at: created.rows[0].refilled_at };
      // Another caller created it between the two statements: take from it.
    }
    throw new Error(`graph call budget ${name}: bucket neither found nor created`);
  });
}

/** The bucket's state, for operators and tests. */
export async function graphCallBudget(pool: Pool, name: string): Promise<{ tokens: number; refilledAt: Date } | null> {
  const { rows } = await withPlatform(pool, (db) => db.query<{ tokens: number; refilled_at: Date }>('SELECT tokens, refilled_at FROM graph_call_budgets WHERE name = $1', [name]));
  return rows[0] ? { tokens: Number(rows[0].tokens), refilledAt: rows[0].refilled_at } : null;
}
