import type { Queryable } from '../crypto/vault';
import type { InboundEvent, UnsupportedEvent } from '../shared/types';

export type UnroutedRow =
  | { reason: 'unknown_account'; event: InboundEvent; object: string }
  | { reason: 'unsupported_event'; event: UnsupportedEvent };

/** One multi-row insert per delivery: the gateway's hot path should make one round trip, not N. */
export async function recordUnrouted(pool: Queryable, rows: UnroutedRow[]): Promise<void> {
  if (rows.length === 0) return;
  const values: unknown[] = [];
  const tuples = rows.map((row, i) => {
    const o = i * 6;
    if (row.reason === 'unknown_account') {
      values.push(row.object, row.event.platform, row.event.accountId, row.reason, row.event.kind, JSON.stringify(row.event));
    } else {
      values.push(row.event.object, row.event.platform ?? null, row.event.accountId, row.reason, row.event.eventType, JSON.stringify(row.event.raw ?? null));
    }
    return `($${o + 1}, $${o + 2}, $${o + 3}, $${o + 4}, $${o + 5}, $${o + 6})`;
  });
  await pool.query(
    `INSERT INTO unrouted_events (object, platform, account_id, reason, event_type, payload) VALUES ${tuples.join(', ')}`,
    values,
  );
}
