import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { z } from 'zod';
import { devEnvFile, readEnvFile } from '../src/config';
import { parseMasterKeys, StaticKeyProvider } from '../src/crypto/key-provider';
import { SecretVault } from '../src/crypto/vault';
import { connectChannel } from '../src/db/channels';
import { createPool, type Pool } from '../src/db/pool';
import { addProduct } from '../src/db/products';
import { createTenant, deleteTenant } from '../src/db/tenants';
import { terminateConversations } from './lib/cleanup';
import { controlRequest, WebhookPoster, type PostOutcome } from './lib/http';
import { OUT_NETWORK, OUT_SKIPPED, OUT_TIMEOUT, PhaseLedger, type ReplyAnalysis, type SendCall } from './lib/ledger';
import { CUSTOMER_TEXTS, messengerDelivery, monotonicClock, numericId } from './lib/meta';
import { isLocalUrl, parseBenchOptions, USAGE, UsageError, type BenchOptions } from './lib/options';
import { fmtMs, fmtSummary, summarize, type LatencySummary } from './lib/stats';

/**
 * `npm run bench`: webhook → Temporal → worker → Send API load test against a running `npm start`
 * stack (issue #2). Three phases:
 *
 *   1. baseline    bare Temporal signalWithStart, closed loop: what the Temporal server alone takes;
 *   2. saturation  signed webhooks through the gateway, closed loop: what the gateway accepts;
 *                  then it waits for all their replies (end-to-end throughput; phase 3 starts idle);
 *   3. sustained   signed webhooks at a fixed rate, open loop; every reply is matched at the
 *                  Graph API sandbox to its message: ack latency, inbound → Send API latency,
 *                  missing, late, lost and duplicate replies.
 *
 * Every loop is bounded by a count or a deadline. Only localhost is contacted.
 * Exit codes: 0 done, 1 failed to run, 2 bad flags or settings, 3 ran but replies were lost or duplicated.
 */

const ROOT = path.resolve(__dirname, '..');
const say = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const nowEpoch = () => performance.timeOrigin + performance.now();
const perSec = (n: number, ms: number) => (ms > 0 ? Math.round((n * 10_000) / ms) / 10 : 0);
/** Baseline workflows time out on the server after this; phase 2 waits for that so their timeouts do not load it. */
const BASELINE_RUN_TIMEOUT_MS = 60_000;
/** After the expected replies arrived: time for a late duplicate (a retried send) to show up. */
const DUPLICATE_SETTLE_MS = 3000;
const POLL_MS = 3000;
/** Rows unchanged this long (and all answered) = the stack has finished a phase's work. */
const QUIET_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Settings from .data/dev.env (written by `npm start`); real environment variables win.

const localHostPort = (v: string) => isLocalUrl(v.includes('://') ? v : `http://${v}`);

