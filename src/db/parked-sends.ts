import type { Pool } from 'pg';
import type { ChannelRoute, ChannelStatus } from './channels';
import type { SendErrorRecord } from './conversations';
import { inTenant, withTenant, type Queryable } from './tenant-scope';
import type { Platform } from '../shared/types';

/**
 * Replies parked while their channel needs reauthorization (issue 8, docs/conversations.md
 * "Parked while the channel needs reauthorization"). The row is the durable half of the parking:
 * the conversation workflow keeps the same list in memory, and a new run reloads it from here.
 */

/** A parked reply as a conversation run reloads it, oldest first. */
export interface ParkedOutbound {
  outboundId: string;
  author: 'bot' | 'human_agent';
  text: string;
  /** Epoch ms the row was created (the order parked replies are delivered in). */
  createdAt: number;
  /** The last send round claimed (an ambiguous attempt before the park), null if none. */
  sendRound: number | null;
}

/**
 * Parks an outbound row (from pending, or again with a newer reason) and reads its channel's
 * status in the same transaction. The channel row is read `FOR SHARE`: a reconnect that flips it
 * back to `active` either committed first (and this returns `active`, so the workflow resumes at
 * once) or waits for this commit (and then finds this row when it lists the parked conversations).
 * Either way no reply stays parked on a reconnected channel.
 */
export async function markOutboundParked(
  db: Pool | Queryable,
  tenantId: string,
  id: string,
  error: SendErrorRecord,
): Promise<{ parked: boolean; channelStatus: ChannelStatus | null }> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<{ channel_id: string }>(
      `UPDATE messages SET status = 'parked', error = $2 WHERE id = $1 AND status IN ('pending', 'parked') RETURNING channel_id`,
      [id, JSON.stringify(error)],
    );
    const channelId = rows[0]?.channel_id;
    if (!channelId) return { parked: false, channelStatus: null };
    const channel = await tx.query<{ status: ChannelStatus }>('SELECT status FROM channels WHERE id = $1 FOR SHARE', [channelId]);
    return { parked: true, channelStatus: channel.rows[0]?.status ?? null };
  });
}

/**
 * Takes a parked row back to `pending` so the send path (claimSendRound, markOutbound*) handles
 * it like any other. Returns the row's status afterwards: anything but `pending` means there is
 * nothing to send (an echo confirmed an earlier ambiguous attempt, or the row is gone: null).
 */
export async function unparkOutbound(
  db: Pool | Queryable,
  tenantId: string,
  id: string,
): Promise<{ status: string | null; sendRound: number | null }> {
  return inTenant(db, tenantId, async (tx) => {
    await tx.query(`UPDATE messages SET status = 'pending', error = NULL WHERE id = $1 AND status = 'parked'`, [id]);
    const { rows } = await tx.query<{ status: string; send_round: number | null }>('SELECT status, send_round FROM messages WHERE id = $1', [id]);
    return { status: rows[0]?.status ?? null, sendRound: rows[0]?.send_round ?? null };
  });
}

/**
 * The conversation's parked replies, oldest first (a new run delivers them in this order). Read at
 * every run start, so it goes by the channel through `messages_parked_idx` (only parked rows,
 * usually none) instead of the conversation's whole history, and needs no conversation id: the
 * caller runs it beside loading the conversation.
 */
export async function listParkedOutbound(db: Pool | Queryable, ref: { tenantId: string; channelId: string; customerId: string }): Promise<ParkedOutbound[]> {
  const { rows } = await inTenant(db, ref.tenantId, (tx) =>
    tx.query<{ id: string; author: 'bot' | 'human_agent'; text: string | null; created_at: Date; send_round: number | null }>(
      `SELECT m.id, m.author, m.text, m.created_at, m.send_round
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.channel_id = $1 AND m.status = 'parked' AND m.direction = 'outbound' AND c.customer_id = $2
        ORDER BY m.created_at, m.id`,
      [ref.channelId, ref.customerId],
    ),
  );
  return rows.map((r) => ({ outboundId: r.id, author: r.author, text: r.text ?? '', createdAt: r.created_at.getTime(), sendRound: r.send_round }));
}

export interface ParkedConversation {
  conversationId: string;
  customerId: string;
  /** Parked replies in it. */
  parked: number;
}

/**
 * A channel (with its route, for signal-with-start) and its conversations that hold parked
 * replies, the conversation whose oldest reply was parked first coming first. Reads
 * `messages_parked_idx` (channel_id, created_at WHERE status = 'parked').
 */
export async function parkedConversationsOfChannel(
  pool: Pool,
  tenantId: string,
  channelId: string,
): Promise<{ channel: ChannelRoute | null; conversations: ParkedConversation[] }> {
  return withTenant(pool, tenantId, async (tx) => {
    const ch = await tx.query<{ id: string; tenant_id: string; platform: Platform; status: ChannelStatus }>(
      'SELECT id, tenant_id, platform, status FROM channels WHERE id = $1',
      [channelId],
    );
    const r = ch.rows[0];
    if (!r) return { channel: null, conversations: [] };
    const { rows } = await tx.query<{ conversation_id: string; customer_id: string; parked: number }>(
      `SELECT m.conversation_id, c.customer_id, count(*)::int AS parked
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.channel_id = $1 AND m.status = 'parked'
        GROUP BY m.conversation_id, c.customer_id
        ORDER BY min(m.created_at), m.conversation_id`,
      [channelId],
    );
    return {
      channel: { id: r.id, tenantId: r.tenant_id, platform: r.platform, status: r.status },
      conversations: rows.map((x) => ({ conversationId: x.conversation_id, customerId: x.customer_id, parked: x.parked })),
    };
  });
}
