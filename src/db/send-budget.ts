import type { Pool } from 'pg';
import { inTenant, type Queryable } from './tenant-scope';
import { z } from 'zod';
import type { SendSlot } from '../shared/types';

/**
 * Per-channel send budget (table `channel_send_budgets`, migration 0006): a token bucket in
 * PostgreSQL, because the conversations of one channel run in many workflows on several worker
 * processes and must share one budget.
 *
 * - Rate: `channels.send_rate_per_sec` (default 20/s) × `throttle_factor`. The bucket holds one
 *   second of that effective rate (at least one token), so a throttled channel cannot burst back
 *   to full speed after an idle spell.
 * - `throttle_factor` follows Meta's usage headers: at or above 75 % it falls linearly toward 0.1
 *   at 100 %; a report below 75 % lets it recover by half again (up to 1); a throttling error
 *   halves it. A throttle error or `estimated_time_to_regain_access` pauses the channel
 *   (`paused_until`); a pause is only ever extended, never shortened.
 *
 * Concurrency: every change is one statement that locks the channel's row (SELECT … FOR UPDATE
 * feeding an UPDATE, or INSERT … ON CONFLICT DO UPDATE), so concurrent reservations serialize on
 * the row and each sees the previous one's result. Times come from the caller (`now`) so tests are
 * deterministic; refills never run backwards when two processes' clocks disagree slightly.
 */

export const USAGE_HIGH_WATER_PERCENT = 75;
export const MIN_THROTTLE_FACTOR = 0.1;
/** Per report below the high-water mark. */
export const RECOVERY_MULTIPLIER = 1.5;
/** Per throttling error (codes 4, 17, 32, 613, 8000x). */
export const THROTTLE_MULTIPLIER = 0.5;

export class ChannelNotFoundError extends Error {
  constructor(readonly channelId: string) {
    super(`channel ${channelId} does not exist`);
    this.name = 'ChannelNotFoundError';
  }
}

// SQL fragments over `b` (channel_send_budgets) and a rate expression; `$2` is always `now`.
const effectiveRate = (rate: string) => `(${rate} * b.throttle_factor)`;
const capacity = (rate: string) => `GREATEST(1, ${effectiveRate(rate)})`;
const elapsedSeconds = `GREATEST(0, EXTRACT(EPOCH FROM ($2::timestamptz - b.refilled_at)))::float8`;
const refilledTokens = (rate: string) => `LEAST(${capacity(rate)}, b.tokens + ${effectiveRate(rate)} * ${elapsedSeconds})`;

/** The first reservation or report of a channel creates its full bucket. */
async function ensureBudgetRow(pool: Queryable, channelId: string, now: Date): Promise<void> {
  const { rows } = await pool.query<{ found: boolean }>(
    `WITH ins AS (
       INSERT INTO channel_send_budgets (channel_id, tenant_id, tokens, refilled_at)
       SELECT id, tenant_id, GREATEST(1, send_rate_per_sec::float8), $2 FROM channels WHERE id = $1
       ON CONFLICT (channel_id) DO NOTHING
     )
     SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1) AS found`,
    [channelId, now],
  );
  if (!rows[0]?.found) throw new ChannelNotFoundError(channelId);
}

interface ReserveRow {
  paused: boolean;
  paused_until: Date | null;
  rate: number;
  available: number;
}

const RESERVE_SQL = `
  WITH cur AS (
    SELECT b.channel_id,
           b.paused_until IS NOT NULL AND b.paused_until > $2::timestamptz AS paused,
           b.paused_until,
           ${effectiveRate('c.send_rate_per_sec::float8')} AS rate,
           ${refilledTokens('c.send_rate_per_sec::float8')} AS available,
           GREATEST(b.refilled_at, $2::timestamptz) AS refilled_at
    FROM channel_send_budgets b JOIN channels c ON c.id = b.channel_id
    WHERE b.channel_id = $1
    FOR UPDATE OF b
  ), taken AS (
    UPDATE channel_send_budgets b
    SET tokens = cur.available - 1, refilled_at = cur.refilled_at, updated_at = now()
    FROM cur
    WHERE b.channel_id = cur.channel_id AND NOT cur.paused AND cur.available >= 1
  )
  SELECT paused, paused_until, rate, available FROM cur`;

/**
 * Takes one send token of the channel, or says how long to wait: until the pause ends, or until
 * one token has refilled. A refusal changes nothing, so waiting and asking again is always safe.
 */
