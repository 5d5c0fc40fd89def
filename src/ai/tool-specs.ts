import { z } from 'zod';
import type { ToolName } from '../shared/types';

/**
 * The three tools both engines use: the JSON-schema definitions sent as Chat Completions `tools`,
 * and the zod schemas that validate what an engine actually sent. Validation failures become an
 * `ok: false` tool result naming the problem, so a model can correct itself on the next round.
 */

export const TOOL_NAMES: readonly ToolName[] = ['search_products', 'get_business_info', 'handoff_to_human'];

export function isToolName(name: string): name is ToolName {
  return (TOOL_NAMES as readonly string[]).includes(name);
}

/**
 * A model sent arguments that are not a JSON object: the raw text travels under this key so the
 * tool runner can report the parse error and the engine can echo the original text back.
 */
export const INVALID_ARGUMENTS_KEY = '$invalid_arguments';

export const searchProductsArgs = z
  .object({
    query: z.string().trim().min(1, 'query must name what the customer is looking for').max(200, 'query is longer than 200 characters'),
    // Models often send null for an argument they mean to leave out.
    max_price: z.number().positive('max_price must be a positive number').nullish(),
    in_stock_only: z.boolean().nullish(),
    limit: z.number().int('limit must be a whole number').min(1, 'limit must be between 1 and 10').max(10, 'limit must be between 1 and 10').nullish(),
  })
  .strict();
export type SearchProductsArgs = z.infer<typeof searchProductsArgs>;

export const BUSINESS_TOPICS = ['hours', 'address', 'policies', 'all'] as const;
export type BusinessTopic = (typeof BUSINESS_TOPICS)[number];

export const getBusinessInfoArgs = z.object({ topic: z.enum(BUSINESS_TOPICS).nullish() }).strict();
export type GetBusinessInfoArgs = z.infer<typeof getBusinessInfoArgs>;

export const handoffToHumanArgs = z
  .object({ reason: z.string().trim().min(1, 'reason must say why the customer needs a person').max(500, 'reason is longer than 500 characters') })
  .strict();
export type HandoffToHumanArgs = z.infer<typeof handoffToHumanArgs>;

export const TOOL_ARGUMENT_SCHEMAS = {
  search_products: searchProductsArgs,
  get_business_info: getBusinessInfoArgs,
  handoff_to_human: handoffToHumanArgs,
} as const;

/** Chat Completions `tools` entries. Descriptions are written for the model. */
export const CHAT_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'search_products',
      description:
        "Search the shop's product catalog. Use it before stating any price, availability or product detail. Returns matching products with price, currency, stock and link.",
      parameters: {
        type: 'object',
        properties: {
          query: { type: 'string', description: 'The product words to search for, e.g. "rain jacket" (no filler words).' },
          max_price: { type: 'number', description: 'Only products at or below this price, in the catalog currency.' },
          in_stock_only: { type: 'boolean', description: 'Only products currently in stock.' },
          limit: { type: 'integer', minimum: 1, maximum: 10, description: 'How many products to return (default 3).' },
        },
        required: ['query'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_business_info',
      description: 'Opening hours, address and policies (returns, shipping, payment, …) of the business.',
      parameters: {
        type: 'object',
        properties: { topic: { type: 'string', enum: [...BUSINESS_TOPICS], description: 'What to look up (default all).' } },
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'handoff_to_human',
      description:
        'Hand the conversation to a human member of the team. Use it when the customer asks for a person, or when you cannot help. The bot stops answering afterwards.',
      parameters: {
        type: 'object',
        properties: { reason: { type: 'string', description: 'Short reason for the team, e.g. "customer asked for a person".' } },
        required: ['reason'],
        additionalProperties: false,
      },
    },
  },
] as const;

/** A zod error as one line the model (or a developer) can act on: `max_price: must be a positive number`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = i.path.length > 0 ? i.path.join('.') : 'arguments';
      if (i.code === 'unrecognized_keys') return `${where}: unknown field(s) ${i.keys.join(', ')}`;
      return `${where}: ${i.message}`;
    })
    .join('; ');
}
