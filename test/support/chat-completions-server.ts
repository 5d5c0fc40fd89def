import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local server speaking the Chat Completions protocol with scripted answers: tests queue
 * responses (tool calls, text, HTTP errors, a hang) or answer with a function of the request, and
 * read back every request the engine made.
 */

export interface ScriptedToolCall {
  id?: string;
  name: string;
  /** An object is JSON-encoded; a string is sent verbatim (to script malformed arguments). */
  arguments?: unknown;
}

export type ScriptedResponse =
  | { content: string }
  | { toolCalls: ScriptedToolCall[]; content?: string }
  | { status: number; body?: unknown; headers?: Record<string, string> }
  /** Keeps the request open until the client gives up (abort) or the server closes. */
  | { hang: true }
  /** A 200 with this exact JSON body. */
  | { raw: unknown };

export type ScriptedFn = (body: ChatRequestBody, index: number) => ScriptedResponse;

export interface RecordedRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: ChatRequestBody;
}

export interface ChatRequestBody {
  model: string;
  messages: Array<{ role: string; content: string | null; tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }>; tool_call_id?: string }>;
  tools?: Array<{ type: string; function: { name: string; parameters: unknown } }>;
  tool_choice?: unknown;
  [k: string]: unknown;
}

export interface ChatCompletionsServer {
  /** Base URL including `/v1`, as a tenant would configure it. */
  url: string;
  requests: RecordedRequest[];
  /** Answers the next requests in order; a function is called with that request's body. */
  queue(...responses: Array<ScriptedResponse | ScriptedFn>): void;
  /** Used when the queue is empty. */
  respondWith(fn: ((body: ChatRequestBody, index: number) => ScriptedResponse) | undefined): void;
  reset(): void;
  /** Requests currently held open by `{ hang: true }`. */
  hanging(): number;
  close(): Promise<void>;
}

let completionSeq = 0;

function completion(model: string, message: Record<string, unknown>, finishReason: string): unknown {
  return {
    id: `chatcmpl-test-${++completionSeq}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, finish_reason: finishReason }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}

export async function startChatCompletionsServer(): Promise<ChatCompletionsServer> {
  const requests: RecordedRequest[] = [];
  let scripted: Array<ScriptedResponse | ScriptedFn> = [];
  let fn: ((body: ChatRequestBody, index: number) => ScriptedResponse) | undefined;
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();
  let callSeq = 0;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]!;
      if (req.method === 'GET' && path === '/v1/models') {
        send(res, 200, { object: 'list', data: [{ id: 'test-model', object: 'model', owned_by: 'switchboard-tests' }] });
        return;
      }
      if (req.method !== 'POST' || path !== '/v1/chat/completions') {
        send(res, 404, { error: { message: 'not found', type: 'invalid_request_error', code: 'not_found' } });
        return;
      }
      let body: ChatRequestBody;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChatRequestBody;
      } catch {
        send(res, 400, { error: { message: 'body is not JSON', type: 'invalid_request_error' } });
        return;
      }
      const index = requests.length;
      requests.push({ path, headers: req.headers, body });
      const head = scripted.shift();
      const next = typeof head === 'function' ? head(body, index) : (head ?? fn?.(body, index));
      if (!next) {
        send(res, 500, { error: { message: 'no scripted response left', type: 'server_error' } });
        return;
      }
      if ('hang' in next) {
        held.add(res);
        res.on('close', () => held.delete(res));
        return;
      }
      if ('status' in next) {
        send(res, next.status, next.body ?? { error: { message: `scripted ${next.status}`, type: 'scripted_error' } }, next.headers);
        return;
      }
      if ('raw' in next) {
        send(res, 200, next.raw);
        return;
      }
      if ('toolCalls' in next) {
        const toolCalls = next.toolCalls.map((c) => ({
          id: c.id ?? `call_${++callSeq}`,
          type: 'function',
          function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}) },
        }));
        send(res, 200, completion(body.model, { role: 'assistant', content: next.content ?? null, tool_calls: toolCalls }, 'tool_calls'));
        return;
      }
      send(res, 200, completion(body.model, { role: 'assistant', content: next.content }, 'stop'));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    queue: (...responses) => void scripted.push(...responses),
    respondWith: (f) => void (fn = f),
    reset() {
      requests.length = 0;
      scripted = [];
      fn = undefined;
    },
    hanging: () => held.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
