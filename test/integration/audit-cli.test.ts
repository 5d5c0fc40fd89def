import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCheckpointPass } from '../../src/audit/checkpoints';
import { EXPORT_FORMAT, verifyAuditExport, type ExportHeader } from '../../src/audit/export';
import { AuditSigner, rawPublicKey } from '../../src/audit/keys';
import { appendAuditEvent, appendAuditEvents } from '../../src/audit/log';
import type { AuditVerifyReport } from '../../src/audit/verify';
import { runCli, type CliResult } from '../support/cli';
import { asAttacker, auditEvent } from '../support/audit';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * `audit:verify` and `audit:export` as an operator runs them: a child process on a test database,
 * with every variable set explicitly (src/config.ts would otherwise fill gaps from .data/dev.env).
 */

const SIGNING_KEY = randomBytes(32).toString('base64');
const signer = AuditSigner.fromSpec(SIGNING_KEY);

let db: TestDatabase;
let dir: string;

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, {
    databaseUrl: db.url,
    masterKeys: `1:${randomBytes(32).toString('base64')}`,
    env: {
      AUDIT_SIGNING_KEY: SIGNING_KEY,
      AUDIT_PREVIOUS_PUBLIC_KEYS: '',
      AUDIT_CHECKPOINT_DIR: dir,
      AUDIT_CHECKPOINT_EVERY_EVENTS: '1000',
      AUDIT_CHECKPOINT_EVERY_MS: '300000',
      ...env,
    },
  });
}

