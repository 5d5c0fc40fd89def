import { randomBytes, randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createReplyActivities } from '../../activities/reply';
import { createToolActivities } from '../../activities/tools';
import { connectChannel } from '../../src/db/channels';
import { addProduct } from '../../src/db/products';
import { updateTenantSettings } from '../../src/db/tenant-settings';
import { createTenant } from '../../src/db/tenants';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { createLogger } from '../../src/logger';
import type { ConversationRef, ToolCall, ToolName, TurnRequest } from '../../src/shared/types';
import { startChatCompletionsServer, type ChatCompletionsServer } from '../support/chat-completions-server';
import { createTestDatabase, LogCapture, type TestDatabase } from '../support/stack';

/**
 * The reply and tool activities on a real database with the Temporal activity context: engine
 * selection per tenant, heartbeats, cancellation reaching the HTTP call, and error classification.
 */

const KEY = 'sk-activity-test-key';
const SECRET_WORDS = 'my card number is 4111 1111';

let db: TestDatabase;
let vault: SecretVault;
let llm: ChatCompletionsServer;
const logs = new LogCapture();
let catalogRef: ConversationRef;
let llmRef: ConversationRef;

async function tenantWithChannel(name: string): Promise<ConversationRef> {
  const { id } = await createTenant(db.pool, name);
  const channel = await connectChannel(db.pool, vault, {
    tenantId: id,
    platform: 'messenger',
    accountId: String(100_000 + Math.floor(Math.random() * 1e9)),
    accessToken: `EAAB-${randomBytes(6).toString('hex')}`,
  });
  return { tenantId: id, channelId: channel.id, customerId: String(Math.floor(Math.random() * 1e15)) };
}

function turn(ref: ConversationRef, text: string): TurnRequest & { ref: ConversationRef } {
  return {
    ref,
    tenantId: ref.tenantId,
    conversationId: randomUUID(),
    messages: [{ messageId: randomUUID(), kind: 'text', text, attachments: [], timestamp: Date.now() }],
    exchanges: [],
    final: false,
  };
}

/** Activity failures are expected here: the SDK's own warning about each is noise. */
const mockEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
const call = (id: string, name: ToolName, args: Record<string, unknown>): ToolCall => ({ id, name, arguments: args });

const activities = () => createReplyActivities({ pool: db.pool, vault, logger: createLogger('test', 'debug', { destination: logs.stream }) });

beforeAll(async () => {
  db = await createTestDatabase();
  vault = new SecretVault(db.pool, new StaticKeyProvider(new Map([[1, randomBytes(32)]])));
  llm = await startChatCompletionsServer();
  catalogRef = await tenantWithChannel('catalog shop');
  await addProduct(db.pool, catalogRef.tenantId, { sku: 'J1', name: 'Trail Jacket', price: 89.9, currency: 'EUR', stock: 3 });
  llmRef = await tenantWithChannel('llm shop');
  await updateTenantSettings(
    db.pool,
    vault,
    llmRef.tenantId,
    { replyEngine: 'openai-compatible', llmBaseUrl: llm.url, llmModel: 'test-model', llmApiKey: KEY },
    { actor: { type: 'system', id: 'tests' } },
  );
});

afterAll(async () => {
  await llm?.close();
  await db?.drop();
});

beforeEach(() => llm.reset());

