import { randomBytes, randomUUID } from 'node:crypto';
import { SecretVault, secretKeyVersion } from '../../src/crypto/vault';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { keyStatus } from '../../src/db/key-inventory';
import { updateTenantSettings } from '../../src/db/tenant-settings';
import { createTenant } from '../../src/db/tenants';
import { DAY_MS } from '../../src/shared/data-key-policy';
import { ensureDataKeyRotationSchedule } from '../../src/temporal/schedules';
import type { DataKeyRotationResult } from '../../workflows/data-key-rotation';
import { eventually, startTestStack, type TestStack } from '../support/stack';

/**
 * The scheduled DataKeyRotation on the real dev server, worker and database: of three tenants, the
 * one whose data key is too old and the one whose key encrypted too much get a new data key
 * (through the KeyRotation workflow, as a child), their secrets move to it and still decrypt; the
 * fresh one is not touched.
 */

const MAX_ENCRYPTIONS = 2 ** 30;
const policy = { maxAgeMs: 90 * DAY_MS, maxEncryptions: MAX_ENCRYPTIONS };

interface Channel {
  id: string;
  tenantId: string;
  token: string;
}

describe('DataKeyRotation workflow (dev server, real activities, real PostgreSQL)', () => {
  let stack: TestStack;
  let oldTenant: string;
  let busyTenant: string;
  let freshTenant: string;
  const channels: Channel[] = [];
  const LLM_KEY = `sk-test-${randomBytes(12).toString('hex')}`;

  const run = (input: Record<string, unknown>) =>
    stack.client.workflow.execute('dataKeyRotationWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId: `data-key-rotation-test-${randomUUID()}`,
      args: [input],
      workflowExecutionTimeout: '2 minutes',
    }) as Promise<DataKeyRotationResult>;

  const keysOf = async (tenantId: string) =>
    (
      await stack.db.ownerPool.query<{ version: number; superseded: boolean; wrapped_key: Buffer; created_at: Date; encryptions: string }>(
        'SELECT version, superseded_at IS NOT NULL AS superseded, wrapped_key, created_at, encryptions::text AS encryptions FROM tenant_data_keys WHERE tenant_id = $1 ORDER BY version',
        [tenantId],
      )
    ).rows;

  const connect = async (tenantId: string, n: number) => {
    const token = `EAAB${randomBytes(20).toString('hex')}`;
    const { id } = await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: String(100_000_000 + channels.length * 7 + n), accessToken: token });
    channels.push({ id, tenantId, token });
  };

  beforeAll(async () => {
    stack = await startTestStack();
    oldTenant = (await createTenant(stack.db.pool, 'Old key shop')).id;
    busyTenant = (await createTenant(stack.db.pool, 'Busy key shop')).id;
    freshTenant = (await createTenant(stack.db.pool, 'Fresh key shop')).id;
    await connect(oldTenant, 1);
    await connect(oldTenant, 2);
    await connect(busyTenant, 1);
    await connect(freshTenant, 1);
    await updateTenantSettings(stack.db.pool, stack.vault, busyTenant, { llmApiKey: LLM_KEY }, { actor: { type: 'operator', id: 'test' } });
    // One key 100 days old, one at the usage limit (the schema counts; nobody encrypts 2^30 times in a test).
    await stack.db.ownerPool.query("UPDATE tenant_data_keys SET created_at = now() - interval '100 days' WHERE tenant_id = $1", [oldTenant]);
    await stack.db.ownerPool.query('UPDATE tenant_data_keys SET encryptions = $2 WHERE tenant_id = $1', [busyTenant, MAX_ENCRYPTIONS]);
  });
  afterAll(() => stack.close());

  it('keys:status shows each key with its age, usage and due flag under the policy', async () => {
    const status = await keyStatus(stack.db.pool, stack.keys, { policy });
    expect(status.policy).toEqual({ maxAgeDays: 90, maxEncryptions: MAX_ENCRYPTIONS });
    expect(status.dueForRotation).toBe(2);
    const byTenant = Object.fromEntries(status.tenantDataKeys.map((k) => [k.tenantId, k]));
    expect(byTenant[oldTenant]).toEqual({
      tenantId: oldTenant,
      version: 1,
      masterKeyVersion: 1,
      createdAt: expect.any(String),
      ageDays: 100,
      encryptions: 2,
      superseded: false,
      due: true,
      dueBecause: ['age'],
    });
    expect(byTenant[busyTenant]).toMatchObject({ version: 1, ageDays: 0, encryptions: MAX_ENCRYPTIONS, due: true, dueBecause: ['encryptions'] });
    expect(byTenant[freshTenant]).toMatchObject({ version: 1, ageDays: 0, encryptions: 1, due: false, dueBecause: [] });
    // Oldest first.
    expect(status.tenantDataKeys[0]!.tenantId).toBe(oldTenant);
  });

  it('rotates exactly the due tenants through KeyRotation children; secrets move to the new keys and decrypt', async () => {
    const freshBefore = await keysOf(freshTenant);
    const blobsBefore = new Map(
      (await stack.db.ownerPool.query<{ id: string; blob: Buffer }>('SELECT id, access_token_ciphertext AS blob FROM channels')).rows.map((r) => [r.id, r.blob]),
    );

    // One due tenant per child: the paging hands the policy's tenants over in two KeyRotation runs.
    const workflowId = `data-key-rotation-test-${randomUUID()}`;
    const result = (await stack.client.workflow.execute('dataKeyRotationWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId,
      args: [{ ...policy, tenantsPerRun: 1, batchSize: 10 }],
      workflowExecutionTimeout: '2 minutes',
    })) as DataKeyRotationResult;
    expect(result).toEqual({
      asOf: expect.any(String),
      tenants: 2,
      byReason: { age: 1, encryptions: 1 },
      rotated: expect.arrayContaining([
        { tenantId: oldTenant, version: 1, reasons: ['age'] },
        { tenantId: busyTenant, version: 1, reasons: ['encryptions'] },
      ]),
      runs: 2,
      // Three channel tokens and the model API key re-encrypted; the two superseded keys destroyed.
      totals: { rewrapped: 0, dataKeysRotated: 2, reencrypted: 4, destroyed: 2 },
    });
    expect(result.rotated).toHaveLength(2);

    // The children are KeyRotation runs, each given one tenant.
    for (const n of [1, 2]) {
      const child = await stack.client.workflow.getHandle(`${workflowId}/key-rotation-${n}`).describe();
      expect(child.type).toBe('keyRotationWorkflow');
      expect(child.status.name).toBe('COMPLETED');
      expect(child.parentExecution?.workflowId).toBe(workflowId);
    }

    for (const tenantId of [oldTenant, busyTenant]) {
      const keys = await keysOf(tenantId);
      expect(keys.map((k) => ({ version: k.version, superseded: k.superseded }))).toEqual([{ version: 2, superseded: false }]);
    }
    // The fresh tenant's key is the very same row: same version, wrapping, creation time and count.
    expect(await keysOf(freshTenant)).toEqual(freshBefore);

    const stored = await stack.db.ownerPool.query<{ id: string; tenant_id: string; token_key_version: number; blob: Buffer }>(
      'SELECT id, tenant_id, token_key_version, access_token_ciphertext AS blob FROM channels',
    );
    for (const r of stored.rows) {
      const expected = r.tenant_id === freshTenant ? 1 : 2;
      expect({ id: r.id, version: r.token_key_version, inBlob: secretKeyVersion(r.blob) }).toEqual({ id: r.id, version: expected, inBlob: expected });
      expect(r.blob.equals(blobsBefore.get(r.id)!)).toBe(r.tenant_id === freshTenant);
    }
    // A fresh vault (no cached keys) reads every token and the model API key.
    const vault = new SecretVault(stack.db.pool, stack.keys);
    for (const ch of channels) {
      const creds = await loadChannelCredentials(stack.db.pool, vault, { tenantId: ch.tenantId, channelId: ch.id }, 'graph.send');
      expect(creds.accessToken).toBe(ch.token);
    }
    const llm = await stack.db.ownerPool.query<{ id: string; blob: Buffer; v: number }>(
      'SELECT id, llm_api_key_ciphertext AS blob, llm_api_key_version AS v FROM tenant_settings WHERE tenant_id = $1',
      [busyTenant],
    );
    expect(llm.rows[0]!.v).toBe(2);
    expect(await vault.decrypt({ tenantId: busyTenant, table: 'tenant_settings', column: 'llm_api_key', rowId: llm.rows[0]!.id }, llm.rows[0]!.blob)).toBe(LLM_KEY);

    // One data_key.rotated event on each rotated tenant's own chain, none for the fresh one.
    const audited = await stack.db.ownerPool.query<{ chain_id: string; tenant_id: string; resource: string; details: Record<string, unknown> }>(
      "SELECT chain_id, tenant_id, resource, details FROM audit_events WHERE action = 'data_key.rotated' ORDER BY tenant_id",
    );
    expect(audited.rows).toEqual(
      [oldTenant, busyTenant].sort().map((t) => ({ chain_id: t, tenant_id: t, resource: 'data_key:2', details: expect.objectContaining({ version: 2, masterKeyVersion: 1, scope: 'due_tenants' }) })),
    );

    const after = await keyStatus(stack.db.pool, stack.keys, { policy });
    expect(after.dueForRotation).toBe(0);
    expect(after.pending).toEqual({ rewrap: 0, reencrypt: 0 });
  });

  it('a second run finds nothing due and rotates nothing', async () => {
    const before = await stack.db.ownerPool.query('SELECT tenant_id, version, wrapped_key FROM tenant_data_keys ORDER BY tenant_id, version');
    const result = await run(policy);
    expect(result).toEqual({
      asOf: expect.any(String),
      tenants: 0,
      byReason: { age: 0, encryptions: 0 },
      rotated: [],
      runs: 0,
      totals: { rewrapped: 0, dataKeysRotated: 0, reencrypted: 0, destroyed: 0 },
    });
    expect((await stack.db.ownerPool.query('SELECT tenant_id, version, wrapped_key FROM tenant_data_keys ORDER BY tenant_id, version')).rows).toEqual(before.rows);
  });

  it('ensureDataKeyRotationSchedule: one schedule, created then updated with the new policy; a trigger runs the workflow', async () => {
    const scheduleId = `data-key-rotation-test-${randomUUID()}`;
    const opts = { taskQueue: stack.config.TEMPORAL_TASK_QUEUE, scheduleId, cron: '41 3 * * *', maxAgeDays: 90, maxEncryptions: MAX_ENCRYPTIONS };
    try {
      expect(await ensureDataKeyRotationSchedule(stack.client, opts)).toEqual({ scheduleId, created: true });
      expect(await ensureDataKeyRotationSchedule(stack.client, { ...opts, maxAgeDays: 30 })).toEqual({ scheduleId, created: false });
      await eventually(async () => {
        let n = 0;
        for await (const s of stack.client.schedule.list()) if (s.scheduleId === scheduleId) n += 1;
        return n === 1;
      });
      const handle = stack.client.schedule.getHandle(scheduleId);
      const described = await handle.describe();
      expect(described.action).toMatchObject({
        type: 'startWorkflow',
        workflowType: 'dataKeyRotationWorkflow',
        taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
        args: [{ maxAgeMs: 30 * DAY_MS, maxEncryptions: MAX_ENCRYPTIONS }],
      });
      expect(described.policies.overlap).toBe('SKIP');
      expect(described.spec.calendars?.length ?? 0).toBeGreaterThan(0);

      await handle.trigger();
      const runId = await eventually(async () => (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId);
      const result = (await stack.client.workflow.getHandle(runId).result()) as DataKeyRotationResult;
      // Everything was rotated by the test above: under 30 days, still nothing is due.
      expect(result).toMatchObject({ tenants: 0, runs: 0 });
    } finally {
      await stack.client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    }
  });
});
