import { temporal } from '@temporalio/proto';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { eventually, LogCapture, sdkLogs, startTestStack, type TestStack } from '../support/stack';
import { PAGE_A, postWebhook, textDelivery } from '../support/webhooks';

/**
 * A recognizable token and recognizable PII go through the webhook → reply path and its error
 * paths. They must reach the customer's conversation (the database) and the Send API, and
 * nothing else: no log line, no HTTP response, no workflow ID or search attribute, and no byte
 * of Temporal's stored history.
 */
const TOKEN = 'EAAB-CANARY-TOKEN-7f3a9c2e';
const NAME = 'Canarius Vogelsang';
const EMAIL = 'canarius.vogelsang@example.com';
const PHONE = '+49 170 5550123';
const TEXT = `CANARY-TEXT Hi, I am ${NAME}, mail ${EMAIL} or call ${PHONE}. Do you have the rain jacket?`;
const CANARIES = [TOKEN, 'CANARY-TEXT', NAME, 'Vogelsang', EMAIL, PHONE, '5550123'];
const CUSTOMER = '6650238819274415';

function findCanaries(haystack: string): string[] {
  return CANARIES.filter((c) => haystack.includes(c));
}

const delivery = (mid: string, text: string) => textDelivery({ pageId: PAGE_A, customerId: CUSTOMER, mid, text });

describe('canaries never leak', () => {
  const logs = new LogCapture();
  let stack: TestStack;
  let tenantId: string;
  const responses: string[] = [];
  const post = async (body: string, opts?: Parameters<typeof postWebhook>[2]) => {
    const res = await postWebhook(stack.gatewayUrl, body, opts);
    responses.push(`${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${await res.text()}`);
    return res.status;
  };

  beforeAll(async () => {
    stack = await startTestStack({}, logs);
    tenantId = (await createTenant(stack.db.pool, 'Canary shop')).id;
    await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN });

    // 1. The happy path: a reply is sent.
    expect(await post(delivery('m_canary_ok', TEXT))).toBe(200);
    await eventually(async () => (await stack.db.ownerPool.query(`SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent'`)).rowCount === 1);
    // 2. The Send API rejects the token: the failure path logs an error and parks the reply (with the reason) until a reconnect.
    stack.sandbox.failNext({ count: 1, preset: 'token_expired' });
    expect(await post(delivery('m_canary_fail', `${TEXT} (again)`))).toBe(200);
    await eventually(async () => (await stack.db.ownerPool.query(`SELECT 1 FROM messages WHERE status = 'parked'`)).rowCount === 1);
    // 3. Refused deliveries that carry the canaries in their bodies.
    expect(await post(`{"object":"page","entry":[{"id":"${PAGE_A}","text":"${TEXT}"`)).toBe(400);
    expect(await post(delivery('m_canary_unsigned', TEXT), { signature: 'sha256=' + '0'.repeat(64) })).toBe(401);
    expect(await post(JSON.stringify({ object: 'page', entry: [{ id: PAGE_A, messaging: [{ sender: { id: 7 }, message: { mid: 'x', text: TEXT } }] }] }))).toBe(400);
    expect(await post(delivery('m_canary_type', TEXT), { contentType: 'text/plain' })).toBe(415);
  });
  afterAll(() => stack.close());

  it('the conversation itself works and keeps the text where it belongs', async () => {
    const { rows } = await stack.db.ownerPool.query<{ text: string }>(`SELECT text FROM messages WHERE direction = 'inbound' ORDER BY created_at`);
    expect(rows.map((r) => r.text)).toEqual([TEXT, `${TEXT} (again)`]);
    const sent = stack.sandbox.requests().filter((r) => r.status === 200);
    expect(sent).toHaveLength(1);
  });

  it('no log line carries the token or the PII (gateway, worker and Temporal SDK logs)', () => {
    expect(logs.lines.length).toBeGreaterThan(5);
    expect(logs.lines.some((l) => l.includes('webhook signature rejected'))).toBe(true);
    expect(logs.lines.some((l) => l.includes('send failed'))).toBe(true);
    const leaks = [...logs.lines, ...sdkLogs.lines].flatMap((line) => findCanaries(line).map((c) => `${c} in ${line.slice(0, 200)}`));
    expect(leaks).toEqual([]);
  });

  it('no HTTP response carries them', () => {
    expect(responses).toHaveLength(6);
    expect(responses.flatMap(findCanaries)).toEqual([]);
  });

  it('no error recorded on a message carries them, and the Send API saw the token only as a hash', async () => {
    const { rows } = await stack.db.ownerPool.query<{ error: unknown }>(`SELECT error FROM messages WHERE error IS NOT NULL`);
    expect(rows).toHaveLength(1);
    expect(findCanaries(JSON.stringify(rows))).toEqual([]);
    expect(JSON.stringify(stack.sandbox.requests())).not.toContain(TOKEN);
  });

  it('Temporal stores ciphertext only: history bytes, workflow IDs and search attributes are free of them', async () => {
    const executions = [];
    for await (const wf of stack.client.workflow.list({ query: `TenantId = "${tenantId}"` })) executions.push(wf);
    expect(executions.length).toBeGreaterThan(0);
    for (const wf of executions) {
      // The conversations, and the notification of the reauth episode the 190 opened (src/notifications/reauth.ts).
      expect(wf.workflowId).toMatch(/^(conversation\/[0-9a-f-]{36}\/[0-9a-f-]{36}\/\d+|notify\/[0-9a-f-]{36})$/);
      expect(findCanaries(JSON.stringify({ id: wf.workflowId, sa: wf.searchAttributes, memo: wf.memo ?? null }))).toEqual([]);
      const { history } = await stack.client.workflowService.getWorkflowExecutionHistory({
        namespace: stack.config.TEMPORAL_NAMESPACE,
        execution: { workflowId: wf.workflowId, runId: wf.runId },
      });
      const raw = Buffer.from(temporal.api.history.v1.History.encode(history!).finish());
      expect(raw.length).toBeGreaterThan(wf.workflowId.startsWith('conversation/') ? 1000 : 0);
      expect(findCanaries(raw.toString('latin1')).concat(findCanaries(raw.toString('utf8')))).toEqual([]);
      // Failure messages are encrypted too (encodeCommonAttributes): Graph's error text is not in the clear.
      expect(raw.includes(Buffer.from('Graph API error'))).toBe(false);
      // …while the decoding client still reads everything.
      const decoded = await stack.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      expect(JSON.stringify(decoded).length).toBeGreaterThan(0);
    }
  });
});
