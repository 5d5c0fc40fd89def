import type { Pool } from 'pg';
import type { z } from 'zod';
import { setConversationMode } from '../db/conversations';
import { searchProducts } from '../db/products';
import { loadTenantSettings } from '../db/tenant-settings';
import type { ConversationRef, ToolCall, ToolResult } from '../shared/types';
import { productWords } from './languages';
import {
  describeIssues,
  getBusinessInfoArgs,
  handoffToHumanArgs,
  INVALID_ARGUMENTS_KEY,
  isToolName,
  searchProductsArgs,
} from './tool-specs';

/**
 * The tools' implementations, shared by the tool activities and the dialogue tests. Bad
 * arguments never throw: they come back as `ok: false` with an error the engine can act on.
 * Database errors do throw, so the activity is retried.
 */

export type ToolConversation = ConversationRef & { conversationId: string };

const MAX_DESCRIPTION = 300;

function failure(call: Pick<ToolCall, 'id' | 'name'>, error: string): ToolResult {
  return { callId: call.id, name: call.name, ok: false, content: { error } };
}

function parseArguments<S extends z.ZodType>(call: ToolCall, schema: S): { ok: true; args: z.infer<S> } | { ok: false; result: ToolResult } {
  if (call.arguments && Object.prototype.hasOwnProperty.call(call.arguments, INVALID_ARGUMENTS_KEY)) {
    return { ok: false, result: failure(call, 'arguments are not a valid JSON object; send a JSON object matching the tool parameters') };
  }
  const parsed = schema.safeParse(call.arguments ?? {});
  if (!parsed.success) return { ok: false, result: failure(call, `invalid arguments: ${describeIssues(parsed.error)}`) };
  return { ok: true, args: parsed.data };
}

export function unknownToolResult(call: ToolCall): ToolResult {
  return failure(call, `unknown tool "${String(call.name)}"; available tools: search_products, get_business_info, handoff_to_human`);
}

export async function searchProductsTool(pool: Pool, tenantId: string, call: ToolCall): Promise<ToolResult> {
  const parsed = parseArguments(call, searchProductsArgs);
  if (!parsed.ok) return parsed.result;
  const { query, max_price, in_stock_only, limit } = parsed.args;
  // Models (and customers) pad queries with filler words; an all-filler query is searched as is.
  const meaningful = productWords(query);
  const products = await searchProducts(pool, tenantId, meaningful.length > 0 ? meaningful.join(' ') : query, {
    limit: limit ?? 3,
    ...(max_price != null ? { maxPrice: max_price } : {}),
    ...(in_stock_only != null ? { inStockOnly: in_stock_only } : {}),
  });
  return {
    callId: call.id,
    name: 'search_products',
    ok: true,
    content: {
      products: products.map((p) => ({
        sku: p.sku,
        name: p.name,
        description: p.description.length > MAX_DESCRIPTION ? `${p.description.slice(0, MAX_DESCRIPTION - 1)}…` : p.description,
        price: p.price,
        currency: p.currency?.trim() ?? null,
        stock: p.stock,
        in_stock: p.stock === null ? null : p.stock > 0,
        url: p.url,
      })),
    },
  };
}

export async function getBusinessInfoTool(pool: Pool, tenantId: string, call: ToolCall): Promise<ToolResult> {
  const parsed = parseArguments(call, getBusinessInfoArgs);
  if (!parsed.ok) return parsed.result;
  const topic = parsed.args.topic ?? 'all';
  const { assistant } = await loadTenantSettings(pool, tenantId);
  const content: Record<string, unknown> = { topic };
  if (assistant.businessName) content.business_name = assistant.businessName;
  if (topic === 'hours' || topic === 'all') content.hours = assistant.hours ?? null;
  if (topic === 'address' || topic === 'all') content.address = assistant.address ?? null;
  if (topic === 'policies' || topic === 'all') content.policies = assistant.policies ?? {};
  if (topic === 'all') content.facts = assistant.facts ?? [];
  const missing = Object.entries(content).filter(([, v]) => v === null || (typeof v === 'object' && v !== null && Object.keys(v).length === 0));
  if (missing.length > 0) content.note = `not configured: ${missing.map(([k]) => k).join(', ')}. Do not guess; offer to ask the team.`;
  return { callId: call.id, name: 'get_business_info', ok: true, content };
}

export async function handoffToHumanTool(pool: Pool, conversation: ToolConversation, call: ToolCall): Promise<ToolResult> {
  const parsed = parseArguments(call, handoffToHumanArgs);
  if (!parsed.ok) return parsed.result;
  const ref: ConversationRef = { tenantId: conversation.tenantId, channelId: conversation.channelId, customerId: conversation.customerId };
  await setConversationMode(pool, ref, 'human_active', 'tool:handoff_to_human');
  return { callId: call.id, name: 'handoff_to_human', ok: true, content: { handed_off: true } };
}

export interface ToolRunner {
  run(conversation: ToolConversation, call: ToolCall): Promise<ToolResult>;
}

export function createToolRunner({ pool }: { pool: Pool }): ToolRunner {
  return {
    async run(conversation, call) {
      if (!isToolName(call.name)) return unknownToolResult(call);
      switch (call.name) {
        case 'search_products':
          return searchProductsTool(pool, conversation.tenantId, call);
        case 'get_business_info':
          return getBusinessInfoTool(pool, conversation.tenantId, call);
        case 'handoff_to_human':
          return handoffToHumanTool(pool, conversation, call);
      }
    },
  };
}