async function reserveSendSlotIn(pool: Queryable, channelId: string, now: Date = new Date()): Promise<SendSlot> {
  let { rows } = await pool.query<ReserveRow>(RESERVE_SQL, [channelId, now]);
  if (!rows[0]) {
    await ensureBudgetRow(pool, channelId, now);
    ({ rows } = await pool.query<ReserveRow>(RESERVE_SQL, [channelId, now]));
  }
  const row = rows[0];
  if (!row) throw new ChannelNotFoundError(channelId);
  if (row.paused && row.paused_until) {
    return { granted: false, reason: 'paused', waitMs: Math.max(1, Math.ceil(row.paused_until.getTime() - now.getTime())) };
  }
  if (row.available >= 1) return { granted: true };
  return { granted: false, reason: 'budget', waitMs: Math.max(1, Math.ceil(((1 - row.available) / row.rate) * 1000)) };
}

const feedbackSchema = z.strictObject({
  maxPercent: z.number().min(0).optional(),
  regainAccessSeconds: z.number().min(0).optional(),
  throttled: z.strictObject({ code: z.number().int(), retryAfterMs: z.number().min(0) }).optional(),
});

export type UsageFeedback = z.input<typeof feedbackSchema>;

export interface UsageFeedbackResult {
  throttleFactor: number;
  /** Null when the channel is not paused (or the pause is already over). */
  pausedUntil: Date | null;
}

/** The pause this report asks for, if any: the longer of Meta's regain time and the throttle's retry delay. */
function requestedPause(feedback: z.output<typeof feedbackSchema>, now: Date): { until: Date; reason: string } | null {
  const candidates: Array<{ ms: number; reason: string }> = [];
  if (feedback.regainAccessSeconds !== undefined && feedback.regainAccessSeconds > 0) {
    const reason = feedback.maxPercent !== undefined ? `usage ${Math.round(feedback.maxPercent)}%` : 'regain access';
    candidates.push({ ms: feedback.regainAccessSeconds * 1000, reason: `${reason}, regain in ${Math.ceil(feedback.regainAccessSeconds)} s` });
  }
  if (feedback.throttled && feedback.throttled.retryAfterMs > 0) {
    candidates.push({ ms: feedback.throttled.retryAfterMs, reason: `code ${feedback.throttled.code}` });
  }
  if (candidates.length === 0) return null;
  const longest = candidates.reduce((a, b) => (b.ms > a.ms ? b : a));
  return { until: new Date(now.getTime() + Math.ceil(longest.ms)), reason: longest.reason };
}

/** New factor from the old one (`f`): $3 = max usage percent (null: no report), $6 = throttled. */
const nextFactor = (f: string) => `
  GREATEST(${MIN_THROTTLE_FACTOR}, LEAST(1,
    CASE WHEN $3::float8 IS NULL THEN ${f}
         WHEN $3::float8 >= ${USAGE_HIGH_WATER_PERCENT}
           THEN LEAST(${f}, 1 - (LEAST($3::float8, 100) - ${USAGE_HIGH_WATER_PERCENT}) / ${100 - USAGE_HIGH_WATER_PERCENT} * ${1 - MIN_THROTTLE_FACTOR})
         ELSE ${f} * ${RECOVERY_MULTIPLIER} END,
    CASE WHEN $6::boolean THEN ${f} * ${THROTTLE_MULTIPLIER} ELSE 1 END))`;

/** A later pause ($4) replaces the current one; an earlier one never shortens it. */
const extendsPause = `($4::timestamptz IS NOT NULL AND (b.paused_until IS NULL OR b.paused_until < $4::timestamptz))`;
const channelRate = `(SELECT send_rate_per_sec::float8 FROM channels WHERE id = $1)`;

/**
 * Adaptive backoff from what Meta told us about one send: usage percentages, the time to regain
 * access, or a throttling error. Tokens earned at the old rate are settled before the rate changes.
 */