const settingsSchema = z.object({
  DATABASE_URL: z.string().refine((v) => /^postgres(ql)?:\/\//.test(v) && isLocalUrl(v.replace(/^postgres(ql)?:/, 'http:')), 'must be a postgres:// URL on localhost'),
  META_APP_SECRET: z.string().min(8),
  /** The channel's dummy token is stored through the envelope vault like any other. */
  MASTER_KEYS: z.string().superRefine((spec, ctx) => {
    for (const problem of parseMasterKeys(spec).problems) ctx.addIssue({ code: 'custom', message: problem });
  }),
  TEMPORAL_ADDRESS: z.string().refine(localHostPort, 'must be host:port on localhost'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  GRAPH_API_BASE: z.string().refine(isLocalUrl, 'must be the local Graph API sandbox (http://127.0.0.1:3900), not Meta'),
});
type Settings = z.infer<typeof settingsSchema>;

function loadSettings(): Settings {
  const file = devEnvFile(ROOT);
  const env = Object.fromEntries(Object.entries({ ...readEnvFile(file), ...process.env }).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = settingsSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join('.')}: ${env[String(i.path[0])] === undefined ? 'is missing' : i.message}`);
    throw new UsageError(
      `settings (${path.relative(process.cwd(), file)} and the environment) are not usable:\n${problems.join('\n')}\n` +
        'Start the stack with `npm start` first; it writes that file.',
    );
  }
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------
// Webhook outcomes

interface PostStats {
  sent: number;
  accepted: number;
  /** HTTP status → count, 200 included. */
  statuses: Record<string, number>;
  timeouts: number;
  networkErrors: number;
  /** Open loop only: sends dropped because --max-in-flight requests were outstanding. */
  skipped: number;
  /** Everything that was not a 200. */
  errors: number;
}

const newPostStats = (): PostStats => ({ sent: 0, accepted: 0, statuses: {}, timeouts: 0, networkErrors: 0, skipped: 0, errors: 0 });

/** Counts one outcome; returns the code kept in the ledger (the status, or a negative OUT_* code). */
function countOutcome(s: PostStats, o: PostOutcome): number {
  s.sent++;
  if (o.kind === 'status') {
    s.statuses[o.status] = (s.statuses[o.status] ?? 0) + 1;
    if (o.status === 200) s.accepted++;
    else s.errors++;
    return o.status;
  }
  s.errors++;
  if (o.kind === 'timeout') {
    s.timeouts++;
    return OUT_TIMEOUT;
  }
  s.networkErrors++;
  return OUT_NETWORK;
}

function fmtRequests(s: PostStats): string {
  const other = Object.entries(s.statuses).filter(([k]) => k !== '200').map(([k, n]) => `${n}× HTTP ${k}`);
  const parts = [
    ...other,
    ...(s.timeouts ? [`${s.timeouts} timeouts`] : []),
    ...(s.networkErrors ? [`${s.networkErrors} network errors`] : []),
    ...(s.skipped ? [`${s.skipped} skipped at the in-flight cap`] : []),
  ];
  return `${s.errors} errors${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

/** Runs `total` operations with `concurrency` in flight; each lane takes the next index until none are left. */
async function closedLoop(total: number, concurrency: number, op: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) await op(next++);
    }),
  );
  return performance.now() - started;
}

// ---------------------------------------------------------------------------------------------
// Replies: the sandbox's recorded Send API calls, named by the database

interface ReplySource {
  sandbox: string;
  pool: Pool;
  channelId: string;
}

async function sandboxSendCalls(sandbox: string, sinceMs: number): Promise<SendCall[]> {
  const url = `${sandbox}/_sandbox/requests?since=${Math.floor(sinceMs)}`;
  const records = (await controlRequest<Array<{ method: string; path: string; body: unknown; receivedAt: number; status: number }>>(url, 'GET')) ?? [];
  const calls: SendCall[] = [];
  for (const r of records) {
    if (r.method !== 'POST' || !r.path.endsWith('/messages')) continue;
    const body = (r.body ?? {}) as { recipient?: { id?: unknown }; message?: { metadata?: unknown } };
    const recipient = body.recipient?.id;
    if (typeof recipient !== 'string') continue;
    const meta = body.message?.metadata;
    calls.push({
      recipient,
      receivedAt: r.receivedAt,
      status: r.status,
      outboundId: typeof meta === 'string' && meta.startsWith('sb:out:') ? meta.slice('sb:out:'.length) : null,
    });
  }
  return calls;
}

/** Outbound message id → index of the inbound message it answers (sb:out:<id> → in_reply_to → mid). */
async function replyTargets(src: ReplySource, ledger: PhaseLedger): Promise<Map<string, number>> {
  const { rows } = await src.pool.query<{ id: string; mid: string }>(
    `SELECT o.id, i.mid FROM messages o JOIN messages i ON i.id = o.in_reply_to
     WHERE o.channel_id = $1 AND o.direction = 'outbound' AND i.channel_id = $1 AND i.mid LIKE $2`,
    [src.channelId, `${ledger.midPrefix}%`],
  );
  return new Map(rows.map((r) => [r.id, Number(r.mid.slice(ledger.midPrefix.length))]));
}

async function analyzeReplies(src: ReplySource, ledger: PhaseLedger, sinceMs: number): Promise<ReplyAnalysis> {
  const calls = (await sandboxSendCalls(src.sandbox, sinceMs)).filter((c) => ledger.isOurs(c));
  return ledger.analyze(calls, await replyTargets(src, ledger));
}

/** The phase's conversations as the database sees them: every message that reached a workflow, accepted or not. */
interface PhaseRows {
  inbound: number;
  /** Inbound rows with a reply row that is sent or failed. */
  settled: number;
  pending: number;
}