describe('operator CLI: audit:verify and audit:export (child process, real PostgreSQL)', () => {
  const tenantA = randomUUID();
  const tenantB = randomUUID();
  const t0 = Date.parse('2025-06-01T00:00:00.000Z');
  const at = (minutes: number) => new Date(t0 + minutes * 60_000);

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), 'sb-audit-cli-'));
    // Tenant A: 30 events a minute apart, sealed at 10 and 20; B: 5; the platform chain: 3.
    const deps = { pool: db.pool, signer, dir, everyEvents: 1000, everyMs: 3_600_000 };
    for (let i = 0; i < 30; i++) {
      await appendAuditEvent(db.pool, auditEvent(tenantA, i, { occurredAt: at(i) }));
      if (i === 9 || i === 19) await runCheckpointPass(deps, { force: true });
    }
    await appendAuditEvents(db.pool, Array.from({ length: 5 }, (_, i) => ({ event: auditEvent(tenantB, i) })));
    await appendAuditEvents(db.pool, Array.from({ length: 3 }, (_, i) => ({ event: auditEvent(null, i, { action: 'key.rotated' }) })));
  });
  afterAll(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('audit:verify prints a readable report and exits 0 on a clean log', async () => {
    const r = await cli(['audit:verify']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`keys: ${signer.keyId}`);
    expect(r.stdout).toMatch(new RegExp(`OK +${tenantA}: 30 events \\(head seq 30\\), 2 checkpoints checked \\(table 2, file 2\\), 10 unsealed`));
    expect(r.stdout).toMatch(/OK +platform: 3 events/);
    expect(r.stdout).toMatch(/CLEAN: 3 chains, 38 events, 2 checkpoints verified/);

    const json = await cli(['audit:verify', '--tenant', tenantB, '--json', 'yes']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as AuditVerifyReport;
    expect(report).toMatchObject({ ok: true, scope: tenantB, totals: { chains: 1, events: 5, brokenChains: 0 } });
    expect(report.warnings).toEqual(['some chains have no checkpoint yet: their tail is not protected against truncation']);
  });

  it('audit:export writes JSON Lines with the chain proofs, verifiable offline with the public key', async () => {
    const out = path.join(dir, 'export-a.jsonl');
    // Minutes 12..16: events seq 13..17; the segment widens to the checkpoints at 10 and 20.
    const r = await cli(['audit:export', '--tenant', tenantA, '--from', at(12).toISOString(), '--to', at(17).toISOString(), '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      out,
      chainId: tenantA,
      events: 10,
      eventsInRange: 5,
      checkpoints: 2,
      segment: { firstSeq: 11, lastSeq: 20 },
      sealed: true,
      sealedNow: false,
    });
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const header = parsed[0] as unknown as ExportHeader;
    expect(header).toMatchObject({
      type: 'header',
      format: EXPORT_FORMAT,
      chainId: tenantA,
      tenantId: tenantA,
      range: { from: at(12).toISOString(), to: at(17).toISOString() },
      segment: { firstSeq: 11, lastSeq: 20 },
      start: { kind: 'checkpoint', seq: 10 },
      sealed: true,
      publicKeys: [{ keyId: signer.keyId, publicKey: rawPublicKey(signer.publicKey).toString('base64') }],
    });
    expect(parsed.map((p) => p.type)).toEqual(['header', ...Array(10).fill('event'), 'checkpoint', 'checkpoint', 'end']);
    const events = parsed.filter((p) => p.type === 'event');
    expect(events.filter((e) => e.inRange).map((e) => e.seq)).toEqual([13, 14, 15, 16, 17]);
    expect(events[0]).toMatchObject({ seq: 11, chainId: tenantA, actorType: 'operator', prevHash: expect.stringMatching(/^[0-9a-f]{64}$/), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(parsed.filter((p) => p.type === 'checkpoint').map((c) => c.lastSeq)).toEqual([10, 20]);

    // The auditor's side: their own copy of the public key, nothing from our database.
    const trusted = [rawPublicKey(signer.publicKey).toString('base64')];
    expect(verifyAuditExport(lines, trusted)).toEqual({ ok: true, events: 10, checkpointsVerified: 2, sealed: true, problems: [] });
    // An edited export fails.
    const edited = lines.map((l, i) => (i === 4 ? l.replace('"outcome":"success"', '"outcome":"failure"') : l));
    expect(edited).not.toEqual(lines);
    expect(verifyAuditExport(edited, trusted).problems).toEqual([expect.stringMatching(/seq 14: hash does not match/)]);
    // …and so does one checked against another key.
    expect(verifyAuditExport(lines, [rawPublicKey(AuditSigner.fromSpec(randomBytes(32).toString('base64')).publicKey).toString('base64')]).ok).toBe(false);
  });

  it('audit:export prints to stdout without --out, and seals an unsealed range end first', async () => {
    const r = await cli(['audit:export', '--tenant', tenantA, '--from', at(25).toISOString(), '--to', at(60).toISOString()]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    const header = JSON.parse(lines[0]!) as ExportHeader;
    expect(header).toMatchObject({ segment: { firstSeq: 21, lastSeq: 30 }, start: { kind: 'checkpoint', seq: 20 }, sealed: true });
    expect(verifyAuditExport(lines, [rawPublicKey(signer.publicKey).toString('base64')])).toMatchObject({ ok: true, events: 10, sealed: true });
    // The new checkpoint is in the table and the file: the log still verifies clean.
    expect((await cli(['audit:verify', '--tenant', tenantA])).stdout).toMatch(/3 checkpoints checked \(table 3, file 3\), 0 unsealed/);

    const empty = await cli(['audit:export', '--tenant', tenantB, '--from', '2001-01-01', '--to', '2001-01-02']);
    expect(empty.code).toBe(0);
    expect(empty.stdout.trim().split('\n').map((l) => JSON.parse(l).type)).toEqual(['header', 'end']);
  });

  it('audit:verify exits 3 on a broken chain, naming the first bad row, and records the failure', async () => {
    // Event 6 recorded a failure; the attacker turns it into a success.
    const id = (await db.ownerPool.query<{ id: string }>("SELECT id FROM audit_events WHERE chain_id = $1 AND seq = 6 AND outcome = 'failure'", [tenantA])).rows[0]!.id;
    await asAttacker(db.ownerPool, (c) => c.query("UPDATE audit_events SET outcome = 'success', reason = NULL WHERE chain_id = $1 AND seq = 6", [tenantA]));
    await asAttacker(db.ownerPool, (c) => c.query('DELETE FROM audit_events WHERE chain_id = $1 AND seq >= 4', [tenantB]));

    const r = await cli(['audit:verify']);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(`BROKEN ${tenantA}`);
    expect(r.stdout).toContain(`first bad row: seq 6, id ${id}: hash_mismatch: hash does not match the row's content (row altered)`);
    // Tenant B's tail was never sealed: cutting it off is not detectable (documented limit).
    expect(r.stdout).toMatch(new RegExp(`OK +${tenantB}`));
    expect(r.stdout).toMatch(/BROKEN: 1 of 3 chains have findings/);

    const json = await cli(['audit:verify', '--tenant', tenantA, '--json', 'yes']);
    expect(json.code).toBe(3);
    const report = JSON.parse(json.stdout) as AuditVerifyReport;
    expect(report.chains[0]!.firstBad).toEqual({ chainId: tenantA, seq: 6, id, kind: 'hash_mismatch', problem: expect.any(String) });

    const { rows } = await db.ownerPool.query("SELECT actor_type, outcome, details FROM audit_events WHERE chain_id = 'platform' AND action = 'audit.verification_failed' ORDER BY seq");
    expect(rows).toHaveLength(2);
    expect(rows[0]).toEqual({ actor_type: 'operator', outcome: 'failure', details: { firstBad: [{ chainId: tenantA, seq: 6, kind: 'hash_mismatch' }] } });
  });

  it('rejects bad flags with exit 2', async () => {
    const cases: Array<[string[], string | RegExp]> = [
      [['audit:verify', '--tenant', 'acme'], '--tenant: must be a tenant UUID (or platform, for platform events)'],
      [['audit:verify', '--json', 'maybe'], '--json: must be yes or no'],
      [['audit:export', '--tenant', tenantA, '--from', '2025-01-02'], '--to: is required'],
      [['audit:export', '--tenant', tenantA, '--from', 'yesterday', '--to', '2025-01-02'], '--from: must be an ISO-8601 date or time'],
      [['audit:export', '--tenant', tenantA, '--from', '2025-01-02', '--to', '2025-01-01'], '--to: must be after --from'],
      [['audit:export', '--from', '2025-01-01', '--to', '2025-01-02'], '--tenant: is required'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    for (const [i, r] of results.entries()) {
      const [args, message] = cases[i]!;
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: '' });
      if (typeof message === 'string') expect(r.stderr).toContain(message);
      else expect(r.stderr).toMatch(message);
    }
  });

  it('in production, a missing signing key or checkpoint directory is a configuration error', async () => {
    const r = await cli(['audit:verify'], { NODE_ENV: 'production', AUDIT_SIGNING_KEY: '', AUDIT_CHECKPOINT_DIR: '' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('AUDIT_SIGNING_KEY: is required in production');
    expect(r.stderr).toContain('AUDIT_CHECKPOINT_DIR: is required in production');
  });

  it('records every CLI action, refused ones included, with masked arguments', async () => {
    const ok = await cli(['tenants:create', '--name', 'Audited shop']);
    expect(ok.code).toBe(0);
    const refused = await cli(['channels:connect', '--tenant', 'not-a-uuid', '--platform', 'messenger', '--account-id', '123', '--access-token', 'EAAB-never-logged']);
    expect(refused.code).toBe(2);
    const { rows } = await db.ownerPool.query<{ resource: string; outcome: string; reason: string | null; details: unknown }>(
      `SELECT resource, outcome, reason, details FROM audit_events WHERE action = 'cli.command' AND resource IN ('cli:tenants:create', 'cli:channels:connect') ORDER BY id`,
    );
    expect(rows.map((r) => [r.resource, r.outcome])).toEqual([
      ['cli:tenants:create', 'success'],
      ['cli:channels:connect', 'failure'],
    ]);
    expect(rows[1]!.reason).toBe('UsageError');
    expect(JSON.stringify(rows)).not.toContain('EAAB-never-logged');
  });
});