describe('planReplyStep', () => {
  it('uses the catalog engine for a tenant without settings and heartbeats', async () => {
    const env = mockEnv();
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const step = await env.run(activities().planReplyStep, turn(catalogRef, 'do you have a jacket?'));
    expect(step).toEqual({ kind: 'tool_calls', calls: [{ id: 'catalog_1', name: 'search_products', arguments: { query: 'jacket', limit: 3 } }] });
    expect(beats).toBeGreaterThanOrEqual(1);
  });

  it('uses the tenant’s LLM with its decrypted key', async () => {
    llm.queue({ content: 'Hello from the model' });
    const step = await mockEnv().run(activities().planReplyStep, turn(llmRef, 'hi'));
    expect(step).toEqual({ kind: 'reply', text: 'Hello from the model' });
    expect(llm.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  it('keeps heartbeating while the model is slow, and a cancellation aborts the HTTP call', async () => {
    llm.queue({ hang: true });
    const env = mockEnv();
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const pending = env.run(activities().planReplyStep, turn(llmRef, 'hi'));
    while (llm.hanging() === 0 || beats < 2) await new Promise((r) => setTimeout(r, 20));
    env.cancel('CANCELLED');
    await expect(pending).rejects.toBeInstanceOf(CancelledFailure);
    while (llm.hanging() > 0) await new Promise((r) => setTimeout(r, 10));
    expect(llm.hanging()).toBe(0);
  });

  it('a rejected key is not retried; a rate limit is retried after retry-after; an outage is retried', async () => {
    llm.queue({ status: 401, body: { error: { message: `bad key ${KEY}`, code: 'invalid_api_key' } } });
    const rejected = await mockEnv().run(activities().planReplyStep, turn(llmRef, SECRET_WORDS)).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(ApplicationFailure);
    expect(rejected).toMatchObject({ type: 'ReplyEngineRejected', nonRetryable: true });

    llm.queue({ status: 429, headers: { 'retry-after': '3' } });
    const limited = await mockEnv().run(activities().planReplyStep, turn(llmRef, SECRET_WORDS)).catch((e: unknown) => e);
    expect(limited).toMatchObject({ type: 'ReplyEngineRateLimited', nonRetryable: false, nextRetryDelay: 3000 });

    llm.queue({ status: 503 });
    const outage = await mockEnv().run(activities().planReplyStep, turn(llmRef, SECRET_WORDS)).catch((e: unknown) => e);
    expect(outage).toMatchObject({ type: 'ReplyEngineUnavailable', nonRetryable: false });

    const text = logs.lines.join('\n');
    expect(text).toContain('reply step failed');
    expect(text).not.toContain(KEY);
    expect(text).not.toContain('4111');
  });

  it('a tenant switched to the LLM without a base URL is a non-retryable misconfiguration', async () => {
    const ref = await tenantWithChannel('half-configured shop');
    await db.ownerPool.query(`INSERT INTO tenant_settings (tenant_id, reply_engine) VALUES ($1, 'openai-compatible')`, [ref.tenantId]);
    const err = await mockEnv().run(activities().planReplyStep, turn(ref, 'hi')).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'ReplyEngineMisconfigured', nonRetryable: true });
  });
});

describe('tool activities', () => {
  const tools = () => createToolActivities({ pool: db.pool, logger: createLogger('test', 'silent') });

  it('each tool is its own activity', async () => {
    const env = mockEnv();
    const conversationId = randomUUID();
    const search = await env.run(tools().searchProductsTool, { ref: catalogRef, conversationId, call: call('a', 'search_products', { query: 'jacket' }) });
    expect(search).toMatchObject({ callId: 'a', ok: true, content: { products: [{ sku: 'J1', name: 'Trail Jacket', price: '89.90', currency: 'EUR', in_stock: true }] } });
    const info = await env.run(tools().getBusinessInfoTool, { ref: catalogRef, conversationId, call: call('b', 'get_business_info', { topic: 'hours' }) });
    expect(info).toMatchObject({ callId: 'b', ok: true, content: { topic: 'hours', hours: null } });
    const bad = await env.run(tools().searchProductsTool, { ref: catalogRef, conversationId, call: call('c', 'search_products', { query: 7 }) });
    expect(bad).toMatchObject({ callId: 'c', ok: false, content: { error: expect.stringMatching(/^invalid arguments: query:/) } });
    const handoff = await env.run(tools().handoffToHumanTool, { ref: catalogRef, conversationId, call: call('d', 'handoff_to_human', { reason: 'asked' }) });
    expect(handoff).toEqual({ callId: 'd', name: 'handoff_to_human', ok: true, content: { handed_off: true } });
    const { rows } = await db.ownerPool.query('SELECT state, state_reason FROM conversations WHERE channel_id = $1 AND customer_id = $2', [catalogRef.channelId, catalogRef.customerId]);
    expect(rows[0]).toEqual({ state: 'human_active', state_reason: 'tool:handoff_to_human' });
  });

  it('a handoff for a deleted channel fails once instead of retrying forever', async () => {
    const ref = { ...catalogRef, channelId: randomUUID(), customerId: 'gone' };
    const err = await mockEnv()
      .run(tools().handoffToHumanTool, { ref, conversationId: randomUUID(), call: call('e', 'handoff_to_human', { reason: 'asked' }) })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'ConversationOrphaned', nonRetryable: true });
  });
});