async function phaseRows(src: ReplySource, ledger: PhaseLedger): Promise<PhaseRows> {
  const { rows } = await src.pool.query<PhaseRows>(
    `SELECT count(*)::int AS inbound,
            count(o.id) FILTER (WHERE o.status <> 'pending')::int AS settled,
            count(o.id) FILTER (WHERE o.status = 'pending')::int AS pending
     FROM messages i LEFT JOIN messages o ON o.in_reply_to = i.id
     WHERE i.channel_id = $1 AND i.direction = 'inbound' AND i.mid LIKE $2`,
    [src.channelId, `${ledger.midPrefix}%`],
  );
  return rows[0]!;
}

interface WaitResult {
  analysis: ReplyAnalysis;
  complete: boolean;
  waitedMs: number;
  rows: PhaseRows;
}

/**
 * Polls (bounded by the deadline) until every accepted message of the phase has a reply. With
 * `quiet`, also until the phase's rows stopped changing for QUIET_MS with every inbound row
 * answered: webhooks answered 503 may still have reached their workflow and be worked on, and
 * the next phase (or the cleanup) must not start under them.
 */
async function waitForReplies(src: ReplySource, ledger: PhaseLedger, sinceMs: number, deadlineMs: number, label: string, quiet: boolean): Promise<WaitResult> {
  const started = performance.now();
  let lastPrint = 0;
  let stableSince = performance.now();
  let previous = '';
  for (;;) {
    const analysis = await analyzeReplies(src, ledger, sinceMs);
    const rows = await phaseRows(src, ledger);
    const now = performance.now();
    const waitedMs = now - started;
    const key = `${rows.inbound}/${rows.settled}/${rows.pending}/${analysis.sendCalls}`;
    if (key !== previous) {
      previous = key;
      stableSince = now;
    }
    const isQuiet = rows.pending === 0 && rows.settled === rows.inbound && now - stableSince >= QUIET_MS;
    if (analysis.missing === 0 && (!quiet || isQuiet)) return { analysis, complete: true, waitedMs, rows };
    if (waitedMs >= deadlineMs) return { analysis, complete: false, waitedMs, rows };
    if (waitedMs - lastPrint >= 30_000) {
      say(`    … ${label}: ${ledger.accepted() - analysis.missing}/${ledger.accepted()} accepted messages replied, ${rows.settled}/${rows.inbound} inbound rows answered after ${Math.round(waitedMs / 1000)} s`);
      lastPrint = waitedMs;
    }
    await sleep(Math.min(POLL_MS, Math.max(100, deadlineMs - waitedMs)));
  }
}

/** Waits for the replies and quiet, then a moment more so a late duplicate is counted. */
async function settleReplies(src: ReplySource, ledger: PhaseLedger, sinceMs: number, deadlineMs: number, label: string): Promise<WaitResult> {
  const w = await waitForReplies(src, ledger, sinceMs, deadlineMs, label, true);
  await sleep(DUPLICATE_SETTLE_MS);
  return { ...w, analysis: await analyzeReplies(src, ledger, sinceMs), rows: await phaseRows(src, ledger) };
}

// ---------------------------------------------------------------------------------------------
// Setup

interface BenchTenant {
  tenantId: string;
  channelId: string;
  pageId: string;
}

async function setupTenant(pool: Pool, settings: Settings, runId: string): Promise<BenchTenant> {
  const tenantId = (await createTenant(pool, `bench ${runId} ${new Date().toISOString()}`)).id;
  const pageId = numericId(9, 14);
  const vault = new SecretVault(pool, StaticKeyProvider.fromSpec(settings.MASTER_KEYS));
  const channelId = (await connectChannel(pool, vault, { tenantId, platform: 'messenger', accountId: pageId, accessToken: `EAAB-bench-dummy-${runId}` })).id;
  await addProduct(pool, tenantId, { name: 'Rain jacket', description: 'Waterproof jacket with hood', price: 89.9, currency: 'EUR', stock: 4 });
  await addProduct(pool, tenantId, { name: 'Trail shoes', description: 'Running shoes for rough ground', price: 129, currency: 'EUR', stock: 12 });
  await addProduct(pool, tenantId, { name: 'Wool beanie', description: 'Merino hat', price: 24.5, currency: 'EUR', stock: 0 });
  return { tenantId, channelId, pageId };
}

