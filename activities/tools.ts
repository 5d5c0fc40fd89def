import { ApplicationFailure } from '@temporalio/activity';
import type { Pool } from 'pg';
import { getBusinessInfoTool, handoffToHumanTool, searchProductsTool } from '../src/ai/tools';
import type { Logger } from '../src/logger';
import type { ConversationRef, ToolCall, ToolResult } from '../src/shared/types';

export interface ToolActivityInput {
  ref: ConversationRef;
  conversationId: string;
  call: ToolCall;
}

/** Postgres "foreign key violation": the tenant or channel was deleted while the conversation ran. */
const FOREIGN_KEY_VIOLATION = '23503';

/**
 * One activity per tool, so each has its own timeout and retries and a retry never re-runs a
 * call that already succeeded. Bad arguments come back as `ok: false` results (the engine
 * corrects itself); database errors throw and are retried.
 */
export function createToolActivities({ pool, logger }: { pool: Pool; logger: Logger }) {
  async function run(input: ToolActivityInput, fn: () => Promise<ToolResult>): Promise<ToolResult> {
    const started = Date.now();
    try {
      const result = await fn();
      logger.debug(
        { tenantId: input.ref.tenantId, conversationId: input.conversationId, tool: input.call.name, ok: result.ok, ms: Date.now() - started },
        'tool ran',
      );
      return result;
    } catch (err) {
      if ((err as { code?: string }).code === FOREIGN_KEY_VIOLATION) {
        throw ApplicationFailure.nonRetryable('the tenant or channel of this conversation no longer exists', 'ConversationOrphaned');
      }
      throw err;
    }
  }

  return {
    async searchProductsTool(input: ToolActivityInput): Promise<ToolResult> {
      return run(input, () => searchProductsTool(pool, input.ref.tenantId, input.call));
    },
    async getBusinessInfoTool(input: ToolActivityInput): Promise<ToolResult> {
      return run(input, () => getBusinessInfoTool(pool, input.ref.tenantId, input.call));
    },
    async handoffToHumanTool(input: ToolActivityInput): Promise<ToolResult> {
      return run(input, () => handoffToHumanTool(pool, { ...input.ref, conversationId: input.conversationId }, input.call));
    },
  };
}
