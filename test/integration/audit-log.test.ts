import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import { MockActivityEnvironment } from '@temporalio/testing';
import { auditIdempotencyKey, createAuditActivities } from '../../activities/audit';
import { AuditKeyring } from '../../src/audit/keys';
import { computeAuditHash } from '../../src/audit/hash';
import { appendAuditEvent, appendAuditEvents, onAuditAppended, prepareAuditEvent, type AppendResult, type AuditAppendNotice } from '../../src/audit/log';
import { verifyAuditLog, verifyChain } from '../../src/audit/verify';
import type { AuditEventInput } from '../../src/audit/types';
import { withPlatform, withTenant } from '../../src/db/tenant-scope';
import { auditEvent, seedTenant } from '../support/audit';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The audit log on real PostgreSQL, as the app role: appends, per-chain ordering under
 * concurrency, idempotency, atomicity with the action's transaction, and what the database refuses.
 * The app role is subject to row-level security: rows are inspected through the owner's pool, and
 * transactions of the app's own are opened with withTenant.
 */

const noKeys = new AuditKeyring([]);

describe('audit log: appending (real PostgreSQL, app role)', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  const chainRows = async (chainId: string) =>
    (
      await db.ownerPool.query<{ seq: string; prev_hash: Buffer; hash: Buffer }>('SELECT seq, prev_hash, hash FROM audit_events WHERE chain_id = $1 ORDER BY seq', [chainId])
    ).rows;

  /** Seqs 1..n, each prev_hash the previous hash, and the verifier agrees. */
  const expectIntactChain = async (chainId: string, n: number) => {
    const rows = await chainRows(chainId);
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(rows[0]!.prev_hash.equals(Buffer.alloc(32))).toBe(true);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash.equals(rows[i - 1]!.hash)).toBe(true);
    const report = await verifyChain(db.pool, chainId, { keyring: noKeys, dir: null });
    expect(report).toMatchObject({ ok: true, eventsChecked: n, headSeq: n, findingCount: 0 });
  };

  it('appends to per-tenant chains and the platform chain, and stores what it hashed', async () => {
    const tenant = await seedTenant(db.ownerPool, 'Audit A');
    const first = await appendAuditEvent(db.pool, auditEvent(tenant, 1, { details: { email: 'jane.doe@example.com', accessToken: 'EAABsecret', n: 2 ** 60 } }));
    expect(first).toEqual({ chainId: tenant, seq: 1, hash: expect.stringMatching(/^[0-9a-f]{64}$/), duplicate: false });
    const second = await appendAuditEvent(db.pool, auditEvent(tenant, 2));
    expect(second.seq).toBe(2);
    const platform = await appendAuditEvent(db.pool, { tenantId: null, actor: { type: 'system' }, action: 'key.rotated', outcome: 'success', resource: 'master_key:2' });
    expect(platform).toMatchObject({ chainId: 'platform', seq: 1 });

    const { rows } = await db.ownerPool.query('SELECT tenant_id, actor_type, action, details, encode(hash, \'hex\') AS hash FROM audit_events WHERE chain_id = $1 AND seq = 1', [tenant]);
    // Masked before storing (and hashing): no token, no email, big integers as strings.
    expect(rows[0]).toEqual({
      tenant_id: tenant,
      actor_type: 'operator',
      action: 'auth.login',
      details: { email: 'ja***@example.com', n: String(2 ** 60) },
      hash: first.hash,
    });
    await expectIntactChain(tenant, 2);
    await expectIntactChain('platform', 1);
  });

  it('keeps one chain contiguous under many concurrent appends', async () => {
    const tenant = randomUUID(); // no tenants row needed: the log outlives deleted tenants
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => appendAuditEvent(db.pool, auditEvent(tenant, i))));
    expect(results.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    await expectIntactChain(tenant, 150);
  });

  it('keeps 50 chains contiguous when appended to concurrently, singly and in batches', async () => {
    const tenants = Array.from({ length: 50 }, () => randomUUID());
    const work: Array<Promise<unknown>> = [];
    for (let round = 0; round < 6; round++) {
      for (const [t, tenant] of tenants.entries()) {
        work.push(
          round % 3 === 2
            ? // a batch across two chains (also: lock order is fixed, so batches cannot deadlock)
              appendAuditEvents(db.pool, [{ event: auditEvent(tenant, round) }, { event: auditEvent(tenants[(t + 1) % 50]!, round) }])
            : appendAuditEvent(db.pool, auditEvent(tenant, round)),
        );
      }
    }
    await Promise.all(work);
    // Each chain: 4 single appends, 2 batches of its own and 2 rows from its neighbour's batches.
    for (const tenant of tenants) await expectIntactChain(tenant, 8);
  });

  it('serializes per chain, not globally: a held chain does not block another', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    let aDone = false;
    const waitingOnA = await withTenant(db.pool, a, async (client) => {
      await appendAuditEvent(client, auditEvent(a, 1)); // chain a locked until this transaction commits
      const waiting = appendAuditEvent(db.pool, auditEvent(a, 2)).then((r) => {
        aDone = true;
        return r;
      });
      // Chain b proceeds at once.
      expect((await appendAuditEvent(db.pool, auditEvent(b, 1))).seq).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
      expect(aDone).toBe(false);
      return { waiting };
    });
    expect((await waitingOnA.waiting).seq).toBe(2);
    await expectIntactChain(a, 2);
  });

  it('another writer moving the head (another process) costs a retry, never a wrong link', async () => {
    const tenant = randomUUID();
    await appendAuditEvent(db.pool, auditEvent(tenant, 1)); // this process now remembers head 1
    // "Another process": appends seq 2 straight through the database function.
    const head = (await db.ownerPool.query<{ hash: Buffer }>('SELECT hash FROM audit_events WHERE chain_id = $1 AND seq = 1', [tenant])).rows[0]!.hash;
    const { row } = prepareAuditEvent(auditEvent(tenant, 2));
    const hash = computeAuditHash(head, { ...row, seq: 2 });
    const other = await db.ownerPool.query(
      'SELECT r_status FROM audit_append($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL)',
      [tenant, head, hash, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource, row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details)],
    );
    expect(other.rows[0].r_status).toBe('appended');
    // Coalesced appends through the Pool find the stale head and retry; so does one in a transaction.
    await Promise.all([appendAuditEvent(db.pool, auditEvent(tenant, 3)), appendAuditEvent(db.pool, auditEvent(tenant, 4))]);
    await withTenant(db.pool, tenant, (client) => appendAuditEvent(client, auditEvent(tenant, 5)));
    await expectIntactChain(tenant, 5);
  });

  it('a row the database rejects fails only its own caller, not the others coalesced with it', async () => {
    await db.ownerPool.query(`
      CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.reason = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION test_poison();`);
    try {
      const tenants = [randomUUID(), randomUUID()];
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => appendAuditEvent(db.pool, auditEvent(tenants[i % 2]!, i, { reason: i === 7 ? 'poison' : 'fine' }))),
      );
      expect(outcomes.map((o) => o.status)).toEqual(Array.from({ length: 20 }, (_, i) => (i === 7 ? 'rejected' : 'fulfilled')));
      expect(String((outcomes[7] as PromiseRejectedResult).reason)).toContain('poisoned row');
      await expectIntactChain(tenants[0]!, 10);
      await expectIntactChain(tenants[1]!, 9);
    } finally {
      await db.ownerPool.query('DROP TRIGGER test_poison ON audit_events; DROP FUNCTION test_poison()');
    }
  });

  it('is idempotent: a repeated key returns the first row, also under concurrency and within a batch', async () => {
    const tenant = randomUUID();
    const key = `wf:test/${randomUUID()}:0`;
    const first = await appendAuditEvent(db.pool, auditEvent(tenant, 1), { idempotencyKey: key });
    const again = await appendAuditEvent(db.pool, auditEvent(tenant, 99, { action: 'token.refreshed' }), { idempotencyKey: key });
    expect(again).toEqual({ ...first, duplicate: true });

    const racing = `wf:race/${randomUUID()}:7`;
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => appendAuditEvent(db.pool, auditEvent(tenant, i), { idempotencyKey: racing })));
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(results.map((r) => r.hash)).size).toBe(1);

    const batchKey = `batch-${randomUUID()}`;
    const batch = await appendAuditEvents(db.pool, [
      { event: auditEvent(tenant, 1), idempotencyKey: batchKey },
      { event: auditEvent(tenant, 2) },
      { event: auditEvent(tenant, 3), idempotencyKey: batchKey },
      { event: auditEvent(tenant, 4), idempotencyKey: key },
    ]);
    expect(batch.map((r) => r.duplicate)).toEqual([false, false, true, true]);
    expect(batch[2]!.seq).toBe(batch[0]!.seq);
    expect(batch[3]).toEqual({ ...first, duplicate: true });
    expect((await db.ownerPool.query('SELECT count(*)::int AS n FROM audit_events WHERE idempotency_key = ANY($1)', [[key, racing, batchKey]])).rows[0].n).toBe(3);
    await expectIntactChain(tenant, 4);
  });

  it('the workflow activity is idempotent per workflow id + sequence', async () => {
    const tenant = randomUUID();
    const { recordAuditEvent } = createAuditActivities({ pool: db.pool });
    const workflowId = `channel-reauth/${tenant}`;
    const env = new MockActivityEnvironment({ workflowExecution: { workflowId, runId: randomUUID() } });
    const input = { event: { ...auditEvent(tenant, 1, { action: 'channel.reauth_required' }), occurredAt: '2025-05-01T10:00:00.000Z' as unknown as Date }, sequence: 0 };
    const run = (i: typeof input): Promise<AppendResult> => env.run(recordAuditEvent, i);
    const a = await run(input);
    const retried = await run(input);
    const next = await run({ ...input, sequence: 1 });
    expect(a.duplicate).toBe(false);
    expect(retried).toEqual({ ...a, duplicate: true });
    expect(next).toMatchObject({ seq: 2, duplicate: false });
    const { rows } = await db.ownerPool.query('SELECT idempotency_key, occurred_at FROM audit_events WHERE chain_id = $1 ORDER BY seq', [tenant]);
    expect(rows.map((r) => r.idempotency_key)).toEqual([auditIdempotencyKey(workflowId, 0), auditIdempotencyKey(workflowId, 1)]);
    expect(rows[0].occurred_at.toISOString()).toBe('2025-05-01T10:00:00.000Z');
    expect(auditIdempotencyKey('x'.repeat(500), 3)).toMatch(/^wf:sha256-[0-9a-f]{64}:3$/);
  });

  it('commits and rolls back with the action it records (same transaction)', async () => {
    // The action: creating a tenant, inside its own scope, audited on its chain.
    const tenant = randomUUID();
    const createdEvent = { tenantId: tenant, actor: { type: 'operator' as const, id: 'cli' }, action: 'tenant.created' as const, outcome: 'success' as const, resource: `tenant:${tenant}` };
    const chainHead = async () => (await db.ownerPool.query('SELECT coalesce(max(seq), 0)::int AS n FROM audit_events WHERE chain_id = $1', [tenant])).rows[0].n as number;
    const tenantRows = async (name: string) => (await db.ownerPool.query('SELECT 1 FROM tenants WHERE name = $1', [name])).rowCount;
    await appendAuditEvent(db.pool, auditEvent(tenant, 0)); // the chain has a head to continue from
    const before = await chainHead();
    // Rolled back: neither the tenant nor its audit row exists, and no seq was used up.
    await expect(
      withTenant(db.pool, tenant, async (client) => {
        await client.query("INSERT INTO tenants (id, name) VALUES ($1, 'Rolled Back')", [tenant]);
        await appendAuditEvent(client, createdEvent);
        throw new Error('the action failed after its audit row was written');
      }),
    ).rejects.toThrow('the action failed');
    expect(await tenantRows('Rolled Back')).toBe(0);
    expect(await chainHead()).toBe(before);

    // Committed: both, and the chain continues without a gap.
    const created = await withTenant(db.pool, tenant, async (client) => {
      await client.query("INSERT INTO tenants (id, name) VALUES ($1, 'Committed')", [tenant]);
      return appendAuditEvent(client, createdEvent);
    });
    expect(created.seq).toBe(before + 1);
    expect(await tenantRows('Committed')).toBe(1);
    await expectIntactChain(tenant, before + 1);

    // An audit append that fails (invalid event) fails the action's transaction too.
    const unaudited = randomUUID();
    await expect(
      withTenant(db.pool, unaudited, async (client) => {
        await client.query("INSERT INTO tenants (id, name) VALUES ($1, 'Unaudited')", [unaudited]);
        await appendAuditEvent(client, { tenantId: 'not-a-uuid', actor: { type: 'system' }, action: 'tenant.created', outcome: 'success' });
      }),
    ).rejects.toThrow(/tenantId/);
    expect(await tenantRows('Unaudited')).toBe(0);
  });

  it('an event for a chain outside the transaction scope is refused, never written elsewhere', async () => {
    const [mine, other] = [randomUUID(), randomUUID()];
    await expect(withTenant(db.pool, mine, (client) => appendAuditEvent(client, auditEvent(other, 1)))).rejects.toThrow(/row-level security/);
    await expect(withTenant(db.pool, mine, (client) => appendAuditEvent(client, auditEvent(null, 1)))).rejects.toThrow(/row-level security/);
    expect((await db.ownerPool.query('SELECT count(*)::int AS n FROM audit_events WHERE chain_id = ANY($1)', [[mine, other]])).rows[0].n).toBe(0);
  });

  const BATCH_SQL =
    'SELECT r_status, r_seq::int AS seq, r_chain_id FROM audit_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)';

  /** A chain's head as stored (read as the owner). */
  const storedHead = async (chainId: string) => {
    const { rows } = await db.ownerPool.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_events WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1', [chainId]);
    return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].hash } : { seq: 0, hash: Buffer.alloc(32) };
  };

  /** audit_append_batch's 17 argument columns: each event hashed on its chain's head in `heads` (advanced as it goes). */
  const batchColumns = (events: AuditEventInput[], heads: Map<string, { seq: number; hash: Buffer }>) => {
    const cols: unknown[][] = Array.from({ length: 17 }, () => []);
    for (const event of events) {
      const { row } = prepareAuditEvent(event);
      const head = heads.get(row.chainId) ?? { seq: 0, hash: Buffer.alloc(32) };
      const hash = computeAuditHash(head.hash, { ...row, seq: head.seq + 1 });
      [
        row.chainId, head.seq, head.hash, hash, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource,
        row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details), null,
      ].forEach((v, c) => cols[c]!.push(v));
      heads.set(row.chainId, { seq: head.seq + 1, hash });
    }
    return cols;
  };

  const scopeOf = async (client: { query: PoolClient['query'] }) =>
    (await client.query<{ scope: string | null }>("SELECT current_setting('app.tenant_id', true) AS scope")).rows[0]!.scope;

  it('one call through the pool appends to three tenant chains and the platform chain, each in its own scope, and leaves no scope behind', async () => {
    const tenants = [randomUUID(), randomUUID(), randomUUID()];
    const heads = new Map([['platform', await storedHead('platform')]]);
    const platformBefore = heads.get('platform')!.seq;
    // Interleaved across chains: the function takes them chain by chain, each in input order.
    const events = [1, 2].flatMap((i) => [...tenants.map((t) => auditEvent(t, i)), auditEvent(null, i)]);
    const client = await db.pool.connect();
    try {
      // Autocommit, outside any scope: what the coalescer sends.
      expect(['', null]).toContain(await scopeOf(client));
      const { rows } = await client.query<{ r_status: string; seq: number; r_chain_id: string }>(BATCH_SQL, batchColumns(events, heads));
      const next = new Map([['platform', platformBefore]]);
      const expected = events.map((e) => {
        const chainId = e.tenantId ?? 'platform';
        next.set(chainId, (next.get(chainId) ?? 0) + 1);
        return { r_status: 'appended', seq: next.get(chainId), r_chain_id: chainId };
      });
      expect(rows).toEqual(expected);
      // Nothing outlives the call: the next statement on this connection is outside any scope.
      expect(['', null]).toContain(await scopeOf(client));
      await expect(client.query('SELECT count(*) FROM audit_events')).rejects.toThrow(/no tenant scope/);

      // Inside a transaction that has no scope, the same: the scope ends with the call, not the transaction.
      await client.query('BEGIN');
      try {
        const again = await client.query<{ r_status: string }>(BATCH_SQL, batchColumns([auditEvent(null, 3), ...tenants.map((t) => auditEvent(t, 3))], heads));
        expect(again.rows.map((r) => r.r_status)).toEqual(['appended', 'appended', 'appended', 'appended']);
        expect(await scopeOf(client)).toBe('');
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    } finally {
      client.release();
    }
    for (const tenant of tenants) await expectIntactChain(tenant, 3);
    const { rows: stored } = await db.ownerPool.query<{ tenant_id: string | null; chain_id: string; seq: string }>(
      'SELECT tenant_id, chain_id, seq FROM audit_events WHERE chain_id = ANY($1) ORDER BY chain_id, seq',
      [tenants],
    );
    expect(stored.every((r) => r.tenant_id === r.chain_id)).toBe(true);
    expect((await storedHead('platform')).seq).toBe(platformBefore + 3);
    expect(await verifyChain(db.pool, 'platform', { keyring: noKeys, dir: null })).toMatchObject({ ok: true, headSeq: platformBefore + 3 });
  });

  it('coalesces concurrent appends to several tenant chains and the platform chain into one statement (one transaction)', async () => {
    const tenants = [randomUUID(), randomUUID(), randomUUID()];
    // Heads known to this process first, so no row comes back stale and all travel together.
    for (const t of [...tenants, null]) await appendAuditEvent(db.pool, auditEvent(t, 0));
    const events = [1, 2].flatMap((i) => [...tenants, null].map((t) => auditEvent(t, i)));
    const results = await Promise.all(events.map((e) => appendAuditEvent(db.pool, e)));
    expect(results.map((r) => r.chainId)).toEqual(events.map((e) => e.tenantId ?? 'platform'));
    expect(results.every((r) => !r.duplicate)).toBe(true);
    // now() is the transaction's start: one value for every row means one transaction.
    const { rows } = await db.ownerPool.query(
      'SELECT DISTINCT recorded_at FROM audit_events e JOIN unnest($1::text[], $2::bigint[]) AS r(chain_id, seq) ON e.chain_id = r.chain_id AND e.seq = r.seq',
      [results.map((r) => r.chainId), results.map((r) => r.seq)],
    );
    expect(rows).toHaveLength(1);
    for (const tenant of tenants) await expectIntactChain(tenant, 3);
    expect(await verifyChain(db.pool, 'platform', { keyring: noKeys, dir: null })).toMatchObject({ ok: true });
  });

  it('inside a scope, audit_append_batch refuses an event of another chain (42501) and writes nothing; its own chain appends as before', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const platformBefore = (await storedHead('platform')).seq;
    const refused = (err: unknown) => ({ code: (err as { code?: string }).code, message: (err as Error).message });
    const rule = /inside a scope appends to that scope's chain only/;
    const inA = await withTenant(db.pool, a, (tx) => tx.query(BATCH_SQL, batchColumns([auditEvent(a, 1), auditEvent(b, 1)], new Map()))).catch(refused);
    expect(inA).toEqual({ code: '42501', message: expect.stringMatching(rule) });
    const platformInA = await withTenant(db.pool, a, (tx) => tx.query(BATCH_SQL, batchColumns([auditEvent(null, 1)], new Map([['platform', { seq: platformBefore, hash: Buffer.alloc(32) }]])))).catch(refused);
    expect(platformInA).toEqual({ code: '42501', message: expect.stringMatching(rule) });
    const tenantInPlatform = await withPlatform(db.pool, (tx) => tx.query(BATCH_SQL, batchColumns([auditEvent(b, 1)], new Map()))).catch(refused);
    expect(tenantInPlatform).toEqual({ code: '42501', message: expect.stringMatching(rule) });
    expect((await db.ownerPool.query('SELECT count(*)::int AS n FROM audit_events WHERE chain_id = ANY($1)', [[a, b]])).rows[0].n).toBe(0);
    expect((await storedHead('platform')).seq).toBe(platformBefore);

    const own = await withTenant(db.pool, a, async (tx) => {
      const { rows } = await tx.query<{ r_status: string }>(BATCH_SQL, batchColumns([auditEvent(a, 1), auditEvent(a, 2)], new Map()));
      return { statuses: rows.map((r) => r.r_status), scope: await scopeOf(tx) };
    });
    // The caller's scope is left as it was.
    expect(own).toEqual({ statuses: ['appended', 'appended'], scope: a });
    await expectIntactChain(a, 2);
  });

  it('tells listeners after commit, and never fails the caller when a listener throws', async () => {
    const notices: AuditAppendNotice[] = [];
    const off1 = onAuditAppended((n) => notices.push(n));
    const off2 = onAuditAppended(() => {
      throw new Error('listener bug');
    });
    try {
      const tenant = randomUUID();
      await appendAuditEvents(db.pool, [{ event: auditEvent(tenant, 1) }, { event: auditEvent(tenant, 2) }]);
      await withTenant(db.pool, tenant, (client) => appendAuditEvent(client, auditEvent(tenant, 3)));
      expect(notices.filter((n) => n.chainId === tenant)).toEqual([
        { chainId: tenant, fromSeq: 0, toSeq: 2, committed: true },
        { chainId: tenant, fromSeq: 2, toSeq: 3, committed: false },
      ]);
    } finally {
      off1();
      off2();
    }
  });

  it('a chain whose events were all purged continues from its anchor', async () => {
    const tenant = randomUUID();
    const anchorHash = Buffer.alloc(32, 0xab);
    await db.ownerPool.query('INSERT INTO audit_anchors (chain_id, anchor_seq, anchor_hash) VALUES ($1, 40, $2)', [tenant, anchorHash]);
    const r = await appendAuditEvent(db.pool, auditEvent(tenant, 1));
    expect(r.seq).toBe(41);
    const { rows } = await db.ownerPool.query('SELECT prev_hash FROM audit_events WHERE chain_id = $1', [tenant]);
    expect(rows[0].prev_hash.equals(anchorHash)).toBe(true);
    // The links verify from the anchor (the anchor itself is unsealed here: no checkpoint signs it).
    const report = await verifyChain(db.pool, tenant, { keyring: noKeys, dir: null });
    expect(report.eventsChecked).toBe(1);
    expect(report.findings.map((f) => f.kind)).toEqual(['anchor_unsealed']);
  });

  it('verifies the whole log: every chain intact but the unsealed anchor', async () => {
    const report = await verifyAuditLog(db.pool, { keyring: noKeys, dir: null });
    const broken = report.chains.filter((c) => !c.ok).map((c) => c.chainId);
    // Only the anchored chain of the previous test (no signed checkpoint behind its anchor).
    expect(broken).toHaveLength(1);
    expect(report.totals.chains).toBeGreaterThan(50);
    expect(report.warnings.join('\n')).toMatch(/signatures were not checked/);
  });
});

