import type { Sql } from './tenant-sql';
import type { AnsweredReply } from './ledger';

/**
 * Phase 4 of the benchmark: events a conversation must store but never answer — a reaction to
 * the customer's message, a delivery receipt and a read receipt for our reply, and (during the
 * whole run) the echoes of our own sends. This module picks the conversations and reads back what
 * the database made of the events.
 */

export interface EventTarget {
  customer: string;
  /** The customer message the reaction is on (the newest one the last reply covered). */
  reactToMid: string;
  /** The Send API message id of our last reply to this customer (what the delivery receipt names). */
  replyMessageId: string | null;
}

/** The last reply of each answered conversation, up to `max` conversations, in the order they were first answered. */
export function pickTargets(answered: AnsweredReply[], max: number, midOf: (i: number) => string): EventTarget[] {
  const last = new Map<string, AnsweredReply>();
  for (const r of answered) {
    const prev = last.get(r.customer);
    if (!prev || r.receivedAt >= prev.receivedAt) last.set(r.customer, r);
  }
  return [...last.values()].slice(0, max).map((r) => ({ customer: r.customer, reactToMid: midOf(r.newest), replyMessageId: r.messageId }));
}

export interface AppliedState {
  /** conversation_events rows of the sampled conversations, by kind. */
  events: Record<string, number>;
  /** Reacted customer messages whose `reactions` is non-empty. */
  reactionsApplied: number;
  /** Outbound rows of the sampled conversations by status (sent → delivered → read). */
  outbound: Record<string, number>;
}

export async function appliedState(pool: Sql, channelId: string, targets: EventTarget[]): Promise<AppliedState> {
  const customers = targets.map((t) => t.customer);
  const mids = targets.map((t) => t.reactToMid);
  const [events, reactions, outbound] = await Promise.all([
    pool.query<{ kind: string; n: number }>(
      `SELECT e.kind, count(*)::int AS n FROM conversation_events e JOIN conversations c ON c.id = e.conversation_id
       WHERE e.channel_id = $1 AND c.channel_id = $1 AND c.customer_id = ANY ($2) GROUP BY 1`,
      [channelId, customers],
    ),
    pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM messages WHERE channel_id = $1 AND mid = ANY ($2) AND jsonb_array_length(reactions) > 0`,
      [channelId, mids],
    ),
    pool.query<{ status: string; n: number }>(
      `SELECT m.status, count(*)::int AS n FROM messages m JOIN conversations c ON c.id = m.conversation_id
       WHERE m.channel_id = $1 AND c.channel_id = $1 AND c.customer_id = ANY ($2) AND m.direction = 'outbound' GROUP BY 1`,
      [channelId, customers],
    ),
  ]);
  return {
    events: Object.fromEntries(events.rows.map((r) => [r.kind, r.n])),
    reactionsApplied: reactions.rows[0]?.n ?? 0,
    outbound: Object.fromEntries(outbound.rows.map((r) => [r.status, r.n])),
  };
}

/** Signs of an echo or event taken for something else, for the whole bench channel (all goal 0). */
export interface MisreadSigns {
  /** Outbound rows created at or after `since` (phase 4 must create none). */
  outboundSince: number;
  /** Outbound rows by a human agent: an echo of our own send recorded as someone answering from the inbox. */
  humanAgentRows: number;
  /** Conversations handed to a human, by reason; `inbox_reply` is what an echo of our own send misread as a human's reply causes. */
  handoffs: Record<string, number>;
  /** Inbound rows that are not messages the bench sent (an echo or event stored as a customer message). */
  foreignInbound: number;
}

export async function misreadSigns(pool: Sql, channelId: string, benchMidPrefix: string, since: Date): Promise<MisreadSigns> {
  const [counts, handoffs] = await Promise.all([
    pool.query<Omit<MisreadSigns, 'handoffs'>>(
      `SELECT
         (SELECT count(*) FROM messages WHERE channel_id = $1 AND direction = 'outbound' AND created_at >= $3)::int AS "outboundSince",
         (SELECT count(*) FROM messages WHERE channel_id = $1 AND direction = 'outbound' AND author = 'human_agent')::int AS "humanAgentRows",
         (SELECT count(*) FROM messages WHERE channel_id = $1 AND direction = 'inbound' AND (mid IS NULL OR mid NOT LIKE $2))::int AS "foreignInbound"`,
      [channelId, `${benchMidPrefix}%`, since],
    ),
    pool.query<{ reason: string | null; n: number }>(
      `SELECT state_reason AS reason, count(*)::int AS n FROM conversations WHERE channel_id = $1 AND state = 'human_active' GROUP BY 1`,
      [channelId],
    ),
  ]);
  return { ...counts.rows[0]!, handoffs: Object.fromEntries(handoffs.rows.map((r) => [r.reason ?? 'unknown', r.n])) };
}
