import type { Pool, PoolClient } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { AuditEventInput } from '../audit/types';
import type {
  ConversationMode,
  EchoEvent,
  InboundEvent,
  MessageEvent,
  Platform,
  PostbackEvent,
  TurnMessage,
} from '../shared/types';
import type { ChannelStatus } from './channels';
import { outboundIdFromMetadata } from '../shared/outbound';
import { inTenant, withTenant, type Queryable } from './tenant-scope';

export interface ConversationKey {
  tenantId: string;
  channelId: string;
  customerId: string;
}

export { OUTBOUND_METADATA_PREFIX, outboundIdFromMetadata } from '../shared/outbound';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

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

// ---------------------------------------------------------------------------------------------
// Conversation state

export interface ConversationStateRow {
  conversationId: string;
  mode: ConversationMode;
  modeSince: number;
  lastCustomerAt?: number;
  lastHumanAt?: number;
}

/** Creates the conversation if needed and returns what a workflow run starts deciding with. */
export async function loadConversationState(pool: Pool, key: ConversationKey): Promise<ConversationStateRow> {
  return withTenant(pool, key.tenantId, async (client) => {
    const conversationId = await upsertConversation(client, key);
    const { rows } = await client.query<{ state: ConversationMode; state_changed_at: Date; last_inbound_at: Date | null; last_human_at: Date | null }>(
      'SELECT state, state_changed_at, last_inbound_at, last_human_at FROM conversations WHERE id = $1',
      [conversationId],
    );
    const r = rows[0]!;
    return {
      conversationId,
      mode: r.state,
      modeSince: r.state_changed_at.getTime(),
      ...(r.last_inbound_at && { lastCustomerAt: r.last_inbound_at.getTime() }),
      ...(r.last_human_at && { lastHumanAt: r.last_human_at.getTime() }),
    };
  });
}

export interface ModeChangeActor {
  actor?: AuditEventInput['actor'];
  requestId?: string;
}

/**
 * Moves the conversation between bot and human. Idempotent: only the call that changes the mode
 * records `conversation.handoff` (in the same transaction).
 */
export async function setConversationMode(
  pool: Pool,
  key: ConversationKey,
  mode: ConversationMode,
  reason: string,
  opts: ModeChangeActor = {},
): Promise<{ changed: boolean }> {
  return withTenant(pool, key.tenantId, async (client) => {
    const conversationId = await upsertConversation(client, key);
    const { rows } = await client.query<{ id: string }>(
      `UPDATE conversations SET state = $2, state_reason = $3, state_changed_at = now()
       WHERE id = $1 AND state <> $2 RETURNING id`,
      [conversationId, mode, reason],
    );
    if (!rows[0]) return { changed: false };
    await appendAuditEvent(client, {
      tenantId: key.tenantId,
      actor: opts.actor ?? { type: 'system', id: 'switchboard' },
      action: 'conversation.handoff',
      resource: `conversation:${conversationId}`,
      outcome: 'success',
      reason,
      requestId: opts.requestId,
      details: { conversation: conversationId, to: mode },
    });
    return { changed: true };
  });
}

export interface ConversationRoute {
  conversationId: string;
  tenantId: string;
  channelId: string;
  platform: Platform;
  customerId: string;
  channelStatus: ChannelStatus;
}

/**
 * A conversation by id alone (routes addressed by conversation id): its tenant comes from the
 * allow-listed `conversation_tenant()`, the rest is read inside that tenant's scope.
 */
export async function getConversationRoute(pool: Pool, conversationId: string): Promise<ConversationRoute | null> {
  if (!UUID.test(conversationId)) return null;
  const tenant = await pool.query<{ tenant_id: string | null }>('SELECT conversation_tenant($1) AS tenant_id', [conversationId]);
  const tenantId = tenant.rows[0]?.tenant_id;
  if (!tenantId) return null;
  const { rows } = await withTenant(pool, tenantId, (tx) => tx.query<{ id: string; tenant_id: string; channel_id: string; platform: Platform; customer_id: string; status: ChannelStatus }>(
    `SELECT c.id, c.tenant_id, c.channel_id, ch.platform, c.customer_id, ch.status
     FROM conversations c JOIN channels ch ON ch.id = c.channel_id WHERE c.id = $1`,
    [conversationId],
  ));
  const r = rows[0];
  return r ? { conversationId: r.id, tenantId: r.tenant_id, channelId: r.channel_id, platform: r.platform, customerId: r.customer_id, channelStatus: r.status } : null;
}

