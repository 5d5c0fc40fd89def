import type { Platform } from '../shared/types';
import type { ChannelStatus } from './channels';
import type { Queryable } from './tenant-scope';

/**
 * A channel's health as the admin API and the dashboard show it, read inside the tenant's scope.
 * Never the token: only whether it is usable, when it expires, the webhook subscription as last
 * checked, and when the channel last heard from a customer.
 */

export type TokenHealth = 'valid' | 'expiring' | 'reauth_required' | 'disabled';

/** A token this close to its expiry is reported `expiring` (the tenant should reconnect soon). */
export const TOKEN_EXPIRING_WITHIN_MS = 7 * 86_400_000;

export interface ChannelHealthRow {
  id: string;
  platform: Platform;
  accountId: string;
  graphApi: 'facebook' | 'instagram';
  status: ChannelStatus;
  statusReason: string | null;
  statusChangedAt: Date;
  createdAt: Date;
  health: {
    token: TokenHealth;
    tokenExpiresAt: Date | null;
    webhookSubscribed: boolean | null;
    webhookCheckedAt: Date | null;
    /** Newest inbound message or conversation event (reaction, read, delivery, …) of the channel. */
    lastEventAt: Date | null;
  };
}

export function tokenHealth(status: ChannelStatus, expiresAt: Date | null, now = Date.now()): TokenHealth {
  if (status === 'disabled') return 'disabled';
  if (status === 'reauth_required') return 'reauth_required';
  if (expiresAt === null) return 'valid';
  // An expired token fails every call: the tenant must reconnect, as after a 190.
  if (expiresAt.getTime() <= now) return 'reauth_required';
  return expiresAt.getTime() - now <= TOKEN_EXPIRING_WITHIN_MS ? 'expiring' : 'valid';
}

interface Row {
  id: string;
  platform: Platform;
  account_id: string;
  graph_api: 'facebook' | 'instagram';
  status: ChannelStatus;
  status_reason: string | null;
  status_changed_at: Date;
  created_at: Date;
  token_expires_at: Date | null;
  webhook_subscribed: boolean | null;
  webhook_checked_at: Date | null;
  last_event_at: Date | null;
  now: Date;
}

/** The scope's channels (oldest first), or the one with `channelId`. Runs in the caller's tenant scope. */
export async function channelHealth(tx: Queryable, opts: { channelId?: string } = {}): Promise<ChannelHealthRow[]> {
  // Each max() reads one entry of its (channel_id, created_at) index (migrations/0009).
  const { rows } = await tx.query<Row>(
    `SELECT c.id, c.platform, c.account_id, c.graph_api, c.status, c.status_reason, c.status_changed_at, c.created_at,
            c.token_expires_at, c.webhook_subscribed, c.webhook_checked_at, now() AS now,
            GREATEST(
              (SELECT max(m.created_at) FROM messages m WHERE m.channel_id = c.id AND m.direction = 'inbound'),
              (SELECT max(e.created_at) FROM conversation_events e WHERE e.channel_id = c.id)
            ) AS last_event_at
       FROM channels c
      WHERE $1::uuid IS NULL OR c.id = $1
      ORDER BY c.created_at, c.id`,
    [opts.channelId ?? null],
  );
  return rows.map((r) => ({
    id: r.id,
    platform: r.platform,
    accountId: r.account_id,
    graphApi: r.graph_api,
    status: r.status,
    statusReason: r.status_reason,
    statusChangedAt: r.status_changed_at,
    createdAt: r.created_at,
    health: {
      token: tokenHealth(r.status, r.token_expires_at, r.now.getTime()),
      tokenExpiresAt: r.token_expires_at,
      webhookSubscribed: r.webhook_subscribed,
      webhookCheckedAt: r.webhook_checked_at,
      lastEventAt: r.last_event_at,
    },
  }));
}

/** Channels of the scope per status (for tenant lists). */
export async function channelCounts(tx: Queryable): Promise<{ total: number; active: number; reauthRequired: number; disabled: number }> {
  const { rows } = await tx.query<{ status: ChannelStatus; n: number }>('SELECT status, count(*)::int AS n FROM channels GROUP BY status');
  const of = (s: ChannelStatus) => rows.find((r) => r.status === s)?.n ?? 0;
  return { total: rows.reduce((sum, r) => sum + r.n, 0), active: of('active'), reauthRequired: of('reauth_required'), disabled: of('disabled') };
}
