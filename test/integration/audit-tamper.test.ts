import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PoolClient } from 'pg';
import { checkpointChains } from '../../src/audit/checkpoints';
import { computeAuditHash } from '../../src/audit/hash';
import { AuditKeyring, AuditSigner } from '../../src/audit/keys';
import { appendAuditEvents } from '../../src/audit/log';
import { EVENT_COLUMNS, hashedFromRow, verifyAuditLog, verifyChain, type AuditEventRow, type ChainReport } from '../../src/audit/verify';
import { asAttacker, auditEvent } from '../support/audit';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The tamper matrix: an attacker with the schema owner's rights (triggers disabled, any SQL) edits
 * the log behind the application's back. Every case must be detected and the first bad row named.
 *
 * Each case gets its own tenant chain of 25 events with signed checkpoints at seq 10 and 20
 * (21–25 are not sealed yet). Truncating the tail and replacing it with a forged suffix whose
 * hashes are recomputed leave a chain whose links all verify: only the checkpoints catch them,
 * which each of those cases shows by verifying once with `ignoreCheckpoints`.
 */

type Tamper = (c: PoolClient, chain: string, ids: Map<number, string>) => Promise<void>;

interface Case {
  name: string;
  tamper: Tamper;
  /** The first bad row the verifier must name. */
  expect: (ids: Map<number, string>) => { seq: number; id: string | null; kind: string };
  /** Hash links alone do not see it (only checkpoints do). */
  onlyCheckpoints?: boolean;
}

async function rowsOf(c: PoolClient, chain: string, fromSeq = 1): Promise<AuditEventRow[]> {
  return (await c.query<AuditEventRow>(`SELECT ${EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND seq >= $2 ORDER BY seq`, [chain, fromSeq])).rows;
}

