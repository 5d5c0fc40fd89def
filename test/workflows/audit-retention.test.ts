import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sealChain } from '../../src/audit/checkpoints';
import { AuditKeyring, AuditSigner } from '../../src/audit/keys';
import { appendAuditEvents } from '../../src/audit/log';
import { verifyAuditLog } from '../../src/audit/verify';
import { withTenant } from '../../src/db/tenant-scope';
import { createTenant } from '../../src/db/tenants';
import { ensureAuditRetentionSchedule } from '../../src/temporal/schedules';
import type { AuditRetentionResult } from '../../workflows/audit-retention';
import { asAttacker, auditEvent } from '../support/audit';
import { eventually, startTestStack, type TestStack } from '../support/stack';

/** The AuditRetention workflow on the real dev server, worker, database and checkpoint files. */

const signingKey = randomBytes(32).toString('base64');
const signer = AuditSigner.fromSpec(signingKey);
const keyring = new AuditKeyring([signer.publicKey]);

const now = new Date();
/** The 10th of the month `monthsAgo` months before this one, UTC. */
const monthsAgo = (m: number, day = 10) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - m, day, 12));
const epochOf = (d: Date) => `${d.toISOString().slice(0, 7)}-01`;

describe('AuditRetention workflow', () => {
  let stack: TestStack;
  let dir: string;

  const append = async (tenantId: string | null, at: Date, n: number) => {
    await appendAuditEvents(stack.db.pool, Array.from({ length: n }, (_, i) => ({ event: auditEvent(tenantId, i, { occurredAt: new Date(at.getTime() + i * 1000) }) })));
  };
  const seal = (chain: string) => sealChain(stack.db.pool, signer, chain, dir);
  const oldestEvent = async (chain: string) =>
    (await stack.db.ownerPool.query<{ occurred_at: Date; seq: string }>('SELECT occurred_at, seq FROM audit_events WHERE chain_id = $1 ORDER BY seq LIMIT 1', [chain])).rows[0];
  const run = (batchSize = 1) =>
    stack.client.workflow.execute('auditRetentionWorkflow', { taskQueue: stack.config.TEMPORAL_TASK_QUEUE, workflowId: `audit-retention-test-${randomUUID()}`, args: [{ batchSize }] }) as Promise<AuditRetentionResult>;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sb-audit-retention-'));
    stack = await startTestStack({ AUDIT_SIGNING_KEY: signingKey, AUDIT_CHECKPOINT_DIR: dir });
  });
  afterAll(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let old: string; // default retention, two 8-year-old sealed epochs + recent events
  let boundary: string; // 8-year-old epoch sealed only by a later checkpoint
  let unsealed: string; // 8-year-old epoch with no checkpoint at all
  let short: string; // 13-month retention, 2-year-old epoch
  let long: string; // default retention, 2-year-old epoch

  it('purges only whole, sealed, expired epochs, anchors the chain and keeps it verifiable', async () => {
    old = (await createTenant(stack.db.pool, 'old')).id;
    boundary = (await createTenant(stack.db.pool, 'boundary')).id;
    unsealed = (await createTenant(stack.db.pool, 'unsealed')).id;
    short = (await createTenant(stack.db.pool, 'short')).id;
    long = (await createTenant(stack.db.pool, 'long')).id;
    await withTenant(stack.db.pool, short, (tx) => tx.query('UPDATE tenants SET audit_retention_months = 13 WHERE id = $1', [short]));
    await expect(withTenant(stack.db.pool, long, (tx) => tx.query('UPDATE tenants SET audit_retention_months = 12 WHERE id = $1', [long]))).rejects.toThrow(/check constraint/);

    await append(old, monthsAgo(100), 3);
    await seal(old);
    await append(old, monthsAgo(99), 2);
    await seal(old);
    await append(old, monthsAgo(0, 1), 2);
    await seal(old);

    await append(boundary, monthsAgo(100), 3);
    await append(boundary, monthsAgo(0, 1), 2);
    await seal(boundary); // one checkpoint, at seq 5: the epoch ending at seq 3 gets sealed by the run

    await append(unsealed, monthsAgo(100), 2);
    await append(unsealed, monthsAgo(0, 1), 1);

    for (const t of [short, long]) {
      await append(t, monthsAgo(24), 2);
      await seal(t);
      await append(t, monthsAgo(0, 1), 1);
      await seal(t);
    }

    const result = await run(1);
    expect(result).toMatchObject({ epochs: 4, events: 3 + 2 + 3 + 2, verification: { ok: true, findings: 0 } });

    // old: both 8-year-old epochs gone, anchored at seq 5, two retention.purged events.
    expect(Number((await oldestEvent(old))!.seq)).toBe(6);
    const anchors = await stack.db.ownerPool.query('SELECT chain_id, anchor_seq::int AS seq, details FROM audit_anchors WHERE chain_id = $1 ORDER BY anchor_seq', [old]);
    expect(anchors.rows).toEqual([
      { chain_id: old, seq: 3, details: expect.objectContaining({ epoch: epochOf(monthsAgo(100)).slice(0, 7), purgedEvents: 3 }) },
      { chain_id: old, seq: 5, details: expect.objectContaining({ epoch: epochOf(monthsAgo(99)).slice(0, 7), purgedEvents: 2 }) },
    ]);
    const purged = await stack.db.ownerPool.query("SELECT chain_id, details FROM audit_events WHERE action = 'retention.purged' ORDER BY id");
    expect(purged.rows.filter((r) => r.chain_id === old)).toHaveLength(2);
    expect(purged.rows.map((r) => r.chain_id).sort()).toEqual([old, old, boundary, short].sort());

    // boundary: sealed at its epoch's end by the run, then purged.
    expect(Number((await oldestEvent(boundary))!.seq)).toBe(4);
    // unsealed: kept; short (13 months) purged; long (84 months) kept.
    expect((await oldestEvent(unsealed))!.occurred_at.getTime()).toBe(monthsAgo(100).getTime());
    expect((await oldestEvent(short))!.occurred_at.getTime()).toBeGreaterThan(monthsAgo(1).getTime());
    expect((await oldestEvent(long))!.occurred_at.getTime()).toBe(monthsAgo(24).getTime());

    const report = await verifyAuditLog(stack.db.pool, { keyring, dir });
    expect(report.chains.filter((c) => !c.ok)).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('the app role cannot DELETE audit rows; the purge function only follows its rules', async () => {
    await expect(stack.db.pool.query('DELETE FROM audit_events WHERE chain_id = $1', [long])).rejects.toThrow(/permission denied/);
    const client = await stack.db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query("SELECT set_config('audit.purge', 'on', true)");
      await expect(client.query('DELETE FROM audit_events WHERE chain_id = $1', [long])).rejects.toThrow(/permission denied/);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const call = async (chain: string, epoch: string) =>
      (await stack.db.pool.query<{ r_status: string; r_purged: string }>('SELECT r_status, r_purged FROM audit_purge_epoch($1, $2::date)', [chain, epoch])).rows[0];
    expect(await call(long, epochOf(monthsAgo(24)))).toEqual({ r_status: 'not_expired', r_purged: '0' });
    expect(await call(unsealed, epochOf(monthsAgo(100)))).toEqual({ r_status: 'not_sealed', r_purged: '0' });
    expect(await call(old, epochOf(monthsAgo(0)))).toEqual({ r_status: 'not_expired', r_purged: '0' });
    expect(await call(unsealed, epochOf(monthsAgo(101)))).toEqual({ r_status: 'empty', r_purged: '0' });
    await append(null, monthsAgo(110), 1);
    await append(null, monthsAgo(105), 1);
    await seal('platform');
    expect(await call('platform', epochOf(monthsAgo(105)))).toEqual({ r_status: 'not_oldest', r_purged: '0' });
    expect(await call('platform', epochOf(monthsAgo(110)))).toEqual({ r_status: 'not_sealed', r_purged: '0' });
  });

  it('a tampered chain: audit.verification_failed is recorded and /readyz is degraded', async () => {
    const ready = await fetch(`${stack.gatewayUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok', audit: 'ok' } });

    await asAttacker(stack.db.ownerPool, (c) => c.query("UPDATE audit_events SET reason = 'nothing happened' WHERE chain_id = $1 AND seq = 6", [old]));
    const result = await run(10);
    expect(result.verification.ok).toBe(false);
    expect(result.verification.firstFinding).toContain(old);

    const failed = await stack.db.ownerPool.query("SELECT chain_id, actor_type, outcome, details FROM audit_events WHERE action = 'audit.verification_failed'");
    expect(failed.rows).toEqual([{ chain_id: 'platform', actor_type: 'system', outcome: 'failure', details: expect.objectContaining({ brokenChains: [old] }) }]);
    const latest = await stack.db.pool.query('SELECT ok, findings FROM audit_verifications ORDER BY id DESC LIMIT 1');
    expect(latest.rows[0]).toMatchObject({ ok: false });

    const degraded = await fetch(`${stack.gatewayUrl}/readyz`);
    expect(degraded.status).toBe(503);
    expect(await degraded.json()).toEqual({ status: 'degraded', checks: { database: 'ok', temporal: 'ok', audit: 'degraded' } });
  });

  it('ensureAuditRetentionSchedule is idempotent, describes the action, and a trigger runs the workflow', async () => {
    const scheduleId = `audit-retention-test-${randomUUID()}`;
    const opts = { taskQueue: stack.config.TEMPORAL_TASK_QUEUE, scheduleId };
    try {
      expect(await ensureAuditRetentionSchedule(stack.client, opts)).toEqual({ scheduleId, created: true });
      expect(await ensureAuditRetentionSchedule(stack.client, opts)).toEqual({ scheduleId, created: false });
      await eventually(async () => {
        let n = 0;
        for await (const s of stack.client.schedule.list()) if (s.scheduleId === scheduleId) n += 1;
        return n === 1;
      });
      const handle = stack.client.schedule.getHandle(scheduleId);
      const described = await handle.describe();
      expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'auditRetentionWorkflow', taskQueue: stack.config.TEMPORAL_TASK_QUEUE });
      expect(described.policies.overlap).toBe('SKIP');
      expect(described.spec.calendars?.length ?? 0).toBeGreaterThan(0); // the daily cron, as the server stores it

      await handle.trigger();
      const workflowId = await eventually(async () => (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId);
      const result = (await stack.client.workflow.getHandle(workflowId).result()) as AuditRetentionResult;
      expect(result).toMatchObject({ epochs: expect.any(Number), verification: expect.objectContaining({ chains: expect.any(Number) }) });
    } finally {
      await stack.client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    }
  });
});
