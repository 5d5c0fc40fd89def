import type { Cursor } from '../api/paging';
import { cursorTimeSql } from '../api/paging';
import type { Queryable } from './tenant-scope';

/**
 * One audit chain's events for reading (newest first), inside the caller's scope: a tenant's chain
 * in its withTenant, the platform chain in withPlatform. Details are stored PII-masked already
 * (src/audit/details.ts); hashes stay out of this view (`audit:export` carries the proofs).
 */

export interface AuditEventRow {
  seq: string;
  occurredAt: Date;
  recordedAt: Date;
  actorType: string;
  actorId: string | null;
  action: string;
  resource: string | null;
  outcome: 'success' | 'failure';
  reason: string | null;
  ip: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
  cursor_at: string;
}

/**
 * `limit + 1` rows by chain order (seq), newest first. A cursor from `next` continues below its
 * seq; a plain time keeps events that occurred before it. `action` matches exactly, or a prefix
 * when it ends with `.` (e.g. `auth.`).
 */
export async function listAuditEvents(tx: Queryable, chainId: string, opts: { limit: number; before?: Cursor; action?: string }): Promise<AuditEventRow[]> {
  const prefix = opts.action?.endsWith('.') ? opts.action : null;
  const { rows } = await tx.query<AuditEventRow>(
    `SELECT seq::text AS seq, occurred_at AS "occurredAt", recorded_at AS "recordedAt", actor_type AS "actorType", actor_id AS "actorId",
            action, resource, outcome, reason, ip, request_id AS "requestId", details, ${cursorTimeSql('occurred_at')} AS cursor_at
       FROM audit_events
      WHERE chain_id = $1
        AND ($2::bigint IS NULL OR seq < $2)
        AND ($2::bigint IS NOT NULL OR $3::timestamptz IS NULL OR occurred_at < $3)
        AND (($4::text IS NULL AND $5::text IS NULL) OR action = $4 OR starts_with(action, $5))
      ORDER BY audit_events.seq DESC
      LIMIT $6`,
    [chainId, opts.before?.key ?? null, opts.before?.at ?? null, prefix ? null : (opts.action ?? null), prefix, opts.limit + 1],
  );
  return rows;
}
