import type { Pool } from 'pg';
import { withTenant } from './tenant-scope';

/**
 * A tenant's message throughput and reply latency over a recent window, for the dashboard's live
 * panel (`GET /api/v1/tenants/:tenantId/metrics`). Read inside the tenant's RLS scope, so a
 * caller can never count another tenant's rows whatever the query says.
 *
 * Reply latency is what the customer waited for the bot: a bot answer's `sent_at` minus the
 * `created_at` of the inbound message it answers (`in_reply_to`, the newest message of a debounced
 * burst, so the quiet window is part of it). Replies a human agent sent are counted but not in the
 * latency: their timing is a person's, not the system's.
 */

export interface MinuteBucket {
  /** Start of the minute (UTC). */
  minute: Date;
  inbound: number;
  repliesSent: number;
}

export interface TenantMetrics {
  from: Date;
  to: Date;
  series: MinuteBucket[];
  totals: { inbound: number; repliesSent: number; botReplies: number; humanReplies: number; failedReplies: number };
  latency: { samples: number; p50Ms: number | null; p95Ms: number | null; maxMs: number | null };
}

export const METRICS_MAX_WINDOW_MINUTES = 360;

export async function tenantMetrics(pool: Pool, tenantId: string, windowMinutes: number, now: Date = new Date()): Promise<TenantMetrics> {
  const minutes = Math.max(1, Math.min(METRICS_MAX_WINDOW_MINUTES, Math.trunc(windowMinutes)));
  return withTenant(pool, tenantId, async (tx) => {
    // The window ends with the current (partial) minute, so a message that just arrived shows at once.
    const to = new Date(Math.floor(now.getTime() / 60_000) * 60_000 + 60_000);
    const from = new Date(to.getTime() - minutes * 60_000);
    const series = await tx.query<{ minute: Date; inbound: string; replies_sent: string }>(
      `WITH minutes AS (
         SELECT generate_series($2::timestamptz, $3::timestamptz - interval '1 minute', interval '1 minute') AS minute
       ),
       inbound AS (
         SELECT date_trunc('minute', created_at) AS minute, count(*) AS n
         FROM messages
         WHERE tenant_id = $1 AND direction = 'inbound' AND created_at >= $2 AND created_at < $3
         GROUP BY 1
       ),
       replies AS (
         SELECT date_trunc('minute', sent_at) AS minute, count(*) AS n
         FROM messages
         WHERE tenant_id = $1 AND direction = 'outbound' AND sent_at >= $2 AND sent_at < $3
         GROUP BY 1
       )
       SELECT m.minute, coalesce(i.n, 0) AS inbound, coalesce(r.n, 0) AS replies_sent
       FROM minutes m LEFT JOIN inbound i USING (minute) LEFT JOIN replies r USING (minute)
       ORDER BY m.minute`,
      [tenantId, from, to],
    );
    const totals = await tx.query<{ bot: string; human: string; failed: string }>(
      `SELECT count(*) FILTER (WHERE author = 'bot' AND sent_at IS NOT NULL) AS bot,
              count(*) FILTER (WHERE author = 'human_agent' AND sent_at IS NOT NULL) AS human,
              count(*) FILTER (WHERE status = 'failed' AND sent_at IS NULL) AS failed
       FROM messages
       WHERE tenant_id = $1 AND direction = 'outbound'
         AND ((sent_at >= $2 AND sent_at < $3) OR (sent_at IS NULL AND status = 'failed' AND created_at >= $2 AND created_at < $3))`,
      [tenantId, from, to],
    );
    const latency = await tx.query<{ samples: string; p50: number | null; p95: number | null; max: number | null }>(
      `SELECT count(*) AS samples,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
              percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
              max(ms) AS max
       FROM (
         SELECT greatest(0, extract(epoch FROM (o.sent_at - i.created_at)) * 1000)::double precision AS ms
         FROM messages o JOIN messages i ON i.id = o.in_reply_to AND i.tenant_id = o.tenant_id
         WHERE o.tenant_id = $1 AND o.direction = 'outbound' AND o.author = 'bot'
           AND o.sent_at >= $2 AND o.sent_at < $3 AND i.direction = 'inbound'
       ) AS replies`,
      [tenantId, from, to],
    );
    const points = series.rows.map((r) => ({ minute: r.minute, inbound: Number(r.inbound), repliesSent: Number(r.replies_sent) }));
    const t = totals.rows[0]!;
    const l = latency.rows[0]!;
    const round = (v: number | null) => (v === null ? null : Math.round(v));
    return {
      from,
      to,
      series: points,
      totals: {
        inbound: points.reduce((s, p) => s + p.inbound, 0),
        repliesSent: points.reduce((s, p) => s + p.repliesSent, 0),
        botReplies: Number(t.bot),
        humanReplies: Number(t.human),
        failedReplies: Number(t.failed),
      },
      latency: { samples: Number(l.samples), p50Ms: round(l.p50), p95Ms: round(l.p95), maxMs: round(l.max) },
    };
  });
}