async function recordUsageFeedbackIn(pool: Queryable, channelId: string, feedback: UsageFeedback, now: Date = new Date()): Promise<UsageFeedbackResult> {
  const parsed = feedbackSchema.safeParse(feedback);
  if (!parsed.success) {
    throw new TypeError(`invalid usage feedback: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const pause = requestedPause(parsed.data, now);
  const { rows } = await pool.query<{ throttle_factor: number; paused_until: Date | null }>(
    `INSERT INTO channel_send_budgets AS b (channel_id, tenant_id, tokens, refilled_at, throttle_factor, paused_until, pause_reason)
     SELECT c.id, c.tenant_id, GREATEST(1, c.send_rate_per_sec::float8 * f.factor), $2, f.factor, $4::timestamptz, CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE $5::text END
     FROM channels c, LATERAL (SELECT ${nextFactor('1::float8')} AS factor) f
     WHERE c.id = $1
     ON CONFLICT (channel_id) DO UPDATE SET
       tokens = ${refilledTokens(channelRate)},
       refilled_at = GREATEST(b.refilled_at, $2::timestamptz),
       throttle_factor = ${nextFactor('b.throttle_factor')},
       paused_until = CASE WHEN ${extendsPause} THEN $4::timestamptz ELSE b.paused_until END,
       pause_reason = CASE WHEN ${extendsPause} THEN $5::text ELSE b.pause_reason END,
       updated_at = now()
     RETURNING throttle_factor, paused_until`,
    [channelId, now, parsed.data.maxPercent ?? null, pause?.until ?? null, pause?.reason ?? null, parsed.data.throttled !== undefined],
  );
  const row = rows[0];
  if (!row) throw new ChannelNotFoundError(channelId);
  return {
    throttleFactor: row.throttle_factor,
    pausedUntil: row.paused_until && row.paused_until.getTime() > now.getTime() ? row.paused_until : null,
  };
}

export interface SendBudgetStatus {
  channelId: string;
  /** Configured sends per second (`channels.send_rate_per_sec`). */
  ratePerSec: number;
  throttleFactor: number;
  /** What the bucket refills at now: rate × throttle factor. */
  effectiveRatePerSec: number;
  capacity: number;
  /** Tokens available at `now` (refill included). */
  tokens: number;
  pausedUntil: Date | null;
  pauseReason: string | null;
  /** Last change (null: the channel has not sent since budgets exist). */
  updatedAt: Date | null;
}

/** Read-only view for dashboards and the workflow's state query; null for an unknown channel. */
async function sendBudgetStatusIn(pool: Queryable, channelId: string, now: Date = new Date()): Promise<SendBudgetStatus | null> {
  const { rows } = await pool.query<{
    rate: number; tokens: number | null; refilled_at: Date | null; throttle_factor: number | null; paused_until: Date | null; pause_reason: string | null; updated_at: Date | null;
  }>(
    `SELECT c.send_rate_per_sec::float8 AS rate, b.tokens, b.refilled_at, b.throttle_factor, b.paused_until, b.pause_reason, b.updated_at
     FROM channels c LEFT JOIN channel_send_budgets b ON b.channel_id = c.id WHERE c.id = $1`,
    [channelId],
  );
  const r = rows[0];
  if (!r) return null;
  const throttleFactor = r.throttle_factor ?? 1;
  const effectiveRatePerSec = r.rate * throttleFactor;
  const cap = Math.max(1, effectiveRatePerSec);
  const elapsed = r.refilled_at ? Math.max(0, (now.getTime() - r.refilled_at.getTime()) / 1000) : 0;
  const paused = r.paused_until !== null && r.paused_until.getTime() > now.getTime();
  return {
    channelId,
    ratePerSec: r.rate,
    throttleFactor,
    effectiveRatePerSec,
    capacity: cap,
    tokens: r.tokens === null ? cap : Math.min(cap, r.tokens + effectiveRatePerSec * elapsed),
    pausedUntil: paused ? r.paused_until : null,
    pauseReason: paused ? r.pause_reason : null,
    updatedAt: r.updated_at,
  };
}

/** In the channel's tenant scope: given the pool, its own; given a client, the caller's. */
export function reserveSendSlot(db: Pool | Queryable, tenantId: string, channelId: string, now: Date = new Date()): Promise<SendSlot> {
  return inTenant(db, tenantId, (tx) => reserveSendSlotIn(tx, channelId, now));
}

/** In the channel's tenant scope: given the pool, its own; given a client, the caller's. */
export function recordUsageFeedback(db: Pool | Queryable, tenantId: string, channelId: string, feedback: UsageFeedback, now: Date = new Date()): Promise<UsageFeedbackResult> {
  return inTenant(db, tenantId, (tx) => recordUsageFeedbackIn(tx, channelId, feedback, now));
}

/** In the channel's tenant scope: given the pool, its own; given a client, the caller's. */
export function sendBudgetStatus(db: Pool | Queryable, tenantId: string, channelId: string, now: Date = new Date()): Promise<SendBudgetStatus | null> {
  return inTenant(db, tenantId, (tx) => sendBudgetStatusIn(tx, channelId, now));
}
