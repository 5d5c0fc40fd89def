import type { EngineStep, TurnRequest } from '../shared/types';

/**
 * Produces the bot's next step in one customer turn: a reply, or tool calls to run first.
 * The tool loop itself lives in the workflow (workflows/turn.ts) so that every tool call is its
 * own activity and a retry never re-runs a call that already succeeded.
 *
 * `signal` aborts when the workflow cancels the step (a newer message superseded the draft, or
 * the turn deadline passed); engines pass it to their network calls.
 */
export interface ReplyEngine {
  step(request: TurnRequest, signal: AbortSignal): Promise<EngineStep>;
}
