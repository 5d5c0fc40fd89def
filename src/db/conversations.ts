import type { Pool, PoolClient } from 'pg';
import type { EchoEvent, InboundEvent, MessageEvent, PostbackEvent } from '../shared/types';
import { withTransaction } from './pool';

export interface ConversationKey {
  tenantId: string;
  channelId: string;
  customerId: string;
}

/** Prefix of the Send API `metadata` we attach, so our own echoes are recognised. */
export const OUTBOUND_METADATA_PREFIX = 'sb:out:';

async function upsertConversation(client: PoolClient, key: ConversationKey, inboundAt?: Date): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO conversations (tenant_id, channel_id, customer_id, last_inbound_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (channel_id, customer_id) DO UPDATE
       SET last_inbound_at = GREATEST(conversations.last_inbound_at, EXCLUDED.last_inbound_at)
     RETURNING id`,
    [key.tenantId, key.channelId, key.customerId, inboundAt ?? null],
  );
  return rows[0]!.id;
}

export interface RecordedInbound {
  messageId: string;
  conversationId: string;
  /** False when Meta redelivered a message we already stored. */
  inserted: boolean;
  /** True when a reply to this message was already sent (a redelivery after the run ended). */
  alreadyAnswered: boolean;
}

function inboundContent(event: MessageEvent | PostbackEvent): { kind: string; text: string | null; payload: object } {
  if (event.kind === 'postback') {
    return { kind: 'postback', text: event.title ?? null, payload: { payload: event.payload, referral: event.referral } };
  }
  const kind = event.quickReplyPayload !== undefined ? 'quick_reply' : event.attachments.length > 0 ? 'attachment' : 'text';
  return {
    kind,
    text: event.text ?? null,
    payload: { attachments: event.attachments, quickReplyPayload: event.quickReplyPayload, replyTo: event.replyTo, referral: event.referral },
  };
}

/** Stores a customer's message once per (channel, mid); safe to call again on redelivery or retry. */
export async function recordInbound(pool: Pool, key: ConversationKey, event: MessageEvent | PostbackEvent): Promise<RecordedInbound> {
  const at = new Date(event.timestamp);
  // A postback without a mid (older payloads) is keyed by its dedupe key instead.
  const mid = event.mid ?? event.dedupeKey;
  const content = inboundContent(event);
  return withTransaction(pool, async (client) => {
    const conversationId = await upsertConversation(client, key, at);
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, mid, text, payload, status, meta_timestamp)
       VALUES ($1, $2, $3, 'inbound', 'customer', $4, $5, $6, $7, 'received', $8)
       ON CONFLICT (channel_id, mid) WHERE mid IS NOT NULL DO NOTHING
       RETURNING id`,
      [key.tenantId, key.channelId, conversationId, content.kind, mid, content.text, JSON.stringify(content.payload), at],
    );
    if (inserted.rows[0]) return { messageId: inserted.rows[0].id, conversationId, inserted: true, alreadyAnswered: false };
    const { rows } = await client.query<{ id: string; answered: boolean }>(
      `SELECT m.id, EXISTS (SELECT 1 FROM messages r WHERE r.in_reply_to = m.id AND r.status IN ('sent', 'failed')) AS answered
       FROM messages m WHERE m.channel_id = $1 AND m.mid = $2`,
      [key.channelId, mid],
    );
    return { messageId: rows[0]!.id, conversationId, inserted: false, alreadyAnswered: rows[0]!.answered };
  });
}

export interface OutboundRow {
  id: string;
  status: 'pending' | 'sent' | 'failed';
  mid: string | null;
}

/**
 * Creates the bot's reply row before the send, one per inbound message. Retried activities and
 * replays get the same row back, so a reply that was already sent is never sent twice.
 */