/** One customer per conversation, numeric like a PSID: `<phase digit><6 run digits><8-digit index>`. */
function customerIds(phaseDigit: number, runDigits: string, count: number): string[] {
  return Array.from({ length: count }, (_, c) => `${phaseDigit}${runDigits}${String(c).padStart(8, '0')}`);
}

interface Ctx {
  opts: BenchOptions;
  settings: Settings;
  tenant: BenchTenant;
  poster: WebhookPoster;
  replies: ReplySource;
  runId: string;
  nextTimestamp: () => number;
  /** 1-minute load average at the end of each load window: shows what else competed for the CPUs. */
  load: Record<string, number>;
}

function markLoad(ctx: Ctx, name: string): void {
  ctx.load[name] = Math.round(os.loadavg()[0]! * 100) / 100;
}

function post(ctx: Ctx, ledger: PhaseLedger, i: number): Promise<PostOutcome> {
  const d = messengerDelivery(ctx.settings.META_APP_SECRET, ctx.tenant.pageId, ledger.customerOf(i), ledger.mid(i), CUSTOMER_TEXTS[i % CUSTOMER_TEXTS.length]!, ctx.nextTimestamp());
  return ctx.poster.post(d.body, { 'x-hub-signature-256': d.signature });
}

// ---------------------------------------------------------------------------------------------
// Phase 1: bare Temporal signalWithStart

interface BaselineResult {
  ops: number;
  ok: number;
  failed: number;
  firstError?: string;
  elapsedMs: number;
  opsPerSec: number;
  latencyMs: LatencySummary | null;
}

async function runBaseline(ctx: Ctx, client: Client): Promise<BaselineResult> {
  const taskQueue = `bench-baseline-${ctx.runId}`;
  const total = ctx.opts['baseline-ops'];
  const latency = new Float64Array(total);
  let ok = 0;
  let firstError: string | undefined;
  const elapsedMs = await closedLoop(total, ctx.opts.concurrency, async (i) => {
    const t = performance.now();
    try {
      // No worker polls this queue: each run just times out on the server after a minute.
      await client.workflow.signalWithStart('benchBaseline', {
        taskQueue,
        workflowId: `bench-baseline-${ctx.runId}-${i}`,
        args: [],
        signal: 'noop',
        signalArgs: [{}],
        workflowExecutionTimeout: '1 minute',
      });
      latency[ok++] = performance.now() - t;
    } catch (err) {
      firstError ??= (err as Error).message;
    }
  });
  markLoad(ctx, 'baseline');
  return {
    ops: total,
    ok,
    failed: total - ok,
    ...(firstError !== undefined && { firstError }),
    elapsedMs: Math.round(elapsedMs),
    opsPerSec: perSec(ok, elapsedMs),
    latencyMs: summarize(latency.subarray(0, ok)),
  };
}

// ---------------------------------------------------------------------------------------------
// Phase 2: gateway saturation (closed loop), then all its replies

interface SaturationResult {
  ops: number;
  elapsedMs: number;
  acceptedPerSec: number;
  ratioToBaseline: number | null;
  ackMs: LatencySummary | null;
  requests: PostStats;
  replies: ReplyAnalysis & {
    complete: boolean;
    waitedMs: number;
    /** Last Send API call − phase start. */
    lastReplyAfterStartMs: number | null;
    /** Database rows of the phase's messages when the wait ended. */
    rows: PhaseRows;
    /** Accepted messages / (last Send API call − phase start): the whole pipeline's throughput under a burst. */
    repliesPerSec: number;
  };
}

