import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool, Client as PgClient } from 'pg';
import { z } from 'zod';
import { checkpointChains } from '../src/audit/checkpoints';
import { AuditKeyring, AuditSigner } from '../src/audit/keys';
import { appendAuditEvent, appendAuditEvents, type AuditAppendItem } from '../src/audit/log';
import type { AuditEventInput } from '../src/audit/types';
import { verifyChain } from '../src/audit/verify';
import { devEnvFile, readEnvFile } from '../src/config';
import { ensureAppLoginRole, withCredentials } from '../src/db/app-role';
import { migrate } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { summarize, type LatencySummary } from './lib/stats';

/**
 * `npm run bench:audit`: append throughput of the audit log (issue: ≥ 2,000 events/s across 50
 * tenants on this machine). Closed loop: `--concurrency` appenders, each appending one event per
 * call (`appendAuditEvent` with the Pool: coalesced with the other waiting appends, any chains,
 * into `audit_append_batch()` statements outside any scope — the function enters each chain's
 * row-level-security scope in turn: lock, head, INSERT — one commit each), events spread
 * round-robin over `--tenants` chains, as the app role. Afterwards every bench chain is sealed
 * with an ephemeral key and verified (links, hashes, checkpoint), each in its scope.
 *
 * Database: DATABASE_URL (or the running `npm start` stack's, from .data/dev.env). Audit rows can
 * never be deleted, so the bench chains (random tenant ids, no tenants rows) stay in that log;
 * `--scratch` instead creates a throwaway database in the same PostgreSQL server with the owner's
 * credentials (MIGRATION_DATABASE_URL, or the embedded stack's EMBEDDED_PG_PASSWORD from
 * .data/dev.env), migrates it, runs as an app login role, and drops it afterwards.
 */

const USAGE = `usage: npm run bench:audit -- [--events 20000] [--tenants 50] [--concurrency 24] [--batch 1] [--scratch] [--out FILE]`;