// ---------------------------------------------------------------------------------------------
// Inbound customer messages

export interface RecordedInbound {
  messageId: string;
  conversationId: string;
  /** False when Meta redelivered a message we already stored. */
  inserted: boolean;
  /** True when a bot answer covering this message was already decided (a redelivery after the run ended). */
  alreadyAnswered: boolean;
  /** What the reply engine sees of it. */
  turn: TurnMessage;
}

function storyOf(event: MessageEvent): { kind: 'story_reply' | 'story_mention'; url?: string } | undefined {
  const mention = event.attachments.find((a) => a.type === 'story_mention');
  if (mention) return { kind: 'story_mention', ...(mention.url && { url: mention.url }) };
  if (event.replyTo?.story) return { kind: 'story_reply', ...(event.replyTo.story.url && { url: event.replyTo.story.url }) };
  return undefined;
}

function turnKind(event: MessageEvent | PostbackEvent): TurnMessage['kind'] {
  if (event.kind === 'postback') return 'postback';
  const story = storyOf(event);
  if (story) return story.kind;
  if (event.quickReplyPayload !== undefined) return 'quick_reply';
  return event.attachments.length > 0 && !event.text ? 'attachment' : 'text';
}

/** The engine's view of a customer message (no ids beyond ours, no raw payloads). */
export function toTurnMessage(messageId: string, event: MessageEvent | PostbackEvent): TurnMessage {
  const kind = turnKind(event);
  if (event.kind === 'postback') {
    return { messageId, kind, attachments: [], timestamp: event.timestamp, ...(event.title && { text: event.title }), ...(event.payload && { payload: event.payload }) };
  }
  const story = storyOf(event);
  return {
    messageId,
    kind,
    timestamp: event.timestamp,
    attachments: event.attachments.filter((a) => a.type !== 'story_mention').map((a) => ({ type: a.type, ...(a.url && { url: a.url }) })),
    ...(event.text && { text: event.text }),
    ...(event.quickReplyPayload && { payload: event.quickReplyPayload }),
    ...(story?.url && { storyUrl: story.url }),
  };
}

function inboundPayload(event: MessageEvent | PostbackEvent): object {
  if (event.kind === 'postback') return { payload: event.payload, referral: event.referral };
  const storyUrl = storyOf(event)?.url;
  return {
    attachments: event.attachments,
    quickReplyPayload: event.quickReplyPayload,
    replyTo: event.replyTo,
    referral: event.referral,
    ...(event.isUnsupported && { unsupported: true }),
    ...(storyUrl && { storyUrl }),
  };
}

