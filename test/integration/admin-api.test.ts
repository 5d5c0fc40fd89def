import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { loadLlmApiKey } from '../../src/db/tenant-settings';
import { createTenant } from '../../src/db/tenants';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { TENANT_ID } from '../../src/temporal/search-attributes';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { createTestApiKey, createTestDatabase, LogCapture, testConfig, TEST_ADMIN_TOKEN, type TestDatabase } from '../support/stack';

/**
 * The admin API on the real gateway app, a real database and the real Temporal dev server. No
 * worker polls the task queue: an operator command is proven delivered by the workflow's history
 * (the `operatorCommand` signal), not by what a worker made of it.
 */

interface Gateway {
  url: string;
  close(): Promise<void>;
}

let db: TestDatabase;
let config: Config;
let vault: SecretVault;
let connection: Connection;
let client: Client;
let gw: Gateway;
const logs = new LogCapture();

async function startGateway(cfg: Config, temporal: { client: Client; connection: Connection }): Promise<Gateway> {
  const keys = StaticKeyProvider.fromSpec(cfg.MASTER_KEYS);
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
  const app = createGatewayApp({ config: cfg, pool: db.pool, temporal, codec, vault: new SecretVault(db.pool, keys), logger: createLogger('test', 'debug', { destination: logs.stream }) });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
const json = { 'content-type': 'application/json' };

function call(method: string, path: string, opts: { body?: string | Buffer; headers?: Record<string, string>; base?: string } = {}): Promise<Response> {
  return fetch(`${opts.base ?? gw.url}${path}`, { method, headers: { ...auth, ...opts.headers }, body: opts.body });
}
const sendJson = (method: string, path: string, body: unknown, headers: Record<string, string> = {}) => call(method, path, { body: JSON.stringify(body), headers: { ...json, ...headers } });

async function auditRows(action: string): Promise<Array<{ tenant_id: string | null; actor_type: string; actor_id: string | null; resource: string; outcome: string; reason: string | null; request_id: string | null; details: Record<string, unknown> }>> {
  const { rows } = await db.ownerPool.query('SELECT tenant_id, actor_type, actor_id, resource, outcome, reason, request_id, details FROM audit_events WHERE action = $1 ORDER BY id', [action]);
  return rows;
}

async function signalNames(workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => (e.workflowExecutionSignaledEventAttributes?.signalName ? [e.workflowExecutionSignaledEventAttributes.signalName] : []));
}

let tenantId: string;
let channelId: string;
let conversationId: string;
const customerId = '7291845503617724';

beforeAll(async () => {
  db = await createTestDatabase();
  config = testConfig({ DATABASE_URL: db.url, TEMPORAL_RPC_TIMEOUT_MS: '1500' });
  vault = new SecretVault(db.pool, StaticKeyProvider.fromSpec(config.MASTER_KEYS));
  connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const codec = await AesGcmPayloadCodec.fromKeyProvider(StaticKeyProvider.fromSpec(config.MASTER_KEYS));
  client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  gw = await startGateway(config, { client, connection });

  tenantId = (await createTenant(db.pool, 'Admin API Shop')).id;
  channelId = (await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId: '104829376511820', accessToken: `EAAB${randomBytes(20).toString('hex')}` })).id;
  const { rows } = await db.ownerPool.query<{ id: string }>('INSERT INTO conversations (tenant_id, channel_id, customer_id, last_inbound_at) VALUES ($1, $2, $3, now()) RETURNING id', [tenantId, channelId, customerId]);
  conversationId = rows[0]!.id;
});

afterAll(async () => {
  const handle = client.workflow.getHandle(conversationWorkflowId(tenantId, channelId, customerId));
  await handle.terminate('test done').catch(() => undefined);
  await gw.close();
  await connection.close();
  await db.drop();
});

