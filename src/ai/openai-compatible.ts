import type { HistoryMessage } from '../db/history';
import type { AssistantProfile } from '../db/tenant-settings';
import type { EngineStep, ToolCall, ToolExchange, ToolName, TurnRequest } from '../shared/types';
import { buildSystemPrompt, renderTurnMessage } from './prompt';
import type { ReplyEngine } from './reply-engine';
import { CHAT_TOOLS, INVALID_ARGUMENTS_KEY } from './tool-specs';

/**
 * A reply engine speaking the Chat Completions wire protocol with `tools`, so OpenAI, Azure
 * OpenAI, Ollama, vLLM and LM Studio all work by base URL + model (+ key). One `step` is one
 * HTTP request; the tool loop lives in the workflow. Errors are typed so the activity classifies
 * them once; none of them carries the key or any message text.
 */

export type ChatMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: ChatToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** The provider answered with an HTTP error status. */
export class LlmHttpError extends Error {
  constructor(
    readonly status: number,
    /** From `retry-after-ms` / `retry-after`, when the provider said how long to wait. */
    readonly retryAfterMs: number | undefined,
    /** The provider's short error code or type (e.g. `invalid_api_key`), never its free text. */
    readonly code: string | undefined,
  ) {
    super(`model provider answered HTTP ${status}${code ? ` (${code})` : ''}`);
    this.name = 'LlmHttpError';
  }

  /** Retrying cannot help: bad key, unknown model or URL, a request the provider refuses. */
  get rejected(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 409 && this.status !== 429;
  }
}

/** The provider could not be reached, or did not answer within `timeoutMs`. */
export class LlmUnavailableError extends Error {
  constructor(reason: string) {
    super(`model provider unavailable: ${reason}`);
    this.name = 'LlmUnavailableError';
  }
}

/** The provider answered 2xx with something that is not a usable chat completion. */
export class LlmResponseError extends Error {
  constructor(reason: string) {
    super(`unusable model response: ${reason}`);
    this.name = 'LlmResponseError';
  }
}

export interface OpenAiCompatibleOptions {
  /** e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`. */
  baseUrl: string;
  model: string;
  /** Sent as `authorization: Bearer …` only when set (a local Ollama needs none). */
  apiKey?: string | null;
  profile: AssistantProfile;
  /** The tenant's default language (BCP 47). */
  language: string;
  /** The conversation before this turn; omitted → no history. */
  loadHistory?: (conversationId: string, excludeMessageIds: string[]) => Promise<HistoryMessage[]>;
  /** Per-request limit on top of the caller's signal. */
  timeoutMs?: number;
  temperature?: number;
  fetchImpl?: typeof fetch;
}

export class OpenAiCompatibleEngine implements ReplyEngine {
  private readonly endpoint: string;

  constructor(private readonly options: OpenAiCompatibleOptions) {
    this.endpoint = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  async step(request: TurnRequest, signal: AbortSignal): Promise<EngineStep> {
    signal.throwIfAborted();
    const history = this.options.loadHistory
      ? await this.options.loadHistory(
          request.conversationId,
          request.messages.map((m) => m.messageId),
        )
      : [];
    const body = {
      model: this.options.model,
      messages: buildMessages(this.options.profile, this.options.language, history, request),
      ...(request.final ? {} : { tools: CHAT_TOOLS, tool_choice: 'auto' }),
      ...(this.options.temperature !== undefined ? { temperature: this.options.temperature } : {}),
      stream: false,
    };
    const json = await this.post(body, signal);
    return parseCompletion(json, request);
  }

  private async post(body: unknown, signal: AbortSignal): Promise<unknown> {
    const timeout = this.options.timeoutMs !== undefined ? AbortSignal.timeout(this.options.timeoutMs) : undefined;
    const combined = timeout ? AbortSignal.any([signal, timeout]) : signal;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    const fetchImpl = this.options.fetchImpl ?? fetch;
    let res: Response;
    try {
      res = await fetchImpl(this.endpoint, { method: 'POST', headers, body: JSON.stringify(body), signal: combined });
    } catch (err) {
      throw this.transportError(err, signal, timeout);
    }
    if (!res.ok) {
      const code = await errorCode(res);
      throw new LlmHttpError(res.status, retryAfterMs(res.headers), code);
    }
    try {
      return await res.json();
    } catch (err) {
      if (signal.aborted || timeout?.aborted) throw this.transportError(err, signal, timeout);
      throw new LlmResponseError('body is not JSON');
    }
  }

  private transportError(err: unknown, signal: AbortSignal, timeout: AbortSignal | undefined): unknown {
    // The caller cancelled: surface its reason (Temporal's cancellation), not a provider failure.
    if (signal.aborted) return signal.reason ?? err;
    if (timeout?.aborted) return new LlmUnavailableError(`no answer within ${this.options.timeoutMs} ms`);
    const cause = (err as { cause?: { code?: string } })?.cause?.code ?? (err as { code?: string })?.code;
    return new LlmUnavailableError(cause ? `network error ${cause}` : 'network error');
  }
}

/** System prompt, history, this turn's customer messages, then each tool round and its results. */
export function buildMessages(profile: AssistantProfile, language: string, history: HistoryMessage[], request: TurnRequest): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: 'system', content: buildSystemPrompt(profile, language) }];
  for (const h of history) messages.push({ role: h.role, content: h.text });
  for (const m of request.messages) messages.push({ role: 'user', content: renderTurnMessage(m) });
  for (const exchange of request.exchanges) messages.push(...exchangeMessages(exchange));
  return messages;
}

