import type { Cursor } from '../api/paging';
import { cursorTimeSql } from '../api/paging';
import type { ConversationMode, Platform } from '../shared/types';
import type { Queryable } from './tenant-scope';

/**
 * Read models of conversations and their messages for the admin API, inside the caller's tenant
 * scope. What may be shown to whom (customer ids masked, texts redacted) is decided by the route;
 * these return the stored values.
 */

export interface ConversationRow {
  id: string;
  channelId: string;
  platform: Platform;
  customerId: string;
  state: ConversationMode;
  stateReason: string | null;
  stateChangedAt: Date;
  lastInboundAt: Date | null;
  lastHumanAt: Date | null;
  lastMessageAt: Date | null;
  messageCount: number;
  createdAt: Date;
  cursor_at: string;
}

const CONVERSATION_COLUMNS = `c.id, c.channel_id AS "channelId", ch.platform, c.customer_id AS "customerId", c.state,
  c.state_reason AS "stateReason", c.state_changed_at AS "stateChangedAt", c.last_inbound_at AS "lastInboundAt",
  c.last_human_at AS "lastHumanAt", s.last_message_at AS "lastMessageAt", s.message_count AS "messageCount",
  c.created_at AS "createdAt", ${cursorTimeSql('c.created_at')} AS cursor_at`;

// Per conversation, from the (conversation_id, created_at) index.
const MESSAGE_STATS = `LEFT JOIN LATERAL (
    SELECT max(m.created_at) AS last_message_at, count(*)::int AS message_count FROM messages m WHERE m.conversation_id = c.id
  ) s ON true`;

/** Newest first; `limit + 1` rows (see src/api/paging.ts). */
export async function listConversations(
  tx: Queryable,
  opts: { limit: number; before?: Cursor; state?: ConversationMode; channelId?: string },
): Promise<ConversationRow[]> {
  const { rows } = await tx.query<ConversationRow>(
    `SELECT ${CONVERSATION_COLUMNS}
       FROM conversations c JOIN channels ch ON ch.id = c.channel_id
       ${MESSAGE_STATS}
      WHERE ($1::timestamptz IS NULL OR (c.created_at, c.id) < ($1::timestamptz, $2::uuid))
        AND ($3::text IS NULL OR c.state = $3)
        AND ($4::uuid IS NULL OR c.channel_id = $4)
      ORDER BY c.created_at DESC, c.id DESC
      LIMIT $5`,
    [opts.before?.at ?? null, opts.before?.key ?? null, opts.state ?? null, opts.channelId ?? null, opts.limit + 1],
  );
  return rows;
}

export async function getConversation(tx: Queryable, id: string): Promise<ConversationRow | null> {
  const { rows } = await tx.query<ConversationRow>(
    `SELECT ${CONVERSATION_COLUMNS}
       FROM conversations c JOIN channels ch ON ch.id = c.channel_id
       ${MESSAGE_STATS}
      WHERE c.id = $1`,
    [id],
  );
  return rows[0] ?? null;
}

export interface MessageRow {
  id: string;
  direction: 'inbound' | 'outbound';
  author: 'customer' | 'bot' | 'human_agent';
  kind: string;
  status: string;
  text: string | null;
  payload: Record<string, unknown>;
  createdAt: Date;
  sentAt: Date | null;
  deletedAt: Date | null;
  /** Why an outbound message is parked, outside the window or failed (`{type, reason, code?, …}`); no content. */
  error: { type?: string; reason?: string; code?: number; subcode?: number } | null;
  cursor_at: string;
}

/** A conversation's messages, newest first; `limit + 1` rows (see src/api/paging.ts). */
export async function listMessages(tx: Queryable, conversationId: string, opts: { limit: number; before?: Cursor }): Promise<MessageRow[]> {
  const { rows } = await tx.query<MessageRow>(
    `SELECT id, direction, author, kind, status, text, payload, created_at AS "createdAt", sent_at AS "sentAt",
            deleted_at AS "deletedAt", error, ${cursorTimeSql('created_at')} AS cursor_at
       FROM messages
      WHERE conversation_id = $1
        AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
      ORDER BY created_at DESC, id DESC
      LIMIT $4`,
    [conversationId, opts.before?.at ?? null, opts.before?.key ?? null, opts.limit + 1],
  );
  return rows;
}
