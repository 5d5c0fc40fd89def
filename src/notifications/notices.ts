import type { Pool } from 'pg';
import { inTenant, type Queryable } from '../db/tenant-scope';
import type { NotificationKind } from '../../workflows/token-lifecycle-definitions';

/** What the dashboard's banner and `GET /tenants/:id/notices` show: the tenant's open episodes with their channel. */
export interface Notice {
  id: string;
  channelId: string;
  platform: 'messenger' | 'instagram';
  accountId: string;
  kind: NotificationKind;
  level: 'warning' | 'critical';
  reason: string;
  openedAt: Date;
  expiresAt: Date | null;
  /** Replies waiting for the channel to be reconnected. */
  parkedReplies: number;
}

export async function tenantNotices(db: Pool | Queryable, tenantId: string): Promise<Notice[]> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<{
      id: string; channel_id: string; platform: 'messenger' | 'instagram'; account_id: string; kind: NotificationKind;
      level: 'warning' | 'critical'; reason: string; opened_at: Date; expires_at: Date | null; parked: number;
    }>(
      `SELECT e.id, e.channel_id, c.platform, c.account_id, e.kind, e.level, e.reason, e.opened_at, e.expires_at,
              (SELECT count(*)::int FROM messages m WHERE m.channel_id = e.channel_id AND m.status = 'parked') AS parked
         FROM notification_episodes e JOIN channels c ON c.id = e.channel_id
        WHERE e.closed_at IS NULL
        ORDER BY (e.level = 'critical') DESC, e.opened_at DESC, e.id
        LIMIT 200`,
    );
    return rows.map((r) => ({
      id: r.id,
      channelId: r.channel_id,
      platform: r.platform,
      accountId: r.account_id,
      kind: r.kind,
      level: r.level,
      reason: r.reason,
      openedAt: r.opened_at,
      expiresAt: r.expires_at,
      parkedReplies: r.parked,
    }));
  });
}