async function runSaturation(ctx: Ctx, customers: string[], baselineOpsPerSec: number | null): Promise<SaturationResult> {
  const total = ctx.opts['saturation-ops'];
  const ledger = new PhaseLedger(total, customers, `m_bench_${ctx.runId}_s_`);
  const stats = newPostStats();
  const startEpoch = nowEpoch();
  const elapsedMs = await closedLoop(total, ctx.opts.concurrency, async (i) => {
    const t = performance.now();
    ledger.sendEpoch[i] = performance.timeOrigin + t;
    const code = countOutcome(stats, await post(ctx, ledger, i));
    ledger.outcome[i] = code;
    if (code === 200) ledger.ackMs[i] = performance.now() - t;
  });
  markLoad(ctx, 'saturation');
  const acceptedPerSec = perSec(stats.accepted, elapsedMs);
  say(`  ${stats.accepted}/${total} accepted in ${(elapsedMs / 1000).toFixed(1)} s; waiting for their replies (≤ ${ctx.opts['drain-wait']} s)…`);
  const w = await settleReplies(ctx.replies, ledger, startEpoch - 1, ctx.opts['drain-wait'] * 1000, 'phase 2');
  const lastReplyAfterStartMs = w.analysis.lastReplyAt === null ? null : Math.round(w.analysis.lastReplyAt - startEpoch);
  const repliedCount = stats.accepted - w.analysis.missing;
  return {
    ops: total,
    elapsedMs: Math.round(elapsedMs),
    acceptedPerSec,
    ratioToBaseline: baselineOpsPerSec ? Math.round((acceptedPerSec / baselineOpsPerSec) * 100) / 100 : null,
    ackMs: ledger.ackSummary(),
    requests: stats,
    replies: {
      ...w.analysis,
      complete: w.complete,
      waitedMs: Math.round(w.waitedMs),
      rows: w.rows,
      lastReplyAfterStartMs,
      repliesPerSec: lastReplyAfterStartMs ? perSec(repliedCount, lastReplyAfterStartMs) : 0,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Phase 3: sustained open loop, every reply matched to its message

interface SustainedResult {
  offeredRate: number;
  durationS: number;
  scheduled: number;
  sendWindowMs: number;
  acceptedPerSec: number;
  ackMs: LatencySummary | null;
  requests: PostStats;
  /** Accepted messages still without a reply after --reply-wait. */
  missingAfterWait: number;
  replyWaitS: number;
  /** After --reply-wait and up to --late-wait more: the final matching (latencies include late replies). */
  final: ReplyAnalysis & {
    complete: boolean;
    waitedMs: number;
    /** Send API calls / accepted webhooks (goal 1.0; above it when non-200 hand-offs reached Temporal anyway). */
    sendCallsPerInbound: number | null;
    /** Successful Send API calls / distinct messages answered: above 1.0 only with duplicates. */
    sendCallsPerRepliedMessage: number | null;
    lateReplies: number;
    /** Database rows of the phase's messages when the wait ended. */
    rows: PhaseRows;
  };
}

async function runSustained(ctx: Ctx, customers: string[]): Promise<SustainedResult> {
  const { opts } = ctx;
  const total = opts.rate * opts.duration;
  const ledger = new PhaseLedger(total, customers, `m_bench_${ctx.runId}_r_`);
  const stats = newPostStats();
  const intervalMs = 1000 / opts.rate;
  let next = 0;
  let inFlight = 0;
  let lastSettled = 0;
  let allSettled: () => void = () => undefined;
  const settled = new Promise<void>((r) => (allSettled = r));

  const t0 = performance.now();
  const epoch0 = performance.timeOrigin + t0;
  const send = (i: number) => {
    const intended = t0 + i * intervalMs;
    ledger.sendEpoch[i] = epoch0 + i * intervalMs;
    if (inFlight >= opts['max-in-flight']) {
      ledger.outcome[i] = OUT_SKIPPED;
      stats.skipped++;
      stats.errors++;
      return;
    }
    inFlight++;
    void post(ctx, ledger, i).then((o) => {
      const now = performance.now();
      const code = countOutcome(stats, o);
      ledger.outcome[i] = code;
      // From the scheduled send time: a late scheduler shows up as latency instead of hiding it.
      if (code === 200) ledger.ackMs[i] = now - intended;
      lastSettled = now;
      if (--inFlight === 0 && next >= total) allSettled();
    });
  };
  // Fixed schedule: message i is due at t0 + i/rate, whatever happened to the earlier ones.
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / intervalMs) + 1);
      while (next < due) send(next++);
      if (next >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });
  const sendWindowMs = performance.now() - t0;
  markLoad(ctx, 'sustained');
  if (inFlight > 0) await settled; // bounded by --request-timeout
  const acceptedPerSec = perSec(stats.accepted, Math.max(sendWindowMs, lastSettled - t0));
  say(`  ${total} sent over ${(sendWindowMs / 1000).toFixed(1)} s, ${stats.accepted} accepted; waiting for replies (≤ ${opts['reply-wait']} s)…`);

  const first = await waitForReplies(ctx.replies, ledger, epoch0 - 1, opts['reply-wait'] * 1000, 'phase 3', false);
  const missingAfterWait = first.analysis.missing;
  if (missingAfterWait > 0) say(`  ${missingAfterWait} accepted messages had no reply after ${opts['reply-wait']} s; waiting up to ${opts['late-wait']} s more to tell late from lost…`);
  // Then until the stack is quiet: messages answered 503 may still be worked on, and the cleanup must not cut them off.
  const final = await settleReplies(ctx.replies, ledger, epoch0 - 1, opts['late-wait'] * 1000, 'phase 3 (late)');
  final.waitedMs += first.waitedMs;
  const a = final.analysis;
  return {
    offeredRate: opts.rate,
    durationS: opts.duration,
    scheduled: total,
    sendWindowMs: Math.round(sendWindowMs),
    acceptedPerSec,
    ackMs: ledger.ackSummary(),
    requests: stats,
    missingAfterWait,
    replyWaitS: opts['reply-wait'],
    final: {
      ...a,
      complete: final.complete,
      waitedMs: Math.round(final.waitedMs),
      rows: final.rows,
      sendCallsPerInbound: stats.accepted > 0 ? Math.round((a.sendCalls / stats.accepted) * 1000) / 1000 : null,
      sendCallsPerRepliedMessage: a.repliedMessages > 0 ? Math.round(((a.sendCalls - a.sendCallsNon200) / a.repliedMessages) * 1000) / 1000 : null,
      lateReplies: missingAfterWait - a.missing,
    },
  };
}

