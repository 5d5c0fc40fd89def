import type { Pool } from 'pg';
import type { ChannelStatus, GraphApi } from '../db/channels';
import { ONBOARDING_PENDING_REASON } from '../db/onboarding';
import { withTenant } from '../db/tenant-scope';
import type { Platform } from '../shared/types';

/** A channel as the portal lists it: where it stands, and the replies waiting for it. */
export interface PortalChannel {
  id: string;
  platform: Platform;
  accountId: string;
  graphApi: GraphApi;
  status: ChannelStatus;
  /** Replies parked until the channel is reconnected. */
  parked: number;
}

/** The tenant's channels (not the ones an onboarding is still setting up), oldest first. */
export async function portalChannels(pool: Pool, tenantId: string): Promise<PortalChannel[]> {
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ id: string; platform: Platform; account_id: string; graph_api: GraphApi; status: ChannelStatus; parked: number }>(
      `SELECT c.id, c.platform, c.account_id, c.graph_api, c.status,
              (SELECT count(*)::int FROM messages m WHERE m.channel_id = c.id AND m.status = 'parked') AS parked
         FROM channels c
        WHERE NOT (c.status = 'disabled' AND c.status_reason IS NOT DISTINCT FROM $1)
        ORDER BY c.created_at, c.id
        LIMIT 200`,
      [ONBOARDING_PENDING_REASON],
    ),
  );
  return rows.map((r) => ({ id: r.id, platform: r.platform, accountId: r.account_id, graphApi: r.graph_api, status: r.status, parked: r.parked }));
}

/** One channel of the tenant (null: none with that id in its scope). */
export async function portalChannel(pool: Pool, tenantId: string, channelId: string): Promise<PortalChannel | null> {
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ id: string; platform: Platform; account_id: string; graph_api: GraphApi; status: ChannelStatus; parked: number }>(
      `SELECT c.id, c.platform, c.account_id, c.graph_api, c.status,
              (SELECT count(*)::int FROM messages m WHERE m.channel_id = c.id AND m.status = 'parked') AS parked
         FROM channels c WHERE c.id = $1`,
      [channelId],
    ),
  );
  const r = rows[0];
  return r ? { id: r.id, platform: r.platform, accountId: r.account_id, graphApi: r.graph_api, status: r.status, parked: r.parked } : null;
}