describe('admin API authentication', () => {
  const settingsPath = () => `/admin/tenants/${tenantId}/settings`;

  it('answers 401 without a token or with a wrong one, and audits each denial without the token', async () => {
    const before = (await auditRows('auth.denied')).length;
    const missing = await fetch(`${gw.url}${settingsPath()}`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toContain('Bearer');
    expect(await missing.json()).toEqual({ error: { code: 'unauthorized', message: 'sign in (POST /auth/login) or send Authorization: Bearer <API key>' } });

    const wrongToken = `${TEST_ADMIN_TOKEN}-but-not-quite`;
    const wrong = await fetch(`${gw.url}${settingsPath()}`, { headers: { authorization: `Bearer ${wrongToken}`, 'x-request-id': 'req-denied-1' } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('unauthorized');

    // Unknown admin paths are behind the same check (no probing for routes), whatever their case.
    expect((await fetch(`${gw.url}/admin/nothing-here`)).status).toBe(401);
    expect((await fetch(`${gw.url}${settingsPath().toUpperCase()}`)).status).toBe(401);

    const denied = (await auditRows('auth.denied')).slice(before);
    expect(denied).toEqual([
      expect.objectContaining({ tenant_id: null, actor_type: 'operator', resource: `admin:GET ${settingsPath()}`, outcome: 'failure', reason: 'missing_credentials' }),
      expect.objectContaining({ tenant_id: null, resource: `admin:GET ${settingsPath()}`, reason: 'invalid_credentials', request_id: 'req-denied-1' }),
      expect.objectContaining({ resource: 'admin:GET /admin/nothing-here', reason: 'missing_credentials' }),
      expect.objectContaining({ resource: `admin:GET ${settingsPath().toUpperCase()}`, reason: 'missing_credentials' }),
    ]);
    expect(JSON.stringify(denied)).not.toContain(wrongToken);
    expect(logs.lines.join('\n')).not.toContain(TEST_ADMIN_TOKEN);
  });

  it('answers 404 for an unknown admin path once authenticated, 405 for a wrong method', async () => {
    expect((await call('GET', '/admin/nothing-here')).status).toBe(404);
    expect((await call('GET', settingsPath().toUpperCase())).status).toBe(404);
    const wrongMethod = await call('DELETE', settingsPath());
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toContain('PUT');
  });

  it('refuses the deprecated static token while ADMIN_API_TOKEN is unset; a platform API key still works', async () => {
    const withoutToken = await startGateway(testConfig({ DATABASE_URL: db.url, ADMIN_API_TOKEN: '' }), { client, connection });
    try {
      const refused = await call('GET', settingsPath(), { base: withoutToken.url });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      const key = await createTestApiKey(db.pool, null, 'operator');
      const res = await fetch(`${withoutToken.url}${settingsPath()}`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      // The rest of the gateway is unaffected.
      expect((await fetch(`${withoutToken.url}/healthz`)).status).toBe(200);
    } finally {
      await withoutToken.close();
    }
  });
});

describe('tenant settings', () => {
  it('returns the defaults, then applies a patch; the API key is stored sealed and never returned', async () => {
    const initial = await call('GET', `/admin/tenants/${tenantId}/settings`);
    expect(initial.status).toBe(200);
    expect(await initial.json()).toMatchObject({ engine: 'catalog', llm: { baseUrl: null, model: null, hasApiKey: false }, agent: { debounceMs: 800 } });

    const apiKey = `sk-test-${randomBytes(16).toString('hex')}`;
    const res = await sendJson('PUT', `/admin/tenants/${tenantId}/settings`, {
      replyEngine: 'openai-compatible',
      llmBaseUrl: 'http://127.0.0.1:11434/v1',
      llmModel: 'llama3.1',
      llmApiKey: apiKey,
      debounceMs: 1200,
      assistant: { businessName: 'Admin API Shop', language: 'de', hours: 'Mo–Fr 9–18' },
    }, { 'x-request-id': 'req-settings-1' });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(apiKey);
    expect(JSON.parse(text)).toMatchObject({
      engine: 'openai-compatible',
      llm: { baseUrl: 'http://127.0.0.1:11434/v1', model: 'llama3.1', hasApiKey: true },
      assistant: { businessName: 'Admin API Shop', language: 'de' },
      agent: { debounceMs: 1200, language: 'de' },
    });

    const { rows } = await db.ownerPool.query<{ llm_api_key_ciphertext: Buffer }>('SELECT llm_api_key_ciphertext FROM tenant_settings WHERE tenant_id = $1', [tenantId]);
    expect(rows[0]!.llm_api_key_ciphertext.includes(Buffer.from(apiKey))).toBe(false);
    expect(await loadLlmApiKey(db.pool, vault, tenantId)).toBe(apiKey);

    const again = await call('GET', `/admin/tenants/${tenantId}/settings`);
    expect(await again.text()).not.toContain(apiKey);

    const updated = await auditRows('settings.updated');
    expect(updated.at(-1)).toMatchObject({ tenant_id: tenantId, actor_type: 'operator', actor_id: 'admin-token', request_id: 'req-settings-1' });
    expect(JSON.stringify(updated)).not.toContain(apiKey);
    expect(logs.lines.join('\n')).not.toContain(apiKey);
  });

  it('answers 400 listing each invalid path, 400 for conflicting settings, 404 for an unknown tenant, 415 for non-JSON', async () => {
    const bad = await sendJson('PUT', `/admin/tenants/${tenantId}/settings`, { debounceMs: 5000, assistant: { language: 'German!' }, colour: 'red' });
    expect(bad.status).toBe(400);
    const { error } = (await bad.json()) as { error: { code: string; message: string; problems: Array<{ path: string; message: string }> } };
    expect(error.code).toBe('invalid_request');
    expect(error.problems.map((p) => p.path).sort()).toEqual(['(body)', 'assistant.language', 'debounceMs']);
    expect(error.message).toContain('debounceMs: ');
    expect(error.message).toContain('assistant.language: must be a BCP 47 tag');

    const conflict = await sendJson('PUT', `/admin/tenants/${tenantId}/settings`, { llmModel: null });
    expect(conflict.status).toBe(400);
    expect(((await conflict.json()) as { error: { code: string; message: string } }).error).toEqual({
      code: 'invalid_settings',
      message: 'replyEngine openai-compatible needs llmBaseUrl and llmModel',
    });
    // Nothing of the refused patch was kept.
    expect(((await (await call('GET', `/admin/tenants/${tenantId}/settings`)).json()) as { llm: { model: string } }).llm.model).toBe('llama3.1');

    const unknown = await sendJson('PUT', `/admin/tenants/${randomUUID()}/settings`, { debounceMs: 500 });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('tenant_not_found');
    expect((await call('GET', '/admin/tenants/not-a-uuid/settings')).status).toBe(400);

    const wrongType = await call('PUT', `/admin/tenants/${tenantId}/settings`, { body: 'debounceMs=500', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(wrongType.status).toBe(415);
    const malformed = await call('PUT', `/admin/tenants/${tenantId}/settings`, { body: '{"debounceMs":', headers: json });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('malformed_json');
  });
});

describe('catalog import and search', () => {
  const importPath = (mode?: string) => `/admin/tenants/${tenantId}/products/import${mode ? `?mode=${mode}` : ''}`;
  const products = async () =>
    (await db.ownerPool.query('SELECT sku, name, description, price::text AS price, currency, stock, url FROM products WHERE tenant_id = $1 ORDER BY sku', [tenantId])).rows;

  it('imports CSV (upsert), then JSON (replace) with inserted/updated/unchanged/deleted counts, audited', async () => {
    const csv = '\uFEFFsku,name,description,price,currency,stock,url\r\n' +
      'JKT-1,Rain jacket,"Waterproof, with hood",89.90,EUR,3,https://shop.example/jkt\r\n' +
      'HAT-2,Wool beanie,Merino,24.50,EUR,0,\r\n' +
      'SHO-3,Trail shoes,"Grip ""plus""\nfor rough ground",129,EUR,,\r\n';
    const first = await call('POST', importPath(), { body: csv, headers: { 'content-type': 'text/csv; charset=utf-8' } });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ inserted: 3, updated: 0, unchanged: 0, deleted: 0 });
    expect(await products()).toEqual([
      { sku: 'HAT-2', name: 'Wool beanie', description: 'Merino', price: '24.50', currency: 'EUR', stock: 0, url: null },
      { sku: 'JKT-1', name: 'Rain jacket', description: 'Waterproof, with hood', price: '89.90', currency: 'EUR', stock: 3, url: 'https://shop.example/jkt' },
      { sku: 'SHO-3', name: 'Trail shoes', description: 'Grip "plus"\nfor rough ground', price: '129.00', currency: 'EUR', stock: null, url: null },
    ]);

    // The same file again changes nothing.
    const same = await call('POST', importPath('upsert'), { body: csv, headers: { 'content-type': 'text/csv' } });
    expect(await same.json()).toEqual({ inserted: 0, updated: 0, unchanged: 3, deleted: 0 });

    const replace = await sendJson('POST', importPath('replace'), {
      products: [
        { sku: 'JKT-1', name: 'Rain jacket', description: 'Waterproof, with hood', price: '79.90', currency: 'EUR', stock: 5, url: 'https://shop.example/jkt' },
        { sku: 'SCF-4', name: 'Scarf', price: 19.9, currency: 'EUR' },
      ],
    });
    expect(replace.status).toBe(200);
    expect(await replace.json()).toEqual({ inserted: 1, updated: 1, unchanged: 0, deleted: 2 });
    expect((await products()).map((p) => [p.sku, p.price, p.stock])).toEqual([['JKT-1', '79.90', 5], ['SCF-4', '19.90', null]]);

    const imported = await auditRows('catalog.imported');
    expect(imported.map((r) => r.details)).toEqual([
      { mode: 'upsert', format: 'csv', rows: 3, inserted: 3, updated: 0, unchanged: 0, deleted: 0 },
      { mode: 'upsert', format: 'csv', rows: 3, inserted: 0, updated: 0, unchanged: 3, deleted: 0 },
      { mode: 'replace', format: 'json', rows: 2, inserted: 1, updated: 1, unchanged: 0, deleted: 2 },
    ]);
    expect(imported.every((r) => r.tenant_id === tenantId && r.actor_id === 'admin-token')).toBe(true);
    expect(JSON.stringify(imported)).not.toContain('Rain jacket');
  });

  it('answers 422 with every problem and writes nothing', async () => {
    const before = await products();
    const csv = 'sku,name,price,currency\nNEW-1,Fine,1.00,EUR\nNEW-2,,-3,EUR\nNEW-1,Dup,"19,90",EUR\n';
    const res = await call('POST', importPath('replace'), { body: csv, headers: { 'content-type': 'text/csv' } });
    expect(res.status).toBe(422);
    const { error } = (await res.json()) as { error: { code: string; message: string; problemCount: number; problems: Array<{ row: number; column: string; text: string }> } };
    expect(error.code).toBe('invalid_catalog');
    expect(error.message).toMatch(/^the catalog has 4 problems; nothing was imported: row 3, name: is required/);
    expect(error.problemCount).toBe(4);
    expect(error.problems.map((p) => p.text)).toEqual([
      'row 3, name: is required',
      'row 3, price: must be a number ≥ 0',
      'row 4, price: must use . as the decimal separator: 19.90, not 19,90',
      'row 4, sku: "NEW-1" already appears in row 2',
    ]);
    expect(error.problems[0]).toMatchObject({ row: 3, column: 'name' });
    expect(await products()).toEqual(before);

    const jsonRes = await sendJson('POST', importPath(), [{ sku: 'X', name: 'Y', colour: 'red' }]);
    expect(jsonRes.status).toBe(422);
    expect(((await jsonRes.json()) as { error: { problems: Array<{ text: string }> } }).error.problems.map((p) => p.text)).toEqual([
      'index 0: unknown field "colour"; the fields are sku, name, description, price, currency, stock, url',
    ]);
  });

  it('answers 415 for other content types, 413 over 5 MiB, 400 for a bad mode, 404 for an unknown tenant', async () => {
    const plain = await call('POST', importPath(), { body: 'sku,name\nA,B\n', headers: { 'content-type': 'text/plain' } });
    expect(plain.status).toBe(415);
    expect(((await plain.json()) as { error: { message: string } }).error.message).toBe('Content-Type must be text/csv or application/json');

    const huge = Buffer.concat([Buffer.from('sku,name\n'), Buffer.alloc(5 * 1024 * 1024, 0x61)]);
    const tooLarge = await call('POST', importPath(), { body: huge, headers: { 'content-type': 'text/csv' } });
    expect(tooLarge.status).toBe(413);
    expect(((await tooLarge.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');

    const badMode = await call('POST', importPath('merge'), { body: 'sku,name\nA,B\n', headers: { 'content-type': 'text/csv' } });
    expect(badMode.status).toBe(400);
    expect(((await badMode.json()) as { error: { message: string } }).error.message).toBe('?mode: must be upsert or replace');

    const unknown = await call('POST', `/admin/tenants/${randomUUID()}/products/import`, { body: 'sku,name\nA,B\n', headers: { 'content-type': 'text/csv' } });
    expect(unknown.status).toBe(404);
  });

  it('lists and searches the catalog', async () => {
    const list = await call('GET', `/admin/tenants/${tenantId}/products`);
    expect(list.status).toBe(200);
    const listed = ((await list.json()) as { products: Array<{ sku: string; name: string; updatedAt: string }> }).products;
    expect(listed.map((p) => p.name)).toEqual(['Rain jacket', 'Scarf']);
    expect(new Date(listed[0]!.updatedAt).getTime()).not.toBeNaN();

    const found = await call('GET', `/admin/tenants/${tenantId}/products?q=${encodeURIComponent('waterproof jacket')}&limit=5`);
    expect(((await found.json()) as { products: Array<{ sku: string; price: string }> }).products).toEqual([
      expect.objectContaining({ sku: 'JKT-1', name: 'Rain jacket', price: '79.90', currency: 'EUR', stock: 5 }),
    ]);
    const none = await call('GET', `/admin/tenants/${tenantId}/products?q=submarine`);
    expect(((await none.json()) as { products: unknown[] }).products).toEqual([]);

    const badLimit = await call('GET', `/admin/tenants/${tenantId}/products?limit=0`);
    expect(badLimit.status).toBe(400);
    expect(((await badLimit.json()) as { error: { message: string } }).error.message).toBe('?limit: must be at least 1');
  });
});

describe('conversations: operator commands and state', () => {
  const workflowId = () => conversationWorkflowId(tenantId, channelId, customerId);

  it('answers the state from the database while no run is open', async () => {
    const res = await call('GET', `/admin/conversations/${conversationId}/state`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      running: false,
      conversationId,
      workflowId: workflowId(),
      mode: 'bot_active',
      modeReason: null,
      modeSince: expect.any(Number),
      lastCustomerAt: expect.any(Number),
      lastHumanAt: null,
    });
  });

  it('sends as a human agent: 202, an operatorCommand signal on the conversation workflow, audited without the text', async () => {
    const text = 'Hallo Jürgen, your order ships today.';
    const res = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text }, { 'x-request-id': 'req-send-1' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ requestId: 'req-send-1', conversationId });
    expect(await signalNames(workflowId())).toEqual(['operatorCommand']);
    // The workflow's search attributes say whose it is (opaque ids only).
    const description = await client.workflow.getHandle(workflowId()).describe();
    expect(description.typedSearchAttributes.get(TENANT_ID)).toBe(tenantId);

    const explicit = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text: 'Second one', requestId: 'op-42' });
    expect(await explicit.json()).toEqual({ requestId: 'op-42', conversationId });

    const audited = await auditRows('conversation.agent_message');
    expect(audited).toEqual([
      expect.objectContaining({ tenant_id: tenantId, actor_id: 'admin-token', resource: `conversation:${conversationId}`, outcome: 'success', details: { conversationId, commandRequestId: 'req-send-1', textLength: text.length } }),
      expect.objectContaining({ details: { conversationId, commandRequestId: 'op-42', textLength: 'Second one'.length } }),
    ]);
    expect(JSON.stringify(audited)).not.toContain('Jürgen');
    expect(logs.lines.join('\n')).not.toContain('Jürgen');
  });

  it('hands off to a human and back: 202 and a signal each, audited', async () => {
    const before = (await signalNames(workflowId())).length;
    const toHuman = await sendJson('POST', `/admin/conversations/${conversationId}/handoff`, { to: 'human_active', reason: 'refund dispute' });
    expect(toHuman.status).toBe(202);
    expect(await toHuman.json()).toEqual({ requestId: expect.any(String), conversationId });
    const back = await sendJson('POST', `/admin/conversations/${conversationId}/handoff`, { to: 'bot_active' });
    expect(back.status).toBe(202);
    expect((await signalNames(workflowId())).slice(before)).toEqual(['operatorCommand', 'operatorCommand']);
    expect((await auditRows('conversation.handoff')).map((r) => [r.details.to, r.details.withReason])).toEqual([['human_active', true], ['bot_active', false]]);

    const bad = await sendJson('POST', `/admin/conversations/${conversationId}/handoff`, { to: 'robot' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toBe('to: must be human_active or bot_active');
  });

  it('answers 503 for the state while the open run has no worker to answer its query', async () => {
    const res = await call('GET', `/admin/conversations/${conversationId}/state`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toEqual({
      code: 'temporarily_unavailable',
      message: expect.stringContaining('did not answer within 1500 ms'),
    });
    // Once the run is closed, the database answers again.
    await client.workflow.getHandle(workflowId()).terminate('closed by the test');
    const closed = await call('GET', `/admin/conversations/${conversationId}/state`);
    expect(closed.status).toBe(200);
    expect(((await closed.json()) as { running: boolean }).running).toBe(false);
  });

  it('answers 400 for bad bodies, 404 for an unknown conversation, 409 for a disabled channel, and parks a message while the channel needs reauthorization', async () => {
    const empty = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text: '   ' });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { message: string } }).error.message).toBe('text: must not be blank');
    const tooLong = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text: 'x'.repeat(2001) });
    expect(((await tooLong.json()) as { error: { message: string } }).error.message).toBe('text: must be at most 2000 characters');

    const unknown = await sendJson('POST', `/admin/conversations/${randomUUID()}/messages`, { text: 'hi' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('conversation_not_found');
    expect((await call('GET', `/admin/conversations/${randomUUID()}/state`)).status).toBe(404);
    expect((await sendJson('POST', '/admin/conversations/123/handoff', { to: 'bot_active' })).status).toBe(400);

    await db.ownerPool.query(`UPDATE channels SET status = 'disabled' WHERE id = $1`, [channelId]);
    try {
      const signalsBefore = await signalNames(workflowId());
      const refused = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text: 'hello?' });
      expect(refused.status).toBe(409);
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toEqual({
        code: 'channel_inactive',
        message: "the conversation's channel is disabled: connect it again (channels:connect) before sending",
      });
      expect(await signalNames(workflowId())).toEqual(signalsBefore);
    } finally {
      await db.ownerPool.query(`UPDATE channels SET status = 'active' WHERE id = $1`, [channelId]);
    }

    // Reauthorization pending: accepted (the conversation parks it until the reconnect,
    // test/workflows/parked-sends.test.ts), not refused.
    await db.ownerPool.query(`UPDATE channels SET status = 'reauth_required' WHERE id = $1`, [channelId]);
    try {
      // The run the earlier test closed stays closed: this send opens a new one.
      const runBefore = (await client.workflow.getHandle(workflowId()).describe()).runId;
      const accepted = await sendJson('POST', `/admin/conversations/${conversationId}/messages`, { text: 'held for reconnect', requestId: randomUUID() });
      expect(accepted.status).toBe(202);
      expect(((await accepted.json()) as { parked?: boolean }).parked).toBe(true);
      expect((await client.workflow.getHandle(workflowId()).describe()).runId).not.toBe(runBefore);
      expect(await signalNames(workflowId())).toEqual(['operatorCommand']);
    } finally {
      await db.ownerPool.query(`UPDATE channels SET status = 'active' WHERE id = $1`, [channelId]);
    }
  });

  it('answers 503 when Temporal is unreachable, audited as a failure', async () => {
    const deadConnection = Connection.lazy({ address: '127.0.0.1:1' });
    const deadClient = new Client({ connection: deadConnection, namespace: config.TEMPORAL_NAMESPACE });
    const down = await startGateway(config, { client: deadClient, connection: deadConnection });
    try {
      const before = (await auditRows('conversation.agent_message')).length;
      const res = await call('POST', `/admin/conversations/${conversationId}/messages`, { base: down.url, headers: json, body: JSON.stringify({ text: 'hi', requestId: 'op-retry-1' }) });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toEqual({
        code: 'temporarily_unavailable',
        message: 'Temporal did not accept the send command; nothing was done — retry with the same requestId (op-retry-1)',
      });
      expect((await auditRows('conversation.agent_message')).slice(before)).toEqual([
        expect.objectContaining({ outcome: 'failure', reason: 'temporal_unavailable', details: { conversationId, commandRequestId: 'op-retry-1', textLength: 2 } }),
      ]);
    } finally {
      await down.close();
      await deadConnection.close().catch(() => undefined);
    }
  });
});
