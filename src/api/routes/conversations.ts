import { z } from 'zod';
import { roleHas, type Principal } from '../../auth/permissions';
import { getConversation, listConversations, listMessages, type ConversationRow, type MessageRow } from '../../db/conversation-reads';
import { withTenant } from '../../db/tenant-scope';
import { maskId } from '../../pii';
import { ApiError, defineRoute, isoDate, tenantParams, uuid, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { nextSchema, pageOf, pagingQuery } from '../paging';

/**
 * Conversations for the dashboard and integrations. Listing needs `analytics.read` only, so it
 * carries metadata; what a customer wrote (message texts, attachment and story links) and who the
 * customer is (the PSID / IGSID, otherwise masked like src/pii.ts does in logs) are personal data,
 * shown only to roles with `conversations.read`. Others get `text: null, redacted: true`.
 */

const iso = (d: Date | null) => d?.toISOString() ?? null;

const conversationSchema = z
  .object({
    id: z.uuid(),
    channelId: z.uuid(),
    platform: z.enum(['messenger', 'instagram']),
    customerId: z.string().describe('PSID / IGSID; masked (`***1234`) unless the role has conversations.read'),
    customerIdMasked: z.boolean(),
    state: z.enum(['bot_active', 'human_active']),
    stateChangedAt: isoDate,
    lastInboundAt: isoDate.nullable().describe("The customer's last message"),
    lastMessageAt: isoDate.nullable().describe('The last message either way'),
    messageCount: z.number().int(),
    createdAt: isoDate,
  })
  .meta({ id: 'ConversationSummary' });

const messageSchema = z
  .object({
    id: z.uuid(),
    direction: z.enum(['inbound', 'outbound']),
    author: z.enum(['customer', 'bot', 'human_agent']),
    kind: z.string(),
    status: z
      .string()
      .describe(
        'received (inbound); pending, parked (waiting for its channel to be reconnected: sent then, in order), sent, delivered, read, failed or outside_window (outbound)',
      ),
    statusReason: z
      .string()
      .nullable()
      .describe('Why an outbound message is parked, outside_window (not sent; also when the window closed while it was parked) or failed; null otherwise'),
    createdAt: isoDate,
    sentAt: isoDate.nullable(),
    deleted: z.boolean().describe('The customer deleted it: its content was erased'),
    text: z.string().nullable(),
    attachments: z
      .array(z.object({ type: z.string(), url: z.string().nullable() }))
      .nullable()
      .describe('Attachment types and their (expiring) CDN links; null when redacted'),
    storyUrl: z.string().nullable().describe('The story replied to or mentioned; null when redacted or none'),
    redacted: z.boolean().describe('true: the role lacks conversations.read, so text, attachments and links are withheld'),
  })
  .meta({ id: 'Message' });

const listQuery = pagingQuery().extend({
  state: z.enum(['bot_active', 'human_active'], 'must be bot_active or human_active').optional(),
  channelId: uuid.optional().describe("Only this channel's conversations"),
});

const conversationParams = tenantParams.extend({ conversationId: uuid });

const mayRead = (principal: Principal) => roleHas(principal.role, 'conversations.read');

function summary(c: ConversationRow, readable: boolean) {
  return {
    id: c.id,
    channelId: c.channelId,
    platform: c.platform,
    customerId: readable ? c.customerId : maskId(c.customerId),
    customerIdMasked: !readable,
    state: c.state,
    stateChangedAt: c.stateChangedAt.toISOString(),
    lastInboundAt: iso(c.lastInboundAt),
    lastMessageAt: iso(c.lastMessageAt),
    messageCount: c.messageCount,
    createdAt: c.createdAt.toISOString(),
  };
}

function attachmentsOf(payload: Record<string, unknown>): Array<{ type: string; url: string | null }> {
  const list = Array.isArray(payload.attachments) ? (payload.attachments as unknown[]) : [];
  return list.flatMap((a) => {
    if (a === null || typeof a !== 'object') return [];
    const { type, url } = a as { type?: unknown; url?: unknown };
    return typeof type === 'string' ? [{ type, url: typeof url === 'string' ? url : null }] : [];
  });
}

/** The stored reason (`messages.error`) as a sentence for the tenant: codes and our wording, never Meta's message text. */
export function statusReasonOf(m: Pick<MessageRow, 'direction' | 'status' | 'error'>): string | null {
  if (m.direction !== 'outbound') return null;
  const e = m.error ?? {};
  const code = e.code !== undefined ? `, Meta error ${e.code}${e.subcode !== undefined ? `/${e.subcode}` : ''}` : '';
  switch (m.status) {
    case 'parked':
      return `Parked: the channel needs reauthorization (${e.type ?? 'reauth_required'}${code}). It is sent once the channel is reconnected.`;
    case 'outside_window':
      return `Not sent: ${e.reason ?? 'outside the messaging window'}`;
    case 'failed':
      return `Not sent: ${e.reason ?? 'failed'} (${e.type ?? 'unknown'}${code})`;
    default:
      return null;
  }
}

function message(m: MessageRow, readable: boolean) {
  const content = readable
    ? { text: m.text, attachments: attachmentsOf(m.payload), storyUrl: typeof m.payload.storyUrl === 'string' ? m.payload.storyUrl : null, redacted: false }
    : { text: null, attachments: null, storyUrl: null, redacted: true };
  return {
    id: m.id,
    direction: m.direction,
    author: m.author,
    kind: m.kind,
    status: m.status,
    statusReason: statusReasonOf(m),
    createdAt: m.createdAt.toISOString(),
    sentAt: iso(m.sentAt),
    deleted: m.deletedAt !== null,
    ...content,
  };
}

export function conversationsRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  return [
    defineRoute({
      id: 'listConversations',
      method: 'GET',
      path: '/tenants/:tenantId/conversations',
      summary: "The tenant's conversations, newest first (metadata; the customer id masked without conversations.read)",
      tag: 'conversations',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      query: listQuery,
      response: z.object({ items: z.array(conversationSchema), next: nextSchema }),
      handler: async ({ tenantId, query, principal }) => {
        const rows = await withTenant(pool, tenantId, (tx) => listConversations(tx, query));
        const page = pageOf(rows, query.limit, (r) => r.id);
        return { items: page.rows.map((c) => summary(c, mayRead(principal))), next: page.next };
      },
    }),
    defineRoute({
      id: 'getConversation',
      method: 'GET',
      path: '/tenants/:tenantId/conversations/:conversationId',
      summary: 'One conversation and its messages (oldest first); texts only with conversations.read',
      description: 'Messages come newest page first: `limit` messages, `next` pages to older ones.',
      tag: 'conversations',
      scope: 'tenant',
      permission: 'analytics.read',
      params: conversationParams,
      query: pagingQuery({ fallback: 100 }),
      response: z.object({
        conversation: conversationSchema.extend({ stateReason: z.string().nullable(), lastHumanAt: isoDate.nullable() }),
        messages: z.array(messageSchema),
        next: nextSchema,
      }),
      handler: async ({ tenantId, params, query, principal }) => {
        const readable = mayRead(principal);
        return withTenant(pool, tenantId, async (tx) => {
          const c = await getConversation(tx, params.conversationId);
          if (!c) throw new ApiError(404, 'conversation_not_found', `no conversation ${params.conversationId}`);
          const page = pageOf(await listMessages(tx, c.id, query), query.limit, (m) => m.id);
          return {
            conversation: { ...summary(c, readable), stateReason: c.stateReason, lastHumanAt: iso(c.lastHumanAt) },
            messages: page.rows.reverse().map((m) => message(m, readable)),
            next: page.next,
          };
        });
      },
    }),
  ];
}
