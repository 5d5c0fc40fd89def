import type { Pool } from 'pg';
import { inTenant, type Queryable } from './tenant-scope';
import { describeAttachment } from '../ai/prompt';

export interface HistoryMessage {
  role: 'user' | 'assistant';
  text: string;
}

interface Row {
  direction: 'inbound' | 'outbound';
  kind: string;
  text: string | null;
  payload: { attachments?: Array<{ type?: string }>; quickReplyPayload?: string; payload?: string } | null;
}

/**
 * The conversation so far as context for the LLM: the last `limit` messages before the current
 * turn, oldest first. The turn's own messages (`excludeIds`) are left out (the engine adds them
 * itself), and so is anything newer than them. Deleted messages are skipped; outbound messages
 * count only once they were actually sent (not pending, failed or outside the window).
 */
export async function loadRecentMessages(pool: Pool | Queryable, tenantId: string, conversationId: string, limit: number, excludeIds: string[]): Promise<HistoryMessage[]> {
  if (limit <= 0) return [];
  const { rows } = await inTenant(pool, tenantId, (tx) => tx.query<Row>(
    `SELECT direction, kind, text, payload FROM (
       SELECT m.direction, m.kind, m.text, m.payload, m.created_at, m.id
       FROM messages m
       WHERE m.conversation_id = $1
         AND m.deleted_at IS NULL
         AND NOT (m.id = ANY($3::uuid[]))
         AND (m.direction = 'inbound' OR m.status IN ('sent', 'delivered', 'read'))
         AND m.created_at <= COALESCE((SELECT min(t.created_at) FROM messages t WHERE t.id = ANY($3::uuid[]) AND t.conversation_id = $1), 'infinity')
       ORDER BY m.created_at DESC, m.id DESC
       LIMIT $2
     ) recent ORDER BY created_at, id`,
    [conversationId, limit, excludeIds],
  ));
  const out: HistoryMessage[] = [];
  for (const r of rows) {
    const text = renderStored(r);
    if (text) out.push({ role: r.direction === 'inbound' ? 'user' : 'assistant', text });
  }
  return out;
}

function renderStored(r: Row): string {
  const parts: string[] = [];
  if (r.direction === 'inbound' && r.kind === 'story_reply') parts.push('[replying to your story]');
  if (r.direction === 'inbound' && r.kind === 'story_mention') parts.push('[the customer mentioned you in their story]');
  if (r.text) parts.push(r.text);
  const button = r.payload?.quickReplyPayload ?? (r.kind === 'postback' ? r.payload?.payload : undefined);
  if (r.direction === 'inbound' && button) parts.push(`[button: ${button}]`);
  for (const a of r.payload?.attachments ?? []) {
    if (a?.type && a.type !== 'story_mention') parts.push(r.direction === 'inbound' ? describeAttachment(a.type) : `[sent ${a.type}]`);
  }
  return parts.join(' ');
}