/** Appends forged rows after the current head, with correctly recomputed hashes. */
async function forgeSuffix(c: PoolClient, chain: string, fromSeq: number, toSeq: number): Promise<void> {
  const head = (await c.query<{ hash: Buffer }>('SELECT hash FROM audit_events WHERE chain_id = $1 AND seq = $2', [chain, fromSeq - 1])).rows[0]!;
  let prev = head.hash;
  for (let seq = fromSeq; seq <= toSeq; seq++) {
    const row = { ...hashedFromRow({ ...(await rowsOf(c, chain, 1))[0]!, seq: String(seq) }), reason: 'forged', details: { forged: true } };
    const hash = computeAuditHash(prev, row);
    await c.query(
      `INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome, reason, ip, user_agent, request_id, details, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
      [row.chainId, seq, row.tenantId, row.occurredAt, row.actorType, row.actorId, row.action, row.resource, row.outcome, row.reason, row.ip, row.userAgent, row.requestId, JSON.stringify(row.details), prev, hash],
    );
    prev = hash;
  }
}

const CASES: Case[] = [
  {
    name: 'update a field (reason)',
    tamper: (c, chain) => c.query("UPDATE audit_events SET reason = 'nothing happened' WHERE chain_id = $1 AND seq = 7", [chain]).then(() => undefined),
    expect: (ids) => ({ seq: 7, id: ids.get(7)!, kind: 'hash_mismatch' }),
  },
  {
    name: 'update a field (details jsonb)',
    tamper: (c, chain) => c.query(`UPDATE audit_events SET details = details || '{"purpose":"other"}' WHERE chain_id = $1 AND seq = 12`, [chain]).then(() => undefined),
    expect: (ids) => ({ seq: 12, id: ids.get(12)!, kind: 'hash_mismatch' }),
  },
  {
    name: 'update a field (occurred_at, by one millisecond)',
    tamper: (c, chain) => c.query("UPDATE audit_events SET occurred_at = occurred_at + interval '1 millisecond' WHERE chain_id = $1 AND seq = 3", [chain]).then(() => undefined),
    expect: (ids) => ({ seq: 3, id: ids.get(3)!, kind: 'hash_mismatch' }),
  },
  {
    name: 'update a field and recompute its hash (the next link breaks)',
    tamper: async (c, chain) => {
      // Event 5 recorded a failure; make it a success, with a hash that matches the new content.
      const [prev, row] = await rowsOf(c, chain, 4);
      expect(row).toMatchObject({ seq: '5', outcome: 'failure' });
      const forged = { ...hashedFromRow(row!), outcome: 'success' as const, reason: null };
      await c.query('UPDATE audit_events SET outcome = $3, reason = NULL, hash = $4 WHERE chain_id = $1 AND seq = $2', [chain, 5, forged.outcome, computeAuditHash(prev!.hash, forged)]);
    },
    expect: (ids) => ({ seq: 6, id: ids.get(6)!, kind: 'broken_link' }),
  },
  {
    name: 'delete a row',
    tamper: (c, chain) => c.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq = 7', [chain]).then(() => undefined),
    expect: (ids) => ({ seq: 8, id: ids.get(8)!, kind: 'gap' }),
  },
  {
    name: 'insert a forged row (at the end, hash made up)',
    tamper: async (c, chain) => {
      const [last] = await rowsOf(c, chain, 25);
      await c.query(
        `INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, action, outcome, prev_hash, hash)
         VALUES ($1, 26, $2, now(), 'operator', 'auth.login', 'success', $3, $4)`,
        [chain, last!.tenant_id, last!.hash, randomBytes(32)],
      );
    },
    expect: () => ({ seq: 26, id: null, kind: 'hash_mismatch' }),
  },
  {
    name: 'insert a forged row (in the middle, later rows renumbered, its hash recomputed)',
    tamper: async (c, chain) => {
      // Two steps around UNIQUE (chain_id, seq): move them out of the way, then back shifted by one.
      await c.query('UPDATE audit_events SET seq = seq + 1000 WHERE chain_id = $1 AND seq >= 7', [chain]);
      await c.query('UPDATE audit_events SET seq = seq - 999 WHERE chain_id = $1 AND seq > 1000', [chain]);
      await forgeSuffix(c, chain, 7, 7);
    },
    // The forged row itself links and hashes correctly; the row after it cannot.
    expect: (ids) => ({ seq: 8, id: ids.get(7)!, kind: 'broken_link' }),
  },
  {
    name: 'reorder two rows (swap their seqs)',
    tamper: async (c, chain) => {
      await c.query('UPDATE audit_events SET seq = seq + 1000 WHERE chain_id = $1 AND seq IN (7, 8)', [chain]);
      await c.query('UPDATE audit_events SET seq = CASE seq WHEN 1007 THEN 8 ELSE 7 END WHERE chain_id = $1 AND seq IN (1007, 1008)', [chain]);
    },
    expect: (ids) => ({ seq: 7, id: ids.get(8)!, kind: 'broken_link' }),
  },
  {
    name: 'truncate the tail',
    tamper: (c, chain) => c.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq >= 18', [chain]).then(() => undefined),
    expect: () => ({ seq: 18, id: null, kind: 'checkpoint_beyond_head' }),
    onlyCheckpoints: true,
  },
  {
    name: 'truncate the tail and delete the checkpoint rows that would show it',
    tamper: async (c, chain) => {
      await c.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq >= 18', [chain]);
      await c.query('DELETE FROM audit_checkpoints WHERE chain_id = $1', [chain]);
    },
    // The file copies (outside the database) still have both checkpoints.
    expect: () => ({ seq: 10, id: null, kind: 'checkpoint_missing_from_table' }),
    onlyCheckpoints: true,
  },
  {
    name: 'forge a suffix: delete the tail, append rows with recomputed valid hashes',
    tamper: async (c, chain) => {
      await c.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq >= 15', [chain]);
      await forgeSuffix(c, chain, 15, 25);
    },
    // Rows 11–20 can no longer be proven: the checkpoint at 10 still matches, the one at 20 does not.
    expect: (ids) => ({ seq: 11, id: ids.get(11)!, kind: 'checkpoint_hash_mismatch' }),
    onlyCheckpoints: true,
  },
  {
    name: 'delete a whole chain with its checkpoint rows',
    tamper: async (c, chain) => {
      await c.query('DELETE FROM audit_events WHERE chain_id = $1', [chain]);
      await c.query('DELETE FROM audit_checkpoints WHERE chain_id = $1', [chain]);
    },
    expect: () => ({ seq: 1, id: null, kind: 'checkpoint_beyond_head' }),
    onlyCheckpoints: true,
  },
];

describe('audit tamper matrix (attacker with the owner role; real PostgreSQL)', () => {
  let db: TestDatabase;
  let dir: string;
  const signer = AuditSigner.fromSpec(randomBytes(32).toString('base64'));
  const keyring = new AuditKeyring([signer.publicKey]);
  const detected: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), 'sb-audit-tamper-'));
  });
  afterAll(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** 25 events, sealed at 10 and 20; returns seq → row id. */
  async function buildChain(): Promise<{ chain: string; ids: Map<number, string> }> {
    const chain = randomUUID();
    const seal = () => checkpointChains(db.pool, signer, { dir, everyEvents: 1000, everyMs: 3_600_000, chains: [chain], force: true });
    const add = (from: number, n: number) => appendAuditEvents(db.pool, Array.from({ length: n }, (_, i) => ({ event: auditEvent(chain, from + i) })));
    await add(1, 10);
    await seal();
    await add(11, 10);
    await seal();
    await add(21, 5);
    const { rows } = await db.ownerPool.query<{ seq: string; id: string }>('SELECT seq, id FROM audit_events WHERE chain_id = $1', [chain]);
    return { chain, ids: new Map(rows.map((r) => [Number(r.seq), r.id])) };
  }

  const verify = (chain: string, ignoreCheckpoints = false): Promise<ChainReport> => verifyChain(db.pool, chain, { keyring, dir, ignoreCheckpoints });

  it('an untouched chain verifies clean, with its two checkpoints', async () => {
    const { chain } = await buildChain();
    expect(await verify(chain)).toMatchObject({ ok: true, eventsChecked: 25, checkpoints: { table: 2, file: 2, checked: 2, lastSeq: 20 }, unsealedEvents: 5 });
  });

  it.each(CASES.map((c) => [c.name, c] as const))('detects: %s', async (_name, c) => {
    const { chain, ids } = await buildChain();
    await asAttacker(db.ownerPool, (client) => c.tamper(client, chain, ids));

    if (c.onlyCheckpoints) {
      // The hash links alone look perfectly valid…
      expect(await verify(chain, true)).toMatchObject({ ok: true, findingCount: 0 });
    }
    const report = await verify(chain);
    expect(report.ok).toBe(false);
    const want = c.expect(ids);
    expect(report.firstBad).toMatchObject({ chainId: chain, seq: want.seq, kind: want.kind, ...(want.id === null ? {} : { id: want.id }) });
    expect(report.firstBad!.problem.length).toBeGreaterThan(10);
    // …and the whole-log verification (what the CLI runs) finds it too.
    const all = await verifyAuditLog(db.pool, { keyring, dir });
    expect(all.chains.find((r) => r.chainId === chain)?.ok).toBe(false);
    detected.push(c.name);
  });

  it('caught 100% of the matrix', () => {
    expect(detected).toEqual(CASES.map((c) => c.name));
  });

  it('checkpoint rows under an id that is no chain (outside every scope) are a finding, and sealing skips them', async () => {
    const { chain } = await buildChain();
    const forged = 'not-a-chain';
    await asAttacker(db.ownerPool, (c) =>
      c.query(
        "INSERT INTO audit_checkpoints (chain_id, last_seq, last_id, last_hash, event_count, created_at, key_id, signature) VALUES ($1, 1, 1, $2, 1, now(), 'ed25519:x', $3)",
        [forged, Buffer.alloc(32), Buffer.alloc(64)],
      ),
    );
    try {
      const all = await verifyAuditLog(db.pool, { keyring, dir });
      expect(all.ok).toBe(false);
      expect(all.chains.find((r) => r.chainId === forged)).toMatchObject({ ok: false, firstBad: { chainId: forged, kind: 'invalid_chain', seq: null } });
      expect(all.chains.find((r) => r.chainId === chain)?.ok).toBe(true);
      // A pass over every chain still seals the real ones.
      expect(await checkpointChains(db.pool, signer, { dir, everyEvents: 1000, everyMs: 3_600_000, force: true })).toEqual(
        expect.arrayContaining([expect.objectContaining({ chainId: chain, lastSeq: 25 })]),
      );
    } finally {
      await asAttacker(db.ownerPool, (c) => c.query('DELETE FROM audit_checkpoints WHERE chain_id = $1', [forged]));
    }
  });

  it('known limit: truncating only events after the last checkpoint is not detectable', async () => {
    const { chain } = await buildChain();
    await asAttacker(db.ownerPool, (client) => client.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq > 20', [chain]));
    // Why the checkpoint interval (N events / M minutes) bounds what can be lost silently.
    expect(await verify(chain)).toMatchObject({ ok: true, headSeq: 20, unsealedEvents: 0 });
  });
});