function exchangeMessages(exchange: ToolExchange): ChatMessage[] {
  const out: ChatMessage[] = [
    {
      role: 'assistant',
      content: exchange.assistantText ?? null,
      tool_calls: exchange.calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: wireArguments(c) } })),
    },
  ];
  for (const call of exchange.calls) {
    const result = exchange.results.find((r) => r.callId === call.id);
    const content = result ? result.content : { error: 'the tool did not run' };
    out.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify(content) });
  }
  return out;
}

/** Arguments as the model sent them: malformed JSON goes back verbatim so the model sees its mistake. */
function wireArguments(call: ToolCall): string {
  const raw = call.arguments?.[INVALID_ARGUMENTS_KEY];
  return typeof raw === 'string' ? raw : JSON.stringify(call.arguments ?? {});
}

interface WireToolCall {
  id?: unknown;
  type?: unknown;
  function?: { name?: unknown; arguments?: unknown };
}

export function parseCompletion(json: unknown, request: Pick<TurnRequest, 'final' | 'exchanges'>): EngineStep {
  const message = (json as { choices?: Array<{ message?: { content?: unknown; tool_calls?: unknown } }> })?.choices?.[0]?.message;
  if (!message || typeof message !== 'object') throw new LlmResponseError('no choices[0].message');
  const content = typeof message.content === 'string' ? message.content.trim() : '';
  const wireCalls = Array.isArray(message.tool_calls) ? (message.tool_calls as WireToolCall[]) : [];

  if (wireCalls.length > 0 && !request.final) {
    const calls = wireCalls.map((c, i) => parseToolCall(c, i, request.exchanges.length));
    return { kind: 'tool_calls', calls, ...(content ? { assistantText: content } : {}) };
  }
  if (content) return { kind: 'reply', text: content };
  // After a handoff the workflow has its own words for silence; otherwise an empty answer is a
  // provider fault and worth a retry (the turn deadline bounds it and sends the fallback).
  const handedOff = request.exchanges.some((e) => e.results.some((r) => r.name === 'handoff_to_human' && r.ok));
  if (handedOff) return { kind: 'reply', text: '' };
  throw new LlmResponseError('neither text nor tool calls');
}

function parseToolCall(c: WireToolCall, index: number, round: number): ToolCall {
  const name = typeof c.function?.name === 'string' ? c.function.name : '';
  const id = typeof c.id === 'string' && c.id ? c.id : `call_${round}_${index}`;
  const raw = c.function?.arguments;
  let args: Record<string, unknown>;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    // Some servers (older Ollama) send the arguments as an object rather than a JSON string.
    args = raw as Record<string, unknown>;
  } else if (typeof raw === 'string') {
    args = parseArgumentString(raw);
  } else if (raw === undefined) {
    args = {};
  } else {
    args = { [INVALID_ARGUMENTS_KEY]: String(raw) };
  }
  return { id, name: name as ToolName, arguments: args };
}

function parseArgumentString(raw: string): Record<string, unknown> {
  if (raw.trim() === '') return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Reported to the model by the tool runner.
  }
  return { [INVALID_ARGUMENTS_KEY]: raw };
}

function retryAfterMs(headers: Headers): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const after = headers.get('retry-after');
  if (!after) return undefined;
  if (/^\d+(\.\d+)?$/.test(after.trim())) return Math.ceil(Number(after) * 1000);
  const at = Date.parse(after);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** `error.code` or `error.type` of an OpenAI-style error body, if it is a short token. */
async function errorCode(res: Response): Promise<string | undefined> {
  try {
    const body = (await res.json()) as { error?: { code?: unknown; type?: unknown } };
    const code = body?.error?.code ?? body?.error?.type;
    return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : undefined;
  } catch {
    return undefined;
  }
}