/** Stores a customer's message once per (channel, mid); safe to call again on redelivery or retry. */
export async function recordInbound(pool: Pool, key: ConversationKey, event: MessageEvent | PostbackEvent): Promise<RecordedInbound> {
  const at = new Date(event.timestamp);
  // A postback without a mid (older payloads) is keyed by its dedupe key instead.
  const mid = event.mid ?? event.dedupeKey;
  const kind = turnKind(event);
  const text = event.kind === 'postback' ? (event.title ?? null) : (event.text ?? null);
  return withTenant(pool, key.tenantId, async (client) => {
    const conversationId = await upsertConversation(client, key, at);
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, mid, text, payload, status, meta_timestamp)
       VALUES ($1, $2, $3, 'inbound', 'customer', $4, $5, $6, $7, 'received', $8)
       ON CONFLICT (channel_id, mid) WHERE mid IS NOT NULL DO NOTHING
       RETURNING id`,
      [key.tenantId, key.channelId, conversationId, kind, mid, text, JSON.stringify(inboundPayload(event)), at],
    );
    const messageId = inserted.rows[0]?.id;
    if (messageId) return { messageId, conversationId, inserted: true, alreadyAnswered: false, turn: toTurnMessage(messageId, event) };
    const { rows } = await client.query<{ id: string; answered: boolean }>(
      `SELECT m.id, EXISTS (
         SELECT 1 FROM messages r
         WHERE r.conversation_id = m.conversation_id AND r.direction = 'outbound' AND r.author = 'bot'
           AND (r.in_reply_to = m.id OR m.id = ANY (r.covers)) AND r.status <> 'pending'
       ) AS answered
       FROM messages m WHERE m.channel_id = $1 AND m.mid = $2`,
      [key.channelId, mid],
    );
    const row = rows[0]!;
    return { messageId: row.id, conversationId, inserted: false, alreadyAnswered: row.answered, turn: toTurnMessage(row.id, event) };
  });
}

// ---------------------------------------------------------------------------------------------
// Outbound messages (bot replies and human agents' messages sent through us)

/** `parked`: decided while the channel needs reauthorization; sent once it is reconnected (src/db/parked-sends.ts). */
export type OutboundStatus = 'pending' | 'parked' | 'sent' | 'delivered' | 'read' | 'failed' | 'outside_window';

export interface OutboundRow {
  id: string;
  status: OutboundStatus;
  mid: string | null;
}

export interface NewOutbound {
  tenantId: string;
  channelId: string;
  conversationId: string;
  author: 'bot' | 'human_agent';
  text: string;
  /** Bot answers: the newest message of the burst (one answer per decision)… */
  inReplyTo?: string;
  /** …and every message the answer covers. */
  covers?: string[];
  /** Operator sends: the admin API request id. */
  clientRef?: string;
}

/**
 * Creates the outbound row before the send. A retried activity or a replay gets the same row
 * back (keyed by `in_reply_to` or `client_ref`), so a message already sent is never sent twice.
 */
export async function createOutbound(pool: Pool, input: NewOutbound): Promise<OutboundRow> {
  return withTenant(pool, input.tenantId, (tx) => insertOutbound(tx, input));
}

async function insertOutbound(db: Queryable, input: NewOutbound): Promise<OutboundRow> {
  const conflict = input.inReplyTo ? '(in_reply_to) WHERE in_reply_to IS NOT NULL' : input.clientRef ? '(conversation_id, client_ref) WHERE client_ref IS NOT NULL' : undefined;
  const { rows } = await db.query<OutboundRow>(
    `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, text, status, in_reply_to, covers, client_ref)
     VALUES ($1, $2, $3, 'outbound', $4, 'text', $5, 'pending', $6, $7, $8)
     ${conflict ? `ON CONFLICT ${conflict} DO NOTHING` : ''}
     RETURNING id, status, mid`,
    [input.tenantId, input.channelId, input.conversationId, input.author, input.text, input.inReplyTo ?? null, input.covers ?? null, input.clientRef ?? null],
  );
  if (rows[0]) return rows[0];
  const existing = input.inReplyTo
    ? await db.query<OutboundRow>('SELECT id, status, mid FROM messages WHERE in_reply_to = $1', [input.inReplyTo])
    : await db.query<OutboundRow>('SELECT id, status, mid FROM messages WHERE conversation_id = $1 AND client_ref = $2', [input.conversationId, input.clientRef]);
  return existing.rows[0]!;
}

/** The row to send, with its channel's status: a send on a channel that cannot send stops before the token is decrypted. */
export async function getOutbound(db: Pool | Queryable, tenantId: string, id: string): Promise<(OutboundRow & { text: string | null; channelStatus: ChannelStatus }) | null> {
  const { rows } = await inTenant(db, tenantId, (tx) =>
    tx.query<OutboundRow & { text: string | null; channelStatus: ChannelStatus }>(
      'SELECT m.id, m.status, m.mid, m.text, ch.status AS "channelStatus" FROM messages m JOIN channels ch ON ch.id = m.channel_id WHERE m.id = $1',
      [id],
    ),
  );
  return rows[0] ?? null;
}

/** Delivery receipts may have overtaken the send's answer: a row already delivered/read keeps its status. */
export async function markOutboundSent(
  db: Pool | Queryable,
  tenantId: string,
  id: string,
  mid: string,
  policy?: { messagingType: 'RESPONSE' | 'MESSAGE_TAG'; tag?: 'HUMAN_AGENT' },
): Promise<void> {
  await inTenant(db, tenantId, (tx) => tx.query(
    `UPDATE messages SET status = CASE WHEN status IN ('delivered', 'read') THEN status ELSE 'sent' END,
       mid = COALESCE(mid, $2), sent_at = COALESCE(sent_at, now()), error = NULL,
       messaging_type = COALESCE($3, messaging_type), message_tag = COALESCE($4, message_tag)
     WHERE id = $1`,
    [id, mid, policy?.messagingType ?? null, policy?.tag ?? null],
  ));
}

/**
 * Claims a send round just before the Send API call. False when this round was already claimed:
 * an earlier attempt (crashed, timed out) may have reached Meta, so sending again could deliver a
 * second copy — the caller reports the send as ambiguous instead.
 */
export async function claimSendRound(db: Pool | Queryable, tenantId: string, id: string, round: number): Promise<boolean> {
  const { rowCount } = await inTenant(db, tenantId, (tx) => tx.query(
    `UPDATE messages SET send_round = $2 WHERE id = $1 AND status = 'pending' AND send_round IS DISTINCT FROM $2`,
    [id, round],
  ));
  return rowCount === 1;
}

/** Meta answered (with an error): the request did not deliver anything, a retry is safe. */
export async function releaseSendRound(db: Pool | Queryable, tenantId: string, id: string): Promise<void> {
  await inTenant(db, tenantId, (tx) => tx.query('UPDATE messages SET send_round = NULL WHERE id = $1', [id]));
}

export interface SendErrorRecord {
  type: string;
  code?: number;
  subcode?: number;
  fbtraceId?: string;
  reason: string;
}

export async function markOutboundFailed(db: Pool | Queryable, tenantId: string, id: string, error: SendErrorRecord): Promise<void> {
  await inTenant(db, tenantId, (tx) => tx.query(`UPDATE messages SET status = 'failed', error = $2 WHERE id = $1 AND status = 'pending'`, [id, JSON.stringify(error)]));
}

/** Decided but not sendable under Meta's messaging window: kept with the reason, never sent. */
export async function markOutboundOutsideWindow(db: Pool | Queryable, tenantId: string, id: string, reason: string): Promise<void> {
  await inTenant(db, tenantId, (tx) => tx.query(`UPDATE messages SET status = 'outside_window', error = $2 WHERE id = $1 AND status = 'pending'`, [id, JSON.stringify({ type: 'OutsideWindow', reason })]));
}

/** Marks the human agent's activity (an operator send): the handoff's idle clock restarts. */
export async function touchHumanActivity(db: Pool | Queryable, tenantId: string, conversationId: string, at: Date): Promise<void> {
  await inTenant(db, tenantId, (tx) => tx.query('UPDATE conversations SET last_human_at = GREATEST(last_human_at, $2) WHERE id = $1', [conversationId, at]));
}

// ---------------------------------------------------------------------------------------------
// Echoes and other conversation events

export interface RecordedEcho {
  /** Our own send (metadata, known mid, or the outbound the workflow matched it to). */
  ours: boolean;
  outboundId?: string;
}

/**
 * An echo is ours (its metadata names our outbound row, its mid is the message_id the Send API
 * gave us, or the workflow matched it to an unconfirmed send by text) or a human answering from
 * Meta's inbox or app, recorded as a human agent message. A parked row can be confirmed too: an
 * ambiguous attempt before the channel lost its token may have reached the customer after all.
 */
export async function recordEcho(pool: Pool, key: ConversationKey, event: EchoEvent, matchedOutboundId?: string): Promise<RecordedEcho> {
  const outboundId = outboundIdFromMetadata(event.metadata) ?? matchedOutboundId;
  return withTenant(pool, key.tenantId, async (client) => {
    if (outboundId) {
      const { rowCount } = await client.query(
        `UPDATE messages SET mid = COALESCE(mid, $3), sent_at = COALESCE(sent_at, now()),
           status = CASE WHEN status IN ('pending', 'parked', 'failed') THEN 'sent' ELSE status END, error = NULL
         WHERE id = $1 AND channel_id = $2 AND direction = 'outbound'`,
        [outboundId, key.channelId, event.mid],
      );
      if (rowCount === 1) return { ours: true, outboundId };
    }
    const known = await client.query<{ id: string; author: string }>('SELECT id, author FROM messages WHERE channel_id = $1 AND mid = $2', [key.channelId, event.mid]);
    if (known.rows[0]) return known.rows[0].author === 'customer' ? { ours: false } : { ours: known.rows[0].author === 'bot' || outboundId !== undefined, outboundId: known.rows[0].id };
    const conversationId = await upsertConversation(client, key);
    const at = new Date(event.timestamp);
    await client.query(
      `INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, mid, text, payload, status, meta_timestamp, sent_at)
       VALUES ($1, $2, $3, 'outbound', 'human_agent', $4, $5, $6, $7, 'sent', $8, $8)
       ON CONFLICT (channel_id, mid) WHERE mid IS NOT NULL DO NOTHING`,
      [key.tenantId, key.channelId, conversationId, event.attachments.length > 0 && !event.text ? 'attachment' : 'text', event.mid, event.text ?? null, JSON.stringify({ attachments: event.attachments, appId: event.appId }), at],
    );
    await client.query('UPDATE conversations SET last_human_at = GREATEST(last_human_at, $2) WHERE id = $1', [conversationId, at]);
    return { ours: false };
  });
}

/** What storing an event changed, for logs and tests. */
export type EventEffect = 'stored' | 'duplicate' | 'reaction_applied' | 'status_updated' | 'content_erased' | 'target_unknown';

async function applyEffect(client: PoolClient, key: ConversationKey, conversationId: string, event: InboundEvent): Promise<EventEffect> {
  const at = new Date(event.timestamp);
  switch (event.kind) {
    case 'reaction': {
      // One current reaction per reactor (the customer): react replaces, unreact removes.
      const reactions = event.action === 'react' ? JSON.stringify([{ reaction: event.reaction ?? null, emoji: event.emoji ?? null, at: at.toISOString() }]) : '[]';
      const { rowCount } = await client.query('UPDATE messages SET reactions = $3 WHERE channel_id = $1 AND mid = $2', [key.channelId, event.mid, reactions]);
      return rowCount ? 'reaction_applied' : 'target_unknown';
    }
    case 'delivery': {
      // Every outbound message up to the watermark, plus the ones Meta named.
      const { rowCount } = await client.query(
        `UPDATE messages SET status = 'delivered', delivered_at = COALESCE(delivered_at, $4)
         WHERE conversation_id = $1 AND direction = 'outbound' AND status = 'sent'
           AND (mid = ANY ($2) OR sent_at <= to_timestamp($3 / 1000.0))`,
        [conversationId, event.mids, event.watermark, at],
      );
      return rowCount ? 'status_updated' : 'target_unknown';
    }
    case 'read': {
      // Messenger: everything before the watermark; Instagram: the seen message and everything before it.
      const { rowCount } = await client.query(
        `UPDATE messages SET status = 'read', read_at = COALESCE(read_at, $4), delivered_at = COALESCE(delivered_at, $4)
         WHERE conversation_id = $1 AND direction = 'outbound' AND status IN ('sent', 'delivered')
           AND sent_at <= COALESCE(to_timestamp($2 / 1000.0),
                                   (SELECT sent_at FROM messages WHERE channel_id = $5 AND mid = $3))`,
        [conversationId, event.watermark ?? null, event.mid ?? null, at, key.channelId],
      );
      return rowCount ? 'status_updated' : 'target_unknown';
    }
    case 'message_deleted': {
      // The customer unsent it: erase what they wrote, keep a tombstone so the thread stays coherent.
      const { rowCount } = await client.query(
        `UPDATE messages SET text = NULL, payload = '{}'::jsonb, deleted_at = COALESCE(deleted_at, $3)
         WHERE channel_id = $1 AND mid = $2 AND direction = 'inbound'`,
        [key.channelId, event.mid, at],
      );
      return rowCount ? 'content_erased' : 'target_unknown';
    }
    default:
      return 'stored';
  }
}

/**
 * Reactions, reads, deliveries, deletions and referrals: stored once per dedupe key, and applied
 * to the message they concern (reaction on the message, delivery/read status on our outbound
 * messages, deletion erases the content) in the same transaction.
 */
export async function applyConversationEvent(pool: Pool, key: ConversationKey, event: InboundEvent): Promise<{ effect: EventEffect }> {
  return withTenant(pool, key.tenantId, async (client) => {
    const conversationId = await upsertConversation(client, key);
    const { rowCount } = await client.query(
      `INSERT INTO conversation_events (tenant_id, channel_id, conversation_id, kind, dedupe_key, payload, occurred_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (channel_id, dedupe_key) DO NOTHING`,
      [key.tenantId, key.channelId, conversationId, event.kind, event.dedupeKey, JSON.stringify(event), new Date(event.timestamp)],
    );
    if (rowCount !== 1) return { effect: 'duplicate' };
    return { effect: await applyEffect(client, key, conversationId, event) };
  });
}