/** Rows the stack wrote for the bench channel, per phase: inbound messages and outbound by status. */
async function databaseCounts(pool: Pool, channelId: string, phases: Record<string, Set<string>>) {
  const { rows } = await pool.query<{ customer_id: string; direction: string; status: string; n: number }>(
    `SELECT c.customer_id, m.direction, m.status, count(*)::int AS n
     FROM messages m JOIN conversations c ON c.id = m.conversation_id
     WHERE m.channel_id = $1 GROUP BY 1, 2, 3`,
    [channelId],
  );
  const out: Record<string, { inbound: number; outbound: Record<string, number> }> = {};
  for (const [name, set] of Object.entries(phases)) {
    const counts = { inbound: 0, outbound: {} as Record<string, number> };
    for (const r of rows) {
      if (!set.has(r.customer_id)) continue;
      if (r.direction === 'inbound') counts.inbound += r.n;
      else counts.outbound[r.status] = (counts.outbound[r.status] ?? 0) + r.n;
    }
    out[name] = counts;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Report

/** The code under test: commit, and whether the work tree had uncommitted changes. */
function codeVersion(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
    const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes' : ''}`;
  } catch {
    return 'unknown';
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model.trim() ?? 'unknown',
    totalMemoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
    date: new Date().toISOString(),
    code: codeVersion(),
  };
}

function replyLine(a: ReplyAnalysis): string {
  return (
    `duplicates ${a.duplicateCalls} · replied twice ${a.repliedTwice} · replies to non-200 webhooks ${a.repliesToUnacknowledged} · ` +
    `out of order ${a.outOfOrder} · unattributed ${a.unattributed} · k-th pairing ${a.pairingChecked - a.pairingMismatches}/${a.pairingChecked} confirmed by the database`
  );
}

function rowsLine(r: PhaseRows, accepted: number): string {
  return `${r.inbound} inbound rows (${r.inbound - accepted} beyond the accepted webhooks), ${r.settled} answered, ${r.pending} replies pending, ${r.inbound - r.settled - r.pending} without a reply row`;
}

async function main(): Promise<number> {
  let opts: BenchOptions | 'help';
  let settings: Settings;
  try {
    opts = parseBenchOptions(process.argv.slice(2));
    if (opts === 'help') {
      say(USAGE);
      return 0;
    }
    settings = loadSettings();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }

  // Preflight: the stack must be up, or every number below would be an error count.
  for (const [what, url] of [['gateway', `${opts.gateway}/readyz`], ['Graph API sandbox', `${settings.GRAPH_API_BASE}/_sandbox/health`]] as const) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(5000) }).then((r) => r.ok, () => false);
    if (!ok) {
      process.stderr.write(`bench: ${what} is not ready at ${url}; start the stack with \`npm start\` and wait for "[switchboard] ready".\n`);
      return 1;
    }
  }

  const runId = randomBytes(4).toString('hex');
  const facts = machine();
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim();
  say(`Switchboard webhook → reply benchmark (run ${runId})`);
  say(`  ${facts.date} · ${facts.cpus} × ${facts.model} · ${facts.totalMemoryGiB} GiB · Node ${facts.node} · load ${facts.loadAverageAtStart.join(' ')}`);
  say(`  ${command}   (code ${facts.code})`);

  const pool = createPool(settings.DATABASE_URL, 2);
  const connection = await Connection.connect({ address: settings.TEMPORAL_ADDRESS });
  const temporal = new Client({ connection, namespace: settings.TEMPORAL_NAMESPACE });
  const poster = new WebhookPoster(opts.gateway, '/webhooks/meta', Math.max(opts.concurrency, 256), opts['request-timeout']);
  try {
    const tenant = await setupTenant(pool, settings, runId);
    const ctx: Ctx = { opts, settings, tenant, poster, runId, nextTimestamp: monotonicClock(), load: {}, replies: { sandbox: settings.GRAPH_API_BASE, pool, channelId: tenant.channelId } };
    const runDigits = numericId(1, 5);
    const saturationCustomers = customerIds(2, runDigits, opts.conversations);
    const sustainedCustomers = customerIds(3, runDigits, opts.conversations);
    say(`  tenant ${tenant.tenantId} · Messenger page ${tenant.pageId} · ${opts.conversations} conversations per phase`);

    say('\nPhase 1 — baseline: bare Temporal signalWithStart (closed loop)');
    let baseline: BaselineResult | null = null;
    if (opts['baseline-ops'] > 0) {
      const done = Date.now();
      baseline = await runBaseline(ctx, temporal);
      say(`  ${baseline.ok}/${baseline.ops} ok → ${baseline.opsPerSec} ops/s · ${fmtSummary(baseline.latencyMs)}${baseline.firstError ? ` · first error: ${baseline.firstError}` : ''}`);
      // Their execution timeouts fire a minute after each start; let them pass before measuring the gateway.
      const until = done + baseline.elapsedMs + BASELINE_RUN_TIMEOUT_MS + 5000;
      say(`  waiting ${Math.round((until - Date.now()) / 1000)} s for the baseline runs to time out on the server…`);
      await sleep(Math.max(0, until - Date.now()));
    } else say('  skipped');

    say('\nPhase 2 — gateway saturation (closed loop)');
    await controlRequest(`${settings.GRAPH_API_BASE}/_sandbox/requests`, 'DELETE');
    const saturation = opts['saturation-ops'] > 0 ? await runSaturation(ctx, saturationCustomers, baseline?.opsPerSec ?? null) : null;
    if (saturation) {
      const r = saturation.replies;
      say(`  ${saturation.acceptedPerSec} accepted events/s${saturation.ratioToBaseline !== null ? ` = ${saturation.ratioToBaseline} × baseline` : ''} · ${fmtRequests(saturation.requests)}`);
      say(`  ack              ${fmtSummary(saturation.ackMs)}`);
      say(`  replies          ${saturation.requests.accepted - r.missing}/${saturation.requests.accepted}${r.complete ? '' : ` (${r.missing} MISSING after ${ctx.opts['drain-wait']} s)`}, last ${fmtMs(r.lastReplyAfterStartMs ?? undefined)} after the phase began → ${r.repliesPerSec} replies/s end to end`);
      say(`  inbound → Send   ${fmtSummary(r.inboundToSendMs)}`);
      say(`  ${replyLine(r)}`);
      say(`  database         ${rowsLine(r.rows, saturation.requests.accepted)}`);
    } else say('  skipped');

    say(`\nPhase 3 — sustained: ${opts.rate} events/s for ${opts.duration} s (open loop)`);
    await controlRequest(`${settings.GRAPH_API_BASE}/_sandbox/requests`, 'DELETE');
    const sustained = await runSustained(ctx, sustainedCustomers);
    const f = sustained.final;
    say(`  ${sustained.acceptedPerSec} accepted events/s · ${fmtRequests(sustained.requests)}`);
    say(`  ack              ${fmtSummary(sustained.ackMs)}`);
    say(`  inbound → Send   ${fmtSummary(f.inboundToSendMs)}`);
    say(`                   p50 of the first quarter of messages ${fmtMs(f.firstQuarterP50 ?? undefined)} → last quarter ${fmtMs(f.lastQuarterP50 ?? undefined)}`);
    say(`  replies          missing after ${sustained.replyWaitS} s: ${sustained.missingAfterWait} · arrived later: ${f.lateReplies} · lost (no reply after ${Math.round(f.waitedMs / 1000)} s): ${f.missing}`);
    say(`  Send API calls   ${f.sendCalls} for ${sustained.requests.accepted} accepted → ${f.sendCallsPerInbound ?? '–'} per accepted inbound (goal 1.0) · ${f.sendCallsPerRepliedMessage ?? '–'} per answered message (${f.repliedMessages})${f.sendCallsNon200 ? ` · ${f.sendCallsNon200} answered non-200` : ''}`);
    say(`  ${replyLine(f)}`);
    say(`  database         ${rowsLine(f.rows, sustained.requests.accepted)}`);
    if (f.missingExamples.length) say(`    lost e.g. ${f.missingExamples.join('; ')}`);
    if (f.duplicateExamples.length) say(`    duplicates e.g. ${f.duplicateExamples.join('; ')}`);

    say(`\n1-minute load average at the end of each load window: ${Object.entries(ctx.load).map(([k, v]) => `${k} ${v}`).join(' · ')} (${facts.cpus} CPUs)`);
    const database = await databaseCounts(pool, tenant.channelId, { saturation: new Set(saturationCustomers), sustained: new Set(sustainedCustomers) });
    say('\nDatabase rows for the bench channel');
    for (const [phase, c] of Object.entries(database)) {
      say(`  ${phase.padEnd(10)} inbound ${c.inbound} · outbound ${Object.entries(c.outbound).map(([s, n]) => `${n} ${s}`).join(', ') || 'none'}`);
    }

    const problems: string[] = [];
    const check = (phase: string, a: ReplyAnalysis & { rows: PhaseRows }, accepted: number, waitedS: number) => {
      const unanswered = a.rows.inbound - a.rows.settled;
      if (unanswered > 0) problems.push(`${phase}: ${unanswered} messages that reached their conversation were not answered after ${waitedS} s (${a.rows.pending} replies pending)`);
      if (a.missing > 0) problems.push(`${phase}: ${a.missing} of ${accepted} accepted messages have no reply after ${waitedS} s`);
      if (a.duplicateCalls > 0) problems.push(`${phase}: ${a.duplicateCalls} duplicate Send API calls (same outbound message sent again)`);
      if (a.repliedTwice > 0) problems.push(`${phase}: ${a.repliedTwice} messages answered by two different outbound messages`);
      if (a.outOfOrder > 0) problems.push(`${phase}: ${a.outOfOrder} replies sent before the reply to an earlier message of the same conversation`);
    };
    if (saturation) check('phase 2', saturation.replies, saturation.requests.accepted, Math.round(saturation.replies.waitedMs / 1000));
    check('phase 3', f, sustained.requests.accepted, Math.round(f.waitedMs / 1000));
    say(problems.length ? `\nCORRECTNESS PROBLEMS\n${problems.map((p) => `  - ${p}`).join('\n')}` : '\nCorrectness: every accepted message got exactly one Send API call, in order.');

    if (!opts.keep) {
      const c = await terminateConversations(pool, temporal, tenant.tenantId, tenant.channelId, opts.concurrency);
      const clean = c.failed === 0 && c.stillRunning === 0;
      // Deleting the tenant under a still-running conversation would leave its activities retrying against nothing.
      const d = clean ? await deleteTenant(pool, tenant.tenantId) : { deleted: false };
      say(
        `\nCleanup: terminated ${c.terminated} of ${c.candidates} bench conversation workflows (${c.alreadyClosed} already closed` +
          `${c.failed ? `, ${c.failed} FAILED` : ''}${c.stillRunning ? `, ${c.stillRunning} STILL RUNNING` : ''}); ` +
          `bench tenant ${d.deleted ? 'deleted' : `kept (${tenant.tenantId})`} (--keep keeps both)`,
      );
    }

    if (opts.out) {
      writeFileSync(opts.out, `${JSON.stringify({ command, runId, machine: facts, options: opts, tenant, loadAverage: ctx.load, baseline, saturation, sustained, database, problems }, null, 2)}\n`);
      say(`\nwrote ${opts.out}`);
    }
    return problems.length ? 3 : 0;
  } finally {
    poster.close();
    await connection.close();
    await pool.end();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