const parsed = parseArgs({
  options: {
    events: { type: 'string' },
    tenants: { type: 'string' },
    concurrency: { type: 'string' },
    batch: { type: 'string' },
    warmup: { type: 'string' },
    scratch: { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
  allowPositionals: false,
});
if (parsed.values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const int = (min: number, max: number, dflt: number) => z.coerce.number().int().min(min).max(max).default(dflt);
const optionsResult = z
  .object({
    events: int(100, 2_000_000, 20_000),
    tenants: int(1, 10_000, 50),
    concurrency: int(1, 200, 24),
    /** Events per append call (one transaction); 1 = one transaction per event. */
    batch: int(1, 1000, 1),
    warmup: int(0, 100_000, 500),
    scratch: z.boolean().default(false),
    out: z.string().min(1).optional(),
  })
  .safeParse(parsed.values);
if (!optionsResult.success) {
  process.stderr.write(`${optionsResult.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n')}\n${USAGE}\n`);
  process.exit(2);
}
const options = optionsResult.data;

const env = { ...readEnvFile(devEnvFile()), ...process.env };

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
const fmt = (s: LatencySummary | null) => (s ? `p50 ${s.p50} ms · p95 ${s.p95} ms · p99 ${s.p99} ms · max ${s.max} ms (n=${s.count})` : 'no samples');

function event(tenantId: string, i: number): AuditEventInput {
  return {
    tenantId,
    actor: { type: i % 4 === 0 ? 'meta' : 'system', id: i % 4 === 0 ? undefined : 'worker' },
    action: i % 3 === 0 ? 'token.decrypted' : i % 3 === 1 ? 'webhook.signature_rejected' : 'codec.decode',
    resource: `channel:${tenantId}`,
    outcome: i % 10 === 0 ? 'failure' : 'success',
    reason: i % 10 === 0 ? 'GraphAuthExpired (code 190)' : undefined,
    ip: '203.0.113.10',
    userAgent: 'facebookexternalua',
    requestId: `bench-${i}`,
    details: { purpose: 'send_reply', attempt: 1 + (i % 3), bytes: 512 + (i % 100) },
  };
}

interface Target {
  url: string;
  label: string;
  cleanup: () => Promise<void>;
}

async function scratchTarget(): Promise<Target> {
  let ownerBase = env.MIGRATION_DATABASE_URL;
  if (!ownerBase && env.EMBEDDED_PG_PASSWORD && env.DATABASE_URL) {
    ownerBase = withCredentials(env.DATABASE_URL, 'postgres', env.EMBEDDED_PG_PASSWORD);
  }
  if (!ownerBase) throw new Error('--scratch needs the owner: set MIGRATION_DATABASE_URL, or start the embedded stack with `npm start`');
  const adminUrl = new URL(ownerBase);
  adminUrl.pathname = '/postgres';
  const name = `sb_bench_audit_${randomBytes(4).toString('hex')}`;
  const admin = new PgClient({ connectionString: adminUrl.toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const ownerUrl = new URL(ownerBase);
  ownerUrl.pathname = `/${name}`;
  const ownerPool = createPool(ownerUrl.toString(), 2);
  await migrate(ownerPool);
  const password = randomBytes(16).toString('hex');
  await ensureAppLoginRole(ownerPool, 'sb_bench_app', password);
  await ownerPool.end();
  return {
    url: withCredentials(ownerUrl.toString(), 'sb_bench_app', password),
    label: `scratch database ${name} (same server as DATABASE_URL), app role`,
    cleanup: async () => {
      const c = new PgClient({ connectionString: adminUrl.toString() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Server pids of the pool's connections (all of them: the warm-up opened every one). */
async function backendPids(pool: Pool): Promise<number[]> {
  const clients = await Promise.all(Array.from({ length: options.concurrency }, () => pool.connect()));
  try {
    return await Promise.all(clients.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid));
  } finally {
    for (const c of clients) c.release();
  }
}

/** User + system CPU (ms) of local processes, from /proc; null when they are not visible (remote server). */
function cpuOf(pids: number[]): number | null {
  let ticks = 0;
  try {
    for (const pid of pids) {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    }
  } catch {
    return null;
  }
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/**
 * Counts what the appends cost in database calls while `on`: statements sent on the Pool itself
 * (the coalesced `audit_append_batch`, autocommit) and clients checked out (a scope transaction
 * each: the busy/stale fallbacks). Events per statement is how well appends are coalesced.
 */
function countPoolCalls(pool: Pool): { on: boolean; statements: number; transactions: number } {
  const counts = { on: false, statements: 0, transactions: 0 };
  const target = pool as unknown as { query: (...args: unknown[]) => unknown; connect: (...args: unknown[]) => unknown };
  const query = target.query.bind(pool);
  const connect = target.connect.bind(pool);
  let inQuery = false;
  target.query = (...args) => {
    if (counts.on) counts.statements += 1;
    // Pool.query checks a client out through connect() before it returns: not a transaction.
    inQuery = true;
    try {
      return query(...args);
    } finally {
      inQuery = false;
    }
  };
  target.connect = (...args) => {
    if (counts.on && !inQuery) counts.transactions += 1;
    return connect(...args);
  };
  return counts;
}

async function appendLoop(pool: Pool, tenants: string[], total: number, offset: number, latencies: number[] | null): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (;;) {
      const start = next;
      if (start >= total) return;
      next += options.batch;
      const n = Math.min(options.batch, total - start);
      const t = process.hrtime.bigint();
      if (n === 1) {
        await appendAuditEvent(pool, event(tenants[(offset + start) % tenants.length]!, offset + start));
      } else {
        const items: AuditAppendItem[] = [];
        // One chain per batch (the typical batch: one tenant's events of one request).
        const tenant = tenants[Math.floor((offset + start) / options.batch) % tenants.length]!;
        for (let k = 0; k < n; k++) items.push({ event: event(tenant, offset + start + k) });
        await appendAuditEvents(pool, items);
      }
      latencies?.push(ms(t));
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
}

async function main(): Promise<void> {
  let target: Target;
  if (options.scratch) {
    target = await scratchTarget();
  } else {
    if (!env.DATABASE_URL) throw new Error('DATABASE_URL is not set and .data/dev.env has none: start the stack with `npm start` first');
    target = { url: env.DATABASE_URL, label: 'DATABASE_URL (the bench chains stay in its audit log: rows are never deleted)', cleanup: async () => undefined };
  }
  // Idle connections are kept (idleTimeoutMillis 0), so the backends measured for CPU stay the same.
  const pool = new Pool({ connectionString: target.url, max: options.concurrency, idleTimeoutMillis: 0 });
  pool.on('error', () => undefined);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-audit-'));
  try {
    const ready = await pool.query("SELECT to_regclass('audit_events') IS NOT NULL AS ok");
    if (!ready.rows[0].ok) throw new Error('audit_events does not exist: restart `npm start` to apply migrations/0004_audit_log.sql, or use --scratch');
    const tenants = Array.from({ length: options.tenants }, () => randomUUID());

    // Warm-up: connections, prepared statements, JIT; not measured.
    await appendLoop(pool, tenants, options.warmup, 0, null);

    const latencies: number[] = [];
    const backends = await backendPids(pool);
    const calls = countPoolCalls(pool);
    const pgCpu0 = cpuOf(backends);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    calls.on = true;
    await appendLoop(pool, tenants, options.events, options.warmup, latencies);
    calls.on = false;
    const elapsedMs = ms(t0);
    const cpu = process.cpuUsage(cpu0);
    const pgCpuMs = pgCpu0 === null ? null : (cpuOf(backends)! - pgCpu0);
    const rate = options.events / (elapsedMs / 1000);

    // Seal and verify every bench chain.
    const signer = AuditSigner.fromSpec(randomBytes(32).toString('base64'));
    const tSeal = process.hrtime.bigint();
    await checkpointChains(pool, signer, { dir, everyEvents: 1, everyMs: 0, chains: tenants, force: true });
    const sealMs = ms(tSeal);
    const tVerify = process.hrtime.bigint();
    const reports = [];
    for (const chainId of tenants) reports.push(await verifyChain(pool, chainId, { keyring: new AuditKeyring([signer.publicKey]), dir }));
    const verifyMs = ms(tVerify);
    const total = options.warmup + options.events;
    const counts = reports.map((r) => r.eventsChecked);
    const intact = reports.every((r) => r.ok) && counts.reduce((a, b) => a + b, 0) === total;

    const summary = summarize(latencies);
    const cpuModel = os.cpus()[0]?.model ?? 'unknown';
    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} × ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
      target: target.label,
      options,
      eventsPerSecond: Math.round(rate),
      elapsedMs: Math.round(elapsedMs),
      latencyMs: summary,
      benchProcessCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      /** CPU of the PostgreSQL backends serving the bench (local server only): contention-independent cost. */
      postgresCpuMs: pgCpuMs === null ? null : Math.round(pgCpuMs),
      /** Database calls of the measured appends: statements on the Pool, and scope transactions. */
      calls: { statements: calls.statements, transactions: calls.transactions, eventsPerStatement: +(options.events / Math.max(1, calls.statements)).toFixed(1) },
      chains: { count: reports.length, minEvents: Math.min(...counts), maxEvents: Math.max(...counts), intact },
      sealMs: Math.round(sealMs),
      verify: { ms: Math.round(verifyMs), eventsPerSecond: Math.round(total / (verifyMs / 1000)) },
    };
    process.stdout.write(
      [
        `audit append benchmark — ${result.date}`,
        `machine: ${result.machine}`,
        `target: ${result.target}`,
        `load: ${options.events} events (+${options.warmup} warm-up) over ${options.tenants} tenant chains, ${options.concurrency} concurrent appenders, ${options.batch} event(s) per transaction`,
        `throughput: ${result.eventsPerSecond} events/s (${(elapsedMs / 1000).toFixed(2)} s)`,
        `latency per append call: ${fmt(summary)}`,
        `CPU: bench process ${result.benchProcessCpuMs} ms, PostgreSQL backends ${result.postgresCpuMs ?? 'n/a (not local)'} ms` +
          (result.postgresCpuMs === null ? '' : ` → ${(((result.benchProcessCpuMs + result.postgresCpuMs) / options.events) * 1000).toFixed(0)} µs CPU per event`),
        `database calls: ${calls.statements} statements on the pool (${result.calls.eventsPerStatement} events each), ${calls.transactions} scope transactions`,
        `chains: ${reports.length} × ${result.chains.minEvents}–${result.chains.maxEvents} events, ${intact ? 'all intact (contiguous, links and hashes verified, checkpoint matches)' : 'BROKEN'}`,
        `seal ${reports.length} chains: ${result.sealMs} ms · verify: ${result.verify.ms} ms (${result.verify.eventsPerSecond} events/s)`,
        '',
      ].join('\n'),
    );
    if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
    if (!intact) process.exitCode = 1;
  } finally {
    await pool.end();
    rmSync(dir, { recursive: true, force: true });
    await target.cleanup();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
