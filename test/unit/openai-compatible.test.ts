import { ApplicationFailure } from '@temporalio/common';
import { classifyEngineError } from '../../activities/reply';
import { LlmHttpError, LlmResponseError, LlmUnavailableError, OpenAiCompatibleEngine, type OpenAiCompatibleOptions } from '../../src/ai/openai-compatible';
import { INVALID_ARGUMENTS_KEY } from '../../src/ai/tool-specs';
import type { ToolExchange, TurnMessage, TurnRequest } from '../../src/shared/types';
import { startChatCompletionsServer, type ChatCompletionsServer } from '../support/chat-completions-server';

const API_KEY = 'sk-test-key-never-logged';

function msg(text: string, extra: Partial<TurnMessage> = {}): TurnMessage {
  return { messageId: `m-${Math.random().toString(16).slice(2)}`, kind: 'text', text, attachments: [], timestamp: 1_700_000_000_000, ...extra };
}

function request(messages: TurnMessage[], exchanges: ToolExchange[] = [], final = false): TurnRequest {
  return { tenantId: 't-1', conversationId: 'c-1', messages, exchanges, final };
}

describe('OpenAiCompatibleEngine (against a local Chat Completions server)', () => {
  let server: ChatCompletionsServer;
  beforeAll(async () => {
    server = await startChatCompletionsServer();
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => server.reset());

  const engine = (overrides: Partial<OpenAiCompatibleOptions> = {}) =>
    new OpenAiCompatibleEngine({
      baseUrl: server.url,
      model: 'test-model',
      apiKey: API_KEY,
      profile: { businessName: 'Alpine Outfitters', persona: 'You are Heidi, the cheerful assistant of Alpine Outfitters.', facts: ['Free repairs for one year.'] },
      language: 'de',
      loadHistory: async () => [
        { role: 'user', text: 'earlier question' },
        { role: 'assistant', text: 'earlier answer' },
      ],
      ...overrides,
    });

  it('sends model, system prompt, history, the turn and the three tools, with the key as a bearer token', async () => {
    server.queue({ content: 'Hallo! Wie kann ich helfen?' });
    const step = await engine().step(
      request([
        msg('hi'),
        msg('', { kind: 'attachment', text: undefined, attachments: [{ type: 'image', url: 'https://cdn.example/x.jpg' }] }),
        msg('Jacket', { kind: 'quick_reply', payload: 'PRODUCT_SEARCH:jacket' }),
      ]),
      new AbortController().signal,
    );
    expect(step).toEqual({ kind: 'reply', text: 'Hallo! Wie kann ich helfen?' });
    expect(server.requests).toHaveLength(1);
    const { headers, body, path } = server.requests[0]!;
    expect(path).toBe('/v1/chat/completions');
    expect(headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(body.model).toBe('test-model');
    expect(body.tool_choice).toBe('auto');
    expect(body.tools!.map((t) => t.function.name)).toEqual(['search_products', 'get_business_info', 'handoff_to_human']);
    const [system, ...rest] = body.messages;
    expect(system!.role).toBe('system');
    expect(system!.content).toContain('You are Heidi');
    expect(system!.content).toContain('Answer in German unless the customer writes in another language');
    expect(system!.content).toContain('Free repairs for one year.');
    expect(system!.content).toMatch(/Never invent prices/);
    expect(rest.map((m) => [m.role, m.content])).toEqual([
      ['user', 'earlier question'],
      ['assistant', 'earlier answer'],
      ['user', 'hi'],
      ['user', '[the customer sent an image]'],
      ['user', 'Jacket [button: PRODUCT_SEARCH:jacket]'],
    ]);
  });

  it('sends no authorization header when the tenant stored no key', async () => {
    server.queue({ content: 'ok' });
    await engine({ apiKey: null }).step(request([msg('hi')]), new AbortController().signal);
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
  });

  it('parses tool calls, keeps malformed arguments for the tool runner, and sends results back by call id', async () => {
    server.queue({
      content: 'Let me check.',
      toolCalls: [
        { id: 'call_a', name: 'search_products', arguments: { query: 'jacket', max_price: 100 } },
        { id: 'call_b', name: 'get_business_info', arguments: '{"topic": "hours"' },
      ],
    });
    const first = await engine().step(request([msg('jacket under 100 and your hours?')]), new AbortController().signal);
    expect(first).toEqual({
      kind: 'tool_calls',
      assistantText: 'Let me check.',
      calls: [
        { id: 'call_a', name: 'search_products', arguments: { query: 'jacket', max_price: 100 } },
        { id: 'call_b', name: 'get_business_info', arguments: { [INVALID_ARGUMENTS_KEY]: '{"topic": "hours"' } },
      ],
    });
    if (first.kind !== 'tool_calls') throw new Error('expected tool calls');

    const exchange: ToolExchange = {
      calls: first.calls,
      assistantText: 'Let me check.',
      results: [
        { callId: 'call_a', name: 'search_products', ok: true, content: { products: [{ name: 'Trail Jacket', price: '89.90' }] } },
        { callId: 'call_b', name: 'get_business_info', ok: false, content: { error: 'arguments are not a valid JSON object' } },
      ],
    };
    server.queue({ content: 'The Trail Jacket costs 89.90 EUR.' });
    const second = await engine().step(request([msg('jacket under 100 and your hours?')], [exchange], true), new AbortController().signal);
    expect(second).toEqual({ kind: 'reply', text: 'The Trail Jacket costs 89.90 EUR.' });

    const body = server.requests[1]!.body;
    // The final round offers no tools: the model must answer in text.
    expect(body.tools).toBeUndefined();
    expect(body.tool_choice).toBeUndefined();
    const tail = body.messages.slice(-3);
    expect(tail[0]).toEqual({
      role: 'assistant',
      content: 'Let me check.',
      tool_calls: [
        { id: 'call_a', type: 'function', function: { name: 'search_products', arguments: '{"query":"jacket","max_price":100}' } },
        { id: 'call_b', type: 'function', function: { name: 'get_business_info', arguments: '{"topic": "hours"' } },
      ],
    });
    expect(tail[1]).toEqual({ role: 'tool', tool_call_id: 'call_a', content: JSON.stringify({ products: [{ name: 'Trail Jacket', price: '89.90' }] }) });
    expect(tail[2]).toEqual({ role: 'tool', tool_call_id: 'call_b', content: JSON.stringify({ error: 'arguments are not a valid JSON object' }) });
  });

  it('accepts arguments sent as an object and invents ids for calls without one', async () => {
    server.queue({
      raw: {
        choices: [{ message: { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'handoff_to_human', arguments: { reason: 'asked' } } }] } }],
      },
    });
    const step = await engine().step(request([msg('a person please')]), new AbortController().signal);
    expect(step).toEqual({ kind: 'tool_calls', calls: [{ id: 'call_0_0', name: 'handoff_to_human', arguments: { reason: 'asked' } }] });
  });

  it('classifies 401 and 404 as rejected (not retried), without the key in the message', async () => {
    server.queue({ status: 401, body: { error: { message: `Incorrect API key provided: ${API_KEY}`, type: 'invalid_request_error', code: 'invalid_api_key' } } });
    const err = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmHttpError);
    expect((err as LlmHttpError).status).toBe(401);
    expect((err as LlmHttpError).rejected).toBe(true);
    expect((err as LlmHttpError).code).toBe('invalid_api_key');
    expect((err as Error).message).not.toContain(API_KEY);
    const failure = classifyEngineError(err) as ApplicationFailure;
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure.type).toBe('ReplyEngineRejected');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).not.toContain(API_KEY);

    server.queue({ status: 404 });
    const notFound = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect((classifyEngineError(notFound) as ApplicationFailure).nonRetryable).toBe(true);
  });

  it('classifies 429 as retryable after the provider’s retry-after', async () => {
    server.queue({ status: 429, headers: { 'retry-after': '7' }, body: { error: { message: 'slow down', type: 'rate_limit_error' } } });
    const err = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmHttpError);
    expect((err as LlmHttpError).retryAfterMs).toBe(7000);
    expect((err as LlmHttpError).rejected).toBe(false);
    const failure = classifyEngineError(err) as ApplicationFailure;
    expect(failure.type).toBe('ReplyEngineRateLimited');
    expect(failure.nonRetryable).toBe(false);
    expect(failure.nextRetryDelay).toBe(7000);

    server.queue({ status: 429, headers: { 'retry-after-ms': '1500' } });
    const ms = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect((ms as LlmHttpError).retryAfterMs).toBe(1500);
  });

  it('classifies 500, unreachable servers and empty answers as retryable', async () => {
    server.queue({ status: 500 });
    const err = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect((err as LlmHttpError).status).toBe(500);
    const failure = classifyEngineError(err) as ApplicationFailure;
    expect(failure.type).toBe('ReplyEngineUnavailable');
    expect(failure.nonRetryable).toBe(false);

    const closed = await startChatCompletionsServer();
    const deadUrl = closed.url;
    await closed.close();
    const unreachable = await engine({ baseUrl: deadUrl }).step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(LlmUnavailableError);
    expect((classifyEngineError(unreachable) as ApplicationFailure).nonRetryable).toBe(false);

    server.queue({ content: '   ' });
    const empty = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(LlmResponseError);
    server.queue({ raw: { unexpected: true } });
    const malformed = await engine().step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(malformed).toBeInstanceOf(LlmResponseError);
    expect((classifyEngineError(malformed) as ApplicationFailure).type).toBe('ReplyEngineBadResponse');
  });

  it('an empty answer after a successful handoff is allowed (the workflow has its own words)', async () => {
    server.queue({ content: '' });
    const exchange: ToolExchange = {
      calls: [{ id: 'h1', name: 'handoff_to_human', arguments: { reason: 'asked' } }],
      results: [{ callId: 'h1', name: 'handoff_to_human', ok: true, content: { handed_off: true } }],
    };
    expect(await engine().step(request([msg('person')], [exchange]), new AbortController().signal)).toEqual({ kind: 'reply', text: '' });
  });

  it('aborts a hanging request when the caller’s signal fires and closes the connection', async () => {
    server.queue({ hang: true });
    const controller = new AbortController();
    const pending = engine().step(request([msg('hi')]), controller.signal);
    while (server.hanging() === 0) await new Promise((r) => setTimeout(r, 10));
    const reason = new Error('superseded by a newer message');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    while (server.hanging() > 0) await new Promise((r) => setTimeout(r, 10));
    expect(server.hanging()).toBe(0);
  });

  it('gives up on a hanging request after its own timeout, as a retryable outage', async () => {
    server.queue({ hang: true });
    const err = await engine({ timeoutMs: 200 }).step(request([msg('hi')]), new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmUnavailableError);
    expect((err as Error).message).toMatch(/no answer within 200 ms/);
  });

  it('does not call the server at all when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await expect(engine().step(request([msg('hi')]), controller.signal)).rejects.toThrow('cancelled');
    expect(server.requests).toHaveLength(0);
  });

  it('lists a model on GET /v1/models (for connection checks)', async () => {
    const res = await fetch(`${server.url}/models`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: Array<{ id: string }> }).data[0]!.id).toBe('test-model');
  });
});
