import type { EngineStep, ToolCall, ToolExchange, ToolResult, TurnMessage } from '../src/shared/types';

/**
 * One customer turn: ask the engine, run the tools it asks for, ask again — at most
 * MAX_TOOL_ROUNDS rounds of tools, then the engine must answer in text. Pure orchestration with
 * no Temporal imports: the workflow passes activities as ports, the dialogue tests pass engines
 * and tool functions directly, so both run the same loop.
 */

export const MAX_TOOL_ROUNDS = 3;

export interface TurnPorts {
  step(request: { messages: TurnMessage[]; exchanges: ToolExchange[]; final: boolean }): Promise<EngineStep>;
  runTool(call: ToolCall): Promise<ToolResult>;
}

export interface TurnOutcome {
  /** Empty when the engine chose not to answer (the workflow sends nothing). */
  text: string;
  exchanges: ToolExchange[];
  /** The `handoff_to_human` tool ran successfully. */
  handoff: boolean;
}

export async function runTurn(messages: TurnMessage[], ports: TurnPorts): Promise<TurnOutcome> {
  const exchanges: ToolExchange[] = [];
  for (let round = 0; ; round++) {
    const final = round >= MAX_TOOL_ROUNDS;
    const step = await ports.step({ messages, exchanges, final });
    if (step.kind === 'reply' || final) {
      // An engine that still asks for tools on the final round gets no more: its text, if any, stands.
      const text = step.kind === 'reply' ? step.text : (step.assistantText ?? '');
      return { text: text.trim(), exchanges, handoff: handedOff(exchanges) };
    }
    const results: ToolResult[] = [];
    // Sequential: a later call may depend on an earlier one's effect (handoff after a search).
    for (const call of step.calls) results.push(await ports.runTool(call));
    exchanges.push({ calls: step.calls, results, ...(step.assistantText ? { assistantText: step.assistantText } : {}) });
  }
}

function handedOff(exchanges: ToolExchange[]): boolean {
  return exchanges.some((e) => e.results.some((r) => r.name === 'handoff_to_human' && r.ok));
}
