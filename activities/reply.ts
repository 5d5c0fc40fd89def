import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { createEngineSelector, EngineConfigError, type EngineSelector } from '../src/ai/engine-selector';
import { LlmHttpError, LlmResponseError, LlmUnavailableError } from '../src/ai/openai-compatible';
import type { SecretVault } from '../src/crypto/vault';
import type { Logger } from '../src/logger';
import type { ConversationRef, EngineStep, TurnRequest } from '../src/shared/types';

/** Heartbeats while an engine step runs, so a superseded draft's cancellation reaches it quickly. */
const HEARTBEAT_EVERY_MS = 500;

export interface ReplyActivityDeps {
  pool: Pool;
  vault: SecretVault;
  logger: Logger;
  selectEngine?: EngineSelector;
}

export type PlanReplyStepInput = TurnRequest & { ref: ConversationRef };

/**
 * One engine step as an activity: the tenant's engine decides the next reply or tool calls.
 * Errors are classified here, once: a provider that refuses the request (bad key, unknown model)
 * is not retried; a rate limit is retried after the provider's `retry-after`; outages are retried.
 */
export function createReplyActivities({ pool, vault, logger, selectEngine }: ReplyActivityDeps) {
  const select = selectEngine ?? createEngineSelector({ pool, vault });
  return {
    async planReplyStep(input: PlanReplyStepInput): Promise<EngineStep> {
      const ctx = Context.current();
      const { ref, ...request } = input;
      const started = Date.now();
      ctx.heartbeat();
      const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
      try {
        const { engine, settings } = await select(request.tenantId);
        const step = await engine.step(request, ctx.cancellationSignal);
        logger.debug(
          {
            tenantId: ref.tenantId,
            conversationId: request.conversationId,
            engine: settings.engine,
            round: request.exchanges.length,
            outcome: step.kind,
            tools: step.kind === 'tool_calls' ? step.calls.map((c) => c.name) : undefined,
            ms: Date.now() - started,
          },
          'reply step planned',
        );
        return step;
      } catch (err) {
        if (ctx.cancellationSignal.aborted) throw err;
        const failure = classifyEngineError(err);
        logger.warn(
          {
            tenantId: ref.tenantId,
            conversationId: request.conversationId,
            round: request.exchanges.length,
            errorType: failure instanceof ApplicationFailure ? failure.type : (err as Error)?.name,
            status: err instanceof LlmHttpError ? err.status : undefined,
            ms: Date.now() - started,
          },
          'reply step failed',
        );
        throw failure;
      } finally {
        clearInterval(timer);
      }
    },
  };
}

/** Maps engine errors to Temporal failures; anything unknown (a database error) stays retryable as is. */
export function classifyEngineError(err: unknown): unknown {
  if (err instanceof LlmHttpError) {
    if (err.status === 429) {
      return ApplicationFailure.create({
        message: err.message,
        type: 'ReplyEngineRateLimited',
        nonRetryable: false,
        ...(err.retryAfterMs !== undefined ? { nextRetryDelay: Math.max(err.retryAfterMs, 100) } : {}),
      });
    }
    if (err.rejected) return ApplicationFailure.nonRetryable(err.message, 'ReplyEngineRejected');
    return ApplicationFailure.retryable(err.message, 'ReplyEngineUnavailable');
  }
  if (err instanceof LlmUnavailableError) return ApplicationFailure.retryable(err.message, 'ReplyEngineUnavailable');
  if (err instanceof LlmResponseError) return ApplicationFailure.retryable(err.message, 'ReplyEngineBadResponse');
  if (err instanceof EngineConfigError) return ApplicationFailure.nonRetryable(err.message, 'ReplyEngineMisconfigured');
  return err;
}
