import { createKeyRotationActivities } from '../../activities/key-rotation';
import { recordCliAction } from '../../src/audit/cli-actions';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { eventually, startTestStack, TEST_CODEC_TOKEN, type TestStack } from '../support/stack';
import { IG_ACCOUNT, PAGE_A, PAGE_B, postWebhook, textDelivery } from '../support/webhooks';

/** Every security-relevant path records its audit event (action, actor, outcome, chain), without tokens. */

const CUSTOMER = '7291845503617724';
const TOKEN = 'EAAB-page-token-for-audit-coverage';

interface Row {
  chain_id: string;
  seq: string;
  tenant_id: string | null;
  actor_type: string;
  actor_id: string | null;
  action: string;
  resource: string | null;
  outcome: string;
  reason: string | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

const delivery = (pageId: string, mid: string, text: string) => textDelivery({ pageId, customerId: CUSTOMER, mid, text });

describe('audit coverage of security-relevant paths', () => {
  let stack: TestStack;
  let tenantId: string;
  let channelId: string;

  const events = async (action: string, where = 'true', params: unknown[] = []) =>
    (await stack.db.ownerPool.query<Row>(`SELECT * FROM audit_events WHERE action = $1 AND ${where} ORDER BY id`, [action, ...params])).rows;
  const noSecrets = (rows: Row[]) => {
    const text = JSON.stringify(rows);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(TEST_CODEC_TOKEN);
    expect(text).not.toContain(CUSTOMER);
  };

  beforeAll(async () => {
    stack = await startTestStack();
    tenantId = (await createTenant(stack.db.pool, 'Audited shop')).id;
  });
  afterAll(() => stack.close());

  it('connectChannel: token.stored on the tenant chain, in the same transaction', async () => {
    channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: TOKEN }, { actor: { type: 'operator', id: 'alice' } })).id;
    const rows = await events('token.stored', 'resource = $2', [`channel:${channelId}`]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: tenantId, tenant_id: tenantId, actor_type: 'operator', actor_id: 'alice', outcome: 'success', details: expect.objectContaining({ platform: 'messenger', reconnect: false }) });
    noSecrets(rows);

