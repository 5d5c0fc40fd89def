import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  appendCheckpointLine,
  checkpointChains,
  checkpointFile,
  readCheckpointFile,
  runCheckpointPass,
  signCheckpoint,
  startAuditCheckpointer,
  verifyCheckpointSignature,
} from '../../src/audit/checkpoints';
import { AuditKeyring, AuditSigner } from '../../src/audit/keys';
import { appendAuditEvent, appendAuditEvents } from '../../src/audit/log';
import { verifyChain } from '../../src/audit/verify';
import { withTenant } from '../../src/db/tenant-scope';
import { createLogger } from '../../src/logger';
import { asAttacker, auditEvent } from '../support/audit';
import { createTestDatabase, eventually, LogCapture, type TestDatabase } from '../support/stack';

/** Signed checkpoints: policy, both copies (table and file), signatures, crash healing. */

const newSigner = () => AuditSigner.fromSpec(randomBytes(32).toString('base64'));

describe('audit checkpoints (real PostgreSQL, app role)', () => {
  let db: TestDatabase;
  let dir: string;
  const signer = newSigner();
  const keyring = new AuditKeyring([signer.publicKey]);
  const policy = { everyEvents: 10, everyMs: 60_000 };

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), 'sb-audit-cp-'));
  });
  afterAll(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const append = async (chain: string, n: number) => {
    await appendAuditEvents(db.pool, Array.from({ length: n }, (_, i) => ({ event: auditEvent(chain === 'platform' ? null : chain, i) })));
  };
  const tableSeqs = async (chain: string) =>
    (await db.ownerPool.query<{ last_seq: string }>('SELECT last_seq FROM audit_checkpoints WHERE chain_id = $1 ORDER BY last_seq', [chain])).rows.map((r) => Number(r.last_seq));
  const fileSeqs = (chain: string) => readCheckpointFile(dir, chain).map((l) => l.checkpoint!.lastSeq);
  const verify = (chain: string, ring = keyring) => verifyChain(db.pool, chain, { keyring: ring, dir });

  it('seals a chain after N events or after M ms with new events, in the table and the file alike', async () => {
    const chain = randomUUID();
    const t0 = Date.now();
    const at = (ms: number) => () => new Date(t0 + ms);
    await append(chain, 9);
    expect(await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], now: at(0) })).toEqual([]);
    await append(chain, 1); // 10 events: due by count
    expect(await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], now: at(1000) })).toEqual([
      { chainId: chain, lastSeq: 10, count: 10, keyId: signer.keyId },
    ]);
    await append(chain, 3);
    expect(await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], now: at(30_000) })).toEqual([]);
    // M passed since the last checkpoint, and there are new events: due by time.
    expect((await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], now: at(62_000) })).map((w) => w.lastSeq)).toEqual([13]);
    // Nothing new: nothing to seal, however long it has been.
    expect(await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], now: at(10 * 60_000) })).toEqual([]);

    expect(await tableSeqs(chain)).toEqual([10, 13]);
    expect(fileSeqs(chain)).toEqual([10, 13]);
    const lines = readCheckpointFile(dir, chain).map((l) => l.checkpoint!);
    for (const c of lines) expect(verifyCheckpointSignature(keyring, c)).toBe(true);
    const head = (await db.ownerPool.query("SELECT id, encode(hash, 'hex') AS hash FROM audit_events WHERE chain_id = $1 AND seq = 13", [chain])).rows[0];
    expect(lines[1]).toMatchObject({ chainId: chain, lastSeq: 13, lastId: Number(head.id), lastHash: head.hash, count: 13, keyId: signer.keyId });
    expect(readFileSync(checkpointFile(dir, chain), 'utf8').endsWith('\n')).toBe(true);

    expect(await verify(chain)).toMatchObject({ ok: true, eventsChecked: 13, checkpoints: { table: 2, file: 2, checked: 2, lastSeq: 13 }, unsealedEvents: 0 });
  });

  it('a pass over every chain seals each due chain once, even with passes running concurrently', async () => {
    const chains: string[] = Array.from({ length: 8 }, () => randomUUID());
    for (const c of chains) await append(c, 12);
    const deps = { pool: db.pool, signer, dir, ...policy };
    const results = await Promise.all([runCheckpointPass(deps), runCheckpointPass(deps), runCheckpointPass(deps)]);
    const sealed = results.flatMap((r) => r.checkpoints).filter((w) => chains.includes(w.chainId));
    expect(sealed.map((w) => w.chainId).sort()).toEqual([...chains].sort());
    for (const c of chains) {
      expect(await tableSeqs(c)).toEqual([12]);
      expect(fileSeqs(c)).toEqual([12]);
    }
  });

  it('the checkpointer seals right after a commit crosses N, and after a caller transaction a moment later', async () => {
    const logs = new LogCapture();
    const checkpointer = startAuditCheckpointer({ pool: db.pool, signer, dir, everyEvents: 5, everyMs: 3_600_000, logger: createLogger('test', 'debug', { destination: logs.stream }) });
    try {
      const chain = randomUUID();
      for (let i = 0; i < 4; i++) await appendAuditEvent(db.pool, auditEvent(chain, i));
      await new Promise((r) => setTimeout(r, 100));
      expect(await tableSeqs(chain)).toEqual([]);
      await appendAuditEvent(db.pool, auditEvent(chain, 4)); // seq 5
      await eventually(async () => (await tableSeqs(chain)).length === 1, 5_000, 20);
      expect(await tableSeqs(chain)).toEqual([5]);

      // Inside a caller's transaction: sealed after it commits (the checkpointer looks a second later).
      await withTenant(db.pool, chain, async (client) => {
        for (let i = 0; i < 5; i++) await appendAuditEvent(client, auditEvent(chain, i));
      });
      await eventually(async () => (await tableSeqs(chain)).length === 2, 5_000, 50);
      expect(await tableSeqs(chain)).toEqual([5, 10]);
      expect(fileSeqs(chain)).toEqual([5, 10]);
    } finally {
      await checkpointer.stop();
    }
  });

  it('a failing checkpoint never fails the append that triggered it', async () => {
    const notADir = path.join(dir, 'a-file');
    writeFileSync(notADir, 'x');
    const logs = new LogCapture();
    const checkpointer = startAuditCheckpointer({ pool: db.pool, signer, dir: notADir, everyEvents: 1, everyMs: 3_600_000, logger: createLogger('test', 'debug', { destination: logs.stream }) });
    try {
      const chain = randomUUID();
      await expect(appendAuditEvent(db.pool, auditEvent(chain, 1))).resolves.toMatchObject({ seq: 1 });
      await eventually(async () => logs.lines.some((l) => l.includes('audit: checkpoint failed')), 5_000, 20);
      // The failed seal rolled back: no checkpoint row without its file line.
      expect(await tableSeqs(chain)).toEqual([]);
    } finally {
      await checkpointer.stop();
    }
  });

  it('wrong key: a checkpoint signed by another key is an unknown key; one claiming our key id fails its signature', async () => {
    const chain = randomUUID();
    await append(chain, 3);
    const other = newSigner();
    await checkpointChains(db.pool, other, { ...policy, dir, chains: [chain], force: true });
    const report = await verify(chain);
    expect(report.ok).toBe(false);
    expect(report.findings.map((f) => f.kind)).toEqual(['checkpoint_unknown_key', 'checkpoint_unknown_key']);
    expect(report.firstBad).toMatchObject({ seq: 3, kind: 'checkpoint_unknown_key' });
    // With the other key among the previous keys (a key rotation) it verifies.
    expect((await verify(chain, new AuditKeyring([signer.publicKey, other.publicKey]))).ok).toBe(true);

    const chain2 = randomUUID();
    await append(chain2, 2);
    const head = (await db.ownerPool.query("SELECT id, encode(hash, 'hex') AS hash FROM audit_events WHERE chain_id = $1 AND seq = 2", [chain2])).rows[0];
    const forged = { ...signCheckpoint(other, { chainId: chain2, lastSeq: 2, lastId: Number(head.id), lastHash: head.hash, count: 2, createdAt: new Date().toISOString() }), keyId: signer.keyId };
    appendCheckpointLine(dir, forged);
    // The app role may insert checkpoints (in the chain's scope): only the signature tells them apart.
    await withTenant(db.pool, chain2, (client) =>
      client.query(
        'INSERT INTO audit_checkpoints (chain_id, last_seq, last_id, last_hash, event_count, created_at, key_id, signature) VALUES ($1, 2, $2, $3, 2, $4, $5, $6)',
        [chain2, head.id, Buffer.from(head.hash, 'hex'), forged.createdAt, forged.keyId, Buffer.from(forged.signature, 'base64')],
      ),
    );
    const r2 = await verify(chain2);
    expect(r2.findings.map((f) => f.kind)).toEqual(['checkpoint_bad_signature', 'checkpoint_bad_signature']);
  });

  it('the table and the file must agree: a checkpoint missing from either, or altered in one, is a finding', async () => {
    const chain = randomUUID();
    await append(chain, 4);
    await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], force: true });
    await append(chain, 4);
    await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], force: true });
    expect((await verify(chain)).ok).toBe(true);
    const file = checkpointFile(dir, chain);
    const original = readFileSync(file, 'utf8');
    const [line4, line8] = original.trim().split('\n') as [string, string];

    // A line removed from the file.
    writeFileSync(file, `${line8}\n`);
    expect((await verify(chain)).findings).toEqual([expect.objectContaining({ seq: 4, kind: 'checkpoint_missing_from_file' })]);

    // A line altered in the file (its signature no longer verifies, and it differs from the table).
    writeFileSync(file, `${line4}\n${line8.replace(/"createdAt":"[^"]+"/, '"createdAt":"2020-01-01T00:00:00.000Z"')}\n`);
    expect((await verify(chain)).findings.map((f) => f.kind).sort()).toEqual(['checkpoint_bad_signature', 'checkpoint_copies_differ']);

    // A garbage line.
    writeFileSync(file, `${original}{not json\n`);
    expect((await verify(chain)).findings.map((f) => f.kind)).toEqual(['checkpoint_file_line']);

    // A row deleted from the table (by an attacker with the owner's rights): the file still has it.
    writeFileSync(file, original);
    await asAttacker(db.ownerPool, (c) => c.query('DELETE FROM audit_checkpoints WHERE chain_id = $1 AND last_seq = 8', [chain]));
    const report = await verify(chain);
    expect(report.findings).toEqual([expect.objectContaining({ seq: 8, kind: 'checkpoint_missing_from_table' })]);
    expect(report.firstBad?.problem).toMatch(/in the checkpoint file but not in audit_checkpoints/);
  });

  it('heals a crash between the file write and the commit: the file line goes back into the table', async () => {
    const chain = randomUUID();
    await append(chain, 3);
    const head = (await db.ownerPool.query("SELECT id, encode(hash, 'hex') AS hash FROM audit_events WHERE chain_id = $1 AND seq = 3", [chain])).rows[0];
    // What a crash leaves: the line is fsynced, the transaction with the row never committed.
    appendCheckpointLine(dir, signCheckpoint(signer, { chainId: chain, lastSeq: 3, lastId: Number(head.id), lastHash: head.hash, count: 3, createdAt: new Date().toISOString() }));
    expect((await verify(chain)).findings.map((f) => f.kind)).toEqual(['checkpoint_missing_from_table']);

    await append(chain, 1);
    const written = await checkpointChains(db.pool, signer, { ...policy, dir, chains: [chain], force: true });
    expect(written).toEqual([
      { chainId: chain, lastSeq: 3, count: 3, keyId: signer.keyId, healed: true },
      { chainId: chain, lastSeq: 4, count: 4, keyId: signer.keyId },
    ]);
    expect(await verify(chain)).toMatchObject({ ok: true, checkpoints: { table: 2, file: 2, checked: 2 } });
  });

  it('checkpoint rows are immutable for the app role too', async () => {
    await expect(db.pool.query('UPDATE audit_checkpoints SET event_count = 0')).rejects.toThrow(/permission denied/);
    await expect(db.pool.query('DELETE FROM audit_checkpoints')).rejects.toThrow(/permission denied/);
  });
});