describe('audit log: immutability the database enforces (as the app role)', () => {
  let db: TestDatabase;
  let tenant: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = randomUUID();
    for (let i = 0; i < 3; i++) await appendAuditEvent(db.pool, auditEvent(tenant, i));
    await db.ownerPool.query(
      "INSERT INTO audit_checkpoints (chain_id, last_seq, last_id, last_hash, event_count, created_at, key_id, signature) VALUES ($1, 3, 3, $2, 3, now(), 'ed25519:test', $3)",
      [tenant, Buffer.alloc(32), Buffer.alloc(64)],
    );
    // On the same chain: every statement below runs in the chain's scope, where all three tables
    // have a row for the row triggers to refuse.
    await db.ownerPool.query('INSERT INTO audit_anchors (chain_id, anchor_seq, anchor_hash) VALUES ($1, 1, $2)', [tenant, Buffer.alloc(32)]);
  });
  afterAll(() => db.drop());

  const statements = (table: string) => ({
    UPDATE: `UPDATE ${table} SET chain_id = chain_id`,
    DELETE: `DELETE FROM ${table}`,
    TRUNCATE: `TRUNCATE ${table}`,
  });
  const tables = ['audit_events', 'audit_checkpoints', 'audit_anchors'];

  /** One statement as the app role, inside the chain's scope (row-level security needs one). */
  const attempt = async (sql: string) => {
    try {
      await withTenant(db.pool, tenant, (client) => client.query(sql));
      return 'succeeded';
    } catch (err) {
      return `${(err as { code?: string }).code}: ${(err as Error).message}`;
    }
  };
  const count = async (table: string) => withTenant(db.pool, tenant, async (client) => (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number);

  it('connects as a role that is not the owner and cannot own or alter the tables', async () => {
    const { rows } = await db.pool.query("SELECT current_user AS me, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'audit_events'");
    expect(rows[0].me).not.toBe(rows[0].owner);
    expect(await attempt('ALTER TABLE audit_events DISABLE TRIGGER USER')).toMatch(/^42501: must be owner/);
    expect(await attempt('DROP TRIGGER audit_events_immutable ON audit_events')).toMatch(/^42501: must be owner/);
  });

  it('may INSERT and SELECT events and checkpoints, and only SELECT anchors', async () => {
    expect(await count('audit_events')).toBe(3);
    expect(await count('audit_checkpoints')).toBe(1);
    expect(await count('audit_anchors')).toBe(1);
    expect((await appendAuditEvent(db.pool, auditEvent(tenant, 4))).seq).toBe(4);
    expect(await attempt(`INSERT INTO audit_anchors (chain_id, anchor_seq, anchor_hash) VALUES ('platform', 1, '\\x${'00'.repeat(32)}')`)).toMatch(/^42501: permission denied for table audit_anchors/);
  });

  it('UPDATE, DELETE and TRUNCATE are refused by privileges', async () => {
    for (const table of tables) {
      for (const [op, sql] of Object.entries(statements(table))) {
        expect({ table, op, result: await attempt(sql) }).toEqual({ table, op, result: expect.stringMatching(new RegExp(`^42501: permission denied for table ${table}`)) });
      }
    }
  });

  it('…and still raise through the triggers after an accidental GRANT to the app role', async () => {
    await db.ownerPool.query('GRANT UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, audit_anchors TO switchboard_app');
    try {
      for (const table of tables) {
        for (const [op, sql] of Object.entries(statements(table))) {
          expect({ table, op, result: await attempt(sql) }).toEqual({ table, op, result: `42501: ${table} is append-only: ${op} is not allowed` });
        }
      }
      // Setting the purge switch does not help: the app role is not the owner.
      await expect(
        withTenant(db.pool, tenant, async (client) => {
          await client.query("SELECT set_config('audit.purge', 'on', true)");
          await client.query('DELETE FROM audit_events');
        }),
      ).rejects.toThrow('audit_events is append-only: DELETE is not allowed');
      expect(await count('audit_events')).toBe(4);
    } finally {
      await db.ownerPool.query('REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, audit_anchors FROM switchboard_app');
    }
  });

  it('the owner cannot UPDATE or TRUNCATE either, and DELETEs only with the purge switch (its SECURITY DEFINER function)', async () => {
    await expect(db.ownerPool.query('UPDATE audit_events SET reason = NULL')).rejects.toThrow('append-only: UPDATE');
    await expect(db.ownerPool.query('TRUNCATE audit_events')).rejects.toThrow('append-only: TRUNCATE');
    await expect(db.ownerPool.query('DELETE FROM audit_events')).rejects.toThrow('append-only: DELETE');
    // The escape hatch the retention purge uses: a SECURITY DEFINER function owned by the owner
    // sets the switch for its transaction; the app role may call it (and can do nothing else).
    await db.ownerPool.query(`
      CREATE FUNCTION test_purge_first(p_chain text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      DECLARE n bigint;
      BEGIN
        PERFORM set_config('audit.purge', 'on', true);
        DELETE FROM audit_events WHERE chain_id = p_chain AND seq = 1;
        GET DIAGNOSTICS n = ROW_COUNT;
        PERFORM set_config('audit.purge', 'off', true);
        RETURN n;
      END $$`);
    try {
      const { rows } = await db.pool.query('SELECT test_purge_first($1) AS n', [tenant]);
      expect(rows[0].n).toBe('1');
      // Outside the function the app role still cannot delete.
      expect(await attempt('DELETE FROM audit_events')).toMatch(/^42501: permission denied/);
    } finally {
      await db.ownerPool.query('DROP FUNCTION test_purge_first(text)');
    }
  });
});