    // A failing audit append rolls the token back: no token without its audit row.
    const before = (await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM channels')).rows[0].n;
    await expect(
      connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'instagram', accountId: IG_ACCOUNT, accessToken: TOKEN }, { actor: { type: 'nobody' as 'system' } }),
    ).rejects.toThrow(/actor.type/);
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM channels')).rows[0].n).toBe(before);
  });

  it('loadChannelCredentials: token.decrypted with purpose and channel', async () => {
    const creds = await loadChannelCredentials(stack.db.pool, stack.vault, { tenantId, channelId }, 'graph.validate');
    expect(creds.accessToken).toBe(TOKEN);
    const rows = await events('token.decrypted', "details->>'purpose' = 'graph.validate'");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: tenantId, actor_type: 'system', outcome: 'success', details: expect.objectContaining({ channel: channelId }) });
    noSecrets(rows);
  });

  it('a send that decrypts (graph.send), and a 190 that flips the channel to reauth_required once', async () => {
    const ok = await postWebhook(stack.gatewayUrl, delivery(PAGE_A, `m_cov_${Date.now()}_1`, 'hello'));
    expect(ok.status).toBe(200);
    await eventually(async () => (await events('token.decrypted', "details->>'purpose' = 'graph.send'")).length >= 1);

    stack.sandbox.failNext({ count: 1, preset: 'token_expired' });
    expect((await postWebhook(stack.gatewayUrl, delivery(PAGE_A, `m_cov_${Date.now()}_2`, 'anyone?'))).status).toBe(200);
    const rows = await eventually(async () => {
      const r = await events('channel.reauth_required');
      return r.length > 0 ? r : undefined;
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: tenantId, resource: `channel:${channelId}`, outcome: 'success', reason: expect.stringContaining('190') });
    // The status change and its event went together: one change, one event.
    expect((await stack.db.ownerPool.query('SELECT status FROM channels WHERE id = $1', [channelId])).rows[0].status).toBe('reauth_required');
    noSecrets(await events('token.decrypted'));
  });

  it('webhook with a bad signature: webhook.signature_rejected (platform chain, ip, user agent, request id)', async () => {
    const res = await fetch(`${stack.gatewayUrl}/webhooks/meta`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${'0'.repeat(64)}`, 'user-agent': 'facebookexternalua', 'x-request-id': 'req-bad-sig' },
      body: delivery(PAGE_A, 'm_bad', 'x'),
    });
    expect(res.status).toBe(401);
    const rows = await events('webhook.signature_rejected', 'request_id = $2', ['req-bad-sig']);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: 'platform', tenant_id: null, actor_type: 'meta', outcome: 'failure', reason: 'signature_mismatch', user_agent: 'facebookexternalua' });
    expect(rows[0]!.ip).toMatch(/127\.0\.0\.1/);
  });

  it('an event for an unknown account: webhook.unrouted with the unrouted row', async () => {
    expect((await postWebhook(stack.gatewayUrl, delivery(PAGE_B, `m_unrouted_${Date.now()}`, 'hi'))).status).toBe(200);
    const rows = await events('webhook.unrouted', "details->>'accountId' = $2", [PAGE_B]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: 'platform', actor_type: 'meta', outcome: 'failure', reason: 'unknown_account', details: expect.objectContaining({ eventType: 'message', reason: 'unknown_account' }) });
    const unrouted = await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM unrouted_events WHERE account_id = $1', [PAGE_B]);
    expect(unrouted.rows[0].n).toBe(1);
    noSecrets(rows);
  });

  it('codec decode by an operator → codec.decode; failed codec auth → auth.denied', async () => {
    const ok = await fetch(`${stack.gatewayUrl}/codec/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_CODEC_TOKEN}`, 'x-namespace': 'default' },
      body: JSON.stringify({ payloads: [] }),
    });
    expect(ok.status).toBe(200);
    const decoded = await events('codec.decode');
    expect(decoded).toHaveLength(1);
    expect(decoded[0]).toMatchObject({ chain_id: 'platform', actor_type: 'operator', actor_id: 'codec-bearer', outcome: 'success', details: { payloads: 0, namespace: 'default' } });
    expect(decoded[0]!.ip).toBeTruthy();

    const denied = await fetch(`${stack.gatewayUrl}/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-token-guess' }, body: '{"payloads":[]}' });
    expect(denied.status).toBe(401);
    const rows = await events('auth.denied', "resource = 'codec:decode'");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: 'platform', actor_type: 'operator', outcome: 'failure', reason: 'invalid_credentials' });
    expect(JSON.stringify(rows)).not.toContain('wrong-token-guess');
    noSecrets([...decoded, ...rows]);
  });

  it('a key rotation batch → key.rotated with step, counts and master key version', async () => {
    const acts = createKeyRotationActivities({ pool: stack.db.pool, vault: stack.vault, logger: createLogger('test', 'silent') });
    const r = await acts.rewrapDataKeysBatch({ batchSize: 10 });
    const rows = await events('key.rotated');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      chain_id: 'platform',
      actor_type: 'system',
      outcome: 'success',
      details: { step: 'rewrap_data_keys', done: r.done, remaining: r.remaining, masterKeyVersion: stack.keys.activeVersion },
    });
  });

  it('recordCliAction: cli.command with masked arguments', async () => {
    await recordCliAction(stack.db.pool, { command: 'channels:connect', args: { tenant: tenantId, platform: 'messenger', 'account-id': PAGE_A, 'access-token': TOKEN }, outcome: 'success', operator: 'bob' });
    const rows = await events('cli.command');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ chain_id: 'platform', actor_type: 'operator', actor_id: 'bob', resource: 'cli:channels:connect', outcome: 'success' });
    expect(rows[0]!.details.tenantId).toBe(tenantId);
    const args = rows[0]!.details.args as Record<string, unknown>;
    expect(args).toMatchObject({ platform: 'messenger', tenant: tenantId });
    expect(['[redacted]', '[removed]', undefined]).toContain(args['access-token']);
    noSecrets(rows);
  });
});