export async function createReply(
  pool: Pool,
  input: { tenantId: string; channelId: string; conversationId: string; inReplyTo: string; text: string },
): Promise<OutboundRow> {
  await pool.query(
    `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, text, status, in_reply_to)
     VALUES ($1, $2, $3, 'outbound', 'bot', 'text', $4, 'pending', $5)
     ON CONFLICT (in_reply_to) WHERE in_reply_to IS NOT NULL DO NOTHING`,
    [input.tenantId, input.channelId, input.conversationId, input.text, input.inReplyTo],
  );
  const { rows } = await pool.query<OutboundRow>('SELECT id, status, mid FROM messages WHERE in_reply_to = $1', [input.inReplyTo]);
  return rows[0]!;
}

export async function getOutbound(pool: Pool, id: string): Promise<(OutboundRow & { text: string | null }) | null> {
  const { rows } = await pool.query<OutboundRow & { text: string | null }>('SELECT id, status, mid, text FROM messages WHERE id = $1', [id]);
  return rows[0] ?? null;
}

export async function markOutboundSent(pool: Pool, id: string, mid: string): Promise<void> {
  await pool.query(`UPDATE messages SET status = 'sent', mid = $2, sent_at = now(), error = NULL WHERE id = $1`, [id, mid]);
}

export interface SendErrorRecord {
  type: string;
  code?: number;
  subcode?: number;
  fbtraceId?: string;
  reason: string;
}

export async function markOutboundFailed(pool: Pool, id: string, error: SendErrorRecord): Promise<void> {
  await pool.query(`UPDATE messages SET status = 'failed', error = $2 WHERE id = $1 AND status <> 'sent'`, [id, JSON.stringify(error)]);
}

/**
 * An echo is either ours (its metadata names our outbound row, or its mid equals the message_id
 * the Send API gave us) or a human answering from Meta's inbox, recorded as a human agent message.
 */
export async function recordEcho(pool: Pool, key: ConversationKey, event: EchoEvent): Promise<{ ours: boolean }> {
  const outboundId = event.metadata?.startsWith(OUTBOUND_METADATA_PREFIX) ? event.metadata.slice(OUTBOUND_METADATA_PREFIX.length) : undefined;
  return withTransaction(pool, async (client) => {
    if (outboundId && /^[0-9a-f-]{36}$/.test(outboundId)) {
      const { rowCount } = await client.query(
        `UPDATE messages SET mid = COALESCE(mid, $3), status = 'sent', sent_at = COALESCE(sent_at, now())
         WHERE id = $1 AND channel_id = $2 AND direction = 'outbound'`,
        [outboundId, key.channelId, event.mid],
      );
      if (rowCount === 1) return { ours: true };
    }
    const known = await client.query<{ author: string }>('SELECT author FROM messages WHERE channel_id = $1 AND mid = $2', [key.channelId, event.mid]);
    if (known.rows[0]) return { ours: known.rows[0].author === 'bot' };
    const conversationId = await upsertConversation(client, key);
    await client.query(
      `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, mid, text, payload, status, meta_timestamp, sent_at)
       VALUES ($1, $2, $3, 'outbound', 'human_agent', 'text', $4, $5, $6, 'sent', $7, $7)
       ON CONFLICT (channel_id, mid) WHERE mid IS NOT NULL DO NOTHING`,
      [key.tenantId, key.channelId, conversationId, event.mid, event.text ?? null, JSON.stringify({ attachments: event.attachments, appId: event.appId }), new Date(event.timestamp)],
    );
    return { ours: false };
  });
}

/** Reactions, reads, deliveries, deletions and referrals: stored once per dedupe key. */
export async function recordConversationEvent(pool: Pool, key: ConversationKey, event: InboundEvent): Promise<{ inserted: boolean }> {
  return withTransaction(pool, async (client) => {
    const conversationId = await upsertConversation(client, key);
    const { rowCount } = await client.query(
      `INSERT INTO conversation_events (tenant_id, channel_id, conversation_id, kind, dedupe_key, payload, occurred_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (channel_id, dedupe_key) DO NOTHING`,
      [key.tenantId, key.channelId, conversationId, event.kind, event.dedupeKey, JSON.stringify(event), new Date(event.timestamp)],
    );
    return { inserted: rowCount === 1 };
  });
}
