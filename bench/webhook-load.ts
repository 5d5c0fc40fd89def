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
import { tenantSql, type Sql } from './lib/tenant-sql';
import { addProduct } from '../src/db/products';
import { createTenant, deleteTenant } from '../src/db/tenants';
import { loadTenantSettings } from '../src/db/tenant-settings';
import { OUTBOUND_METADATA_PREFIX } from '../src/shared/outbound';
import { terminateConversations } from './lib/cleanup';
import { EchoTracker } from './lib/echo';
import { controlRequest, WebhookPoster, type PostOutcome } from './lib/http';
import { OUT_NETWORK, OUT_SKIPPED, OUT_TIMEOUT, PhaseLedger, type OutboundCover, type ReplyAnalysis, type SendCall } from './lib/ledger';
import { CUSTOMER_TEXTS, messengerDelivery, messengerDeliveryReceipt, messengerReaction, messengerReadReceipt, monotonicClock, numericId } from './lib/meta';
import { appliedState, misreadSigns, pickTargets, type AppliedState, type EventTarget } from './lib/non-answerable';
import { openLoop } from './lib/open-loop';
import { isLocalUrl, parseBenchOptions, USAGE, UsageError, type BenchOptions } from './lib/options';
import { fmtMs, fmtSummary, summarize, type LatencySummary } from './lib/stats';

/**
 * `npm run bench`: webhook → Temporal → worker → Send API load test against a running `npm start`
 * stack (issues #2 and #5). Four phases:
 *
 *   1. baseline    bare Temporal signalWithStart, closed loop: what the Temporal server alone takes;
 *   2. saturation  signed webhooks through the gateway, closed loop: what the gateway accepts;
 *                  then it waits for all their replies (end-to-end throughput; phase 3 starts idle);
 *   3. sustained   signed webhooks at a fixed rate, open loop; every Send API call recorded by the
 *                  Graph API sandbox is matched to the messages it answers (metadata sb:out:<row> →
 *                  the row's covers: a debounced burst gets one reply covering all its messages):
 *                  ack latency, inbound → Send API latency per answered message, missing, late,
 *                  lost and duplicate replies;
 *   4. events      for the conversations answered in phase 3 (bounded sample): a reaction to the
 *                  customer's message, a delivery and a read receipt for our reply — stored and
 *                  applied, never answered (goal: 0 Send API calls).
 *
 * Throughout, the sandbox echoes every accepted send back to the gateway as Meta does (--echo):
 * an echo must never be answered nor taken for a human agent's reply.
 *
 * Every loop is bounded by a count or a deadline. Only localhost is contacted.
 * Exit codes: 0 done, 1 failed to run, 2 bad flags or settings, 3 ran but replies were lost or
 * duplicated, or something that is not a customer message (echo, reaction, receipt) was answered.
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
  /** Read-back in the bench tenant's scope. */
  pool: Sql;
  channelId: string;
}

async function sandboxSendCalls(sandbox: string, sinceMs: number): Promise<SendCall[]> {
  const url = `${sandbox}/_sandbox/requests?since=${Math.floor(sinceMs)}`;
  const records =
    (await controlRequest<Array<{ method: string; path: string; body: unknown; receivedAt: number; status: number; messageId?: string }>>(url, 'GET')) ?? [];
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
      outboundId: typeof meta === 'string' && meta.startsWith(OUTBOUND_METADATA_PREFIX) ? meta.slice(OUTBOUND_METADATA_PREFIX.length) : null,
      messageId: r.messageId ?? null,
    });
  }
  return calls;
}

/**
 * The channel's outbound rows, each reduced to the messages of this phase it answers:
 * covers ∪ {in_reply_to} → inbound mids → ledger indexes. Rows covering none of them are kept
 * (empty covers) so a Send API call for one is reported as unattributed, not missed.
 */
async function outboundCovers(src: ReplySource, ledger: PhaseLedger): Promise<OutboundCover[]> {
  const { rows } = await src.pool.query<{ id: string; status: string; author: string; reply_to_mid: string | null; covered_mids: string[] | null }>(
    `SELECT o.id, o.status, o.author, r.mid AS reply_to_mid,
            ARRAY(SELECT i.mid FROM messages i WHERE i.id = ANY (array_append(COALESCE(o.covers, '{}'::uuid[]), o.in_reply_to))) AS covered_mids
     FROM messages o LEFT JOIN messages r ON r.id = o.in_reply_to
     WHERE o.channel_id = $1 AND o.direction = 'outbound'`,
    [src.channelId],
  );
  return rows.map((r) => {
    const covers = [...new Set((r.covered_mids ?? []).map((m) => ledger.indexOfMid(m)).filter((i): i is number => i !== undefined))].sort((x, y) => x - y);
    const inReplyTo = r.reply_to_mid === null ? undefined : ledger.indexOfMid(r.reply_to_mid);
    return { id: r.id, status: r.status, author: r.author, covers, inReplyTo: inReplyTo ?? null };
  });
}

async function analyzeReplies(src: ReplySource, ledger: PhaseLedger, sinceMs: number): Promise<ReplyAnalysis> {
  const calls = (await sandboxSendCalls(src.sandbox, sinceMs)).filter((c) => ledger.isOurs(c));
  return ledger.analyze(calls, await outboundCovers(src, ledger));
}

/** The phase's conversations as the database sees them: every message that reached a workflow, accepted or not. */
interface PhaseRows {
  inbound: number;
  /** Inbound rows covered by a reply row that is past pending (sent, delivered, read, failed, outside_window). */
  settled: number;
  pending: number;
}

async function phaseRows(src: ReplySource, ledger: PhaseLedger): Promise<PhaseRows> {
  // A debounced reply answers several messages: a message is covered through `covers`, not only `in_reply_to`.
  const { rows } = await src.pool.query<PhaseRows>(
    `SELECT count(*)::int AS inbound,
            count(a.status) FILTER (WHERE a.status <> 'pending')::int AS settled,
            count(a.status) FILTER (WHERE a.status = 'pending')::int AS pending
     FROM messages i
     LEFT JOIN LATERAL (
       SELECT o.status FROM messages o
       WHERE o.conversation_id = i.conversation_id AND o.direction = 'outbound'
         AND (o.in_reply_to = i.id OR i.id = ANY (o.covers))
       ORDER BY o.status = 'pending' LIMIT 1
     ) a ON true
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
  /** What the conversations of this tenant run with (tenant defaults unless the bench changed them). */
  sendRatePerSec: number;
  engine: string;
  debounceMs: number;
}

async function setupTenant(pool: Pool, settings: Settings, runId: string, sendRate: number): Promise<BenchTenant> {
  const tenantId = (await createTenant(pool, `bench ${runId} ${new Date().toISOString()}`)).id;
  const pageId = numericId(9, 14);
  const vault = new SecretVault(pool, StaticKeyProvider.fromSpec(settings.MASTER_KEYS));
  const channelId = (await connectChannel(pool, vault, { tenantId, platform: 'messenger', accountId: pageId, accessToken: `EAAB-bench-dummy-${runId}` })).id;
  await addProduct(pool, tenantId, { name: 'Rain jacket', description: 'Waterproof jacket with hood', price: 89.9, currency: 'EUR', stock: 4 });
  await addProduct(pool, tenantId, { name: 'Trail shoes', description: 'Running shoes for rough ground', price: 129, currency: 'EUR', stock: 12 });
  await addProduct(pool, tenantId, { name: 'Wool beanie', description: 'Merino hat', price: 24.5, currency: 'EUR', stock: 0 });
  // One channel carries the whole benchmark, so its send budget is the ceiling of every phase.
  const sql = tenantSql(pool, tenantId);
  if (sendRate > 0) await sql.query('UPDATE channels SET send_rate_per_sec = $2 WHERE id = $1', [channelId, sendRate]);
  const { rows } = await sql.query<{ rate: string }>('SELECT send_rate_per_sec::text AS rate FROM channels WHERE id = $1', [channelId]);
  const agent = (await loadTenantSettings(pool, tenantId)).agent;
  return { tenantId, channelId, pageId, sendRatePerSec: Number(rows[0]!.rate), engine: agent.engine, debounceMs: agent.debounceMs };
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
  /** Echo webhooks the sandbox delivered for the bench page (null with --echo off). */
  echoes: EchoTracker | null;
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
    /** Successful Send API calls / distinct messages answered: 1.0 without bursts, below it when a reply covers several, above it only with duplicates. */
    sendCallsPerRepliedMessage: number | null;
    /** Successful Send API calls / distinct outbound rows sent: above 1.0 only with duplicates (goal exactly 1.0). */
    sendCallsPerReply: number | null;
    lateReplies: number;
    /** Database rows of the phase's messages when the wait ended. */
    rows: PhaseRows;
  };
}

async function runSustained(ctx: Ctx, customers: string[]): Promise<{ result: SustainedResult; ledger: PhaseLedger }> {
  const { opts } = ctx;
  const total = opts.rate * opts.duration;
  const ledger = new PhaseLedger(total, customers, `m_bench_${ctx.runId}_r_`, opts.burst);
  const stats = newPostStats();
  const run = await openLoop(
    total,
    opts.rate,
    opts['max-in-flight'],
    async (i, dueEpoch) => {
      ledger.sendEpoch[i] = dueEpoch;
      const o = await post(ctx, ledger, i);
      const code = countOutcome(stats, o);
      ledger.outcome[i] = code;
      // From the scheduled send time: a late scheduler shows up as latency instead of hiding it.
      if (code === 200) ledger.ackMs[i] = nowEpoch() - dueEpoch;
    },
    (i, dueEpoch) => {
      ledger.sendEpoch[i] = dueEpoch;
      ledger.outcome[i] = OUT_SKIPPED;
      stats.skipped++;
      stats.errors++;
    },
  );
  const { t0, epoch0, sendWindowMs } = run;
  markLoad(ctx, 'sustained');
  await run.settled; // bounded by --request-timeout
  const lastSettled = run.lastSettled();
  const acceptedPerSec = perSec(stats.accepted, Math.max(sendWindowMs, lastSettled - t0));
  say(`  ${total} sent over ${(sendWindowMs / 1000).toFixed(1)} s, ${stats.accepted} accepted; waiting for replies (≤ ${opts['reply-wait']} s)…`);

  const first = await waitForReplies(ctx.replies, ledger, epoch0 - 1, opts['reply-wait'] * 1000, 'phase 3', false);
  const missingAfterWait = first.analysis.missing;
  if (missingAfterWait > 0) say(`  ${missingAfterWait} accepted messages had no reply after ${opts['reply-wait']} s; waiting up to ${opts['late-wait']} s more to tell late from lost…`);
  // Then until the stack is quiet: messages answered 503 may still be worked on, and the cleanup must not cut them off.
  const final = await settleReplies(ctx.replies, ledger, epoch0 - 1, opts['late-wait'] * 1000, 'phase 3 (late)');
  final.waitedMs += first.waitedMs;
  const a = final.analysis;
  const result: SustainedResult = {
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
      sendCallsPerRepliedMessage: a.repliedMessages > 0 ? Math.round((a.sendCallsOk / a.repliedMessages) * 1000) / 1000 : null,
      sendCallsPerReply: a.repliesSent > 0 ? Math.round((a.sendCallsOk / a.repliesSent) * 1000) / 1000 : null,
      lateReplies: missingAfterWait - a.missing,
    },
  };
  return { result, ledger };
}

// ---------------------------------------------------------------------------------------------
// Phase 4: events that are stored and never answered

const EVENT_KINDS = ['reaction', 'delivery', 'read'] as const;
type EventKind = (typeof EVENT_KINDS)[number];
/** After the events are applied: time for a (wrong) answer to one of them to pass the quiet window and reach the Send API. */
const EVENTS_SETTLE_MS = 5000;

interface EventsResult {
  conversations: number;
  scheduled: number;
  requests: PostStats;
  acceptedByKind: Record<EventKind, number>;
  ackMs: LatencySummary | null;
  /** What the database shows for the sampled conversations when the wait ended. */
  applied: AppliedState;
  complete: boolean;
  waitedMs: number;
  /** Send API calls received while phase 4 ran (goal 0): any recipient, and to phase 3's customers. */
  sendCalls: number;
  sendCallsToBenchCustomers: number;
  /** Outbound rows created on the bench channel since phase 4 began (goal 0). */
  outboundRowsCreated: number;
}

function postEvent(ctx: Ctx, kind: EventKind, t: EventTarget): Promise<PostOutcome> {
  const { META_APP_SECRET: secret } = ctx.settings;
  const { pageId } = ctx.tenant;
  const ts = ctx.nextTimestamp();
  // Watermarks are "now": every reply of the conversation was sent before phase 4 began.
  const d =
    kind === 'reaction'
      ? messengerReaction(secret, pageId, t.customer, t.reactToMid, ts)
      : kind === 'delivery'
        ? messengerDeliveryReceipt(secret, pageId, t.customer, t.replyMessageId ? [t.replyMessageId] : [], ts, ts)
        : messengerReadReceipt(secret, pageId, t.customer, ts, ts);
  return ctx.poster.post(d.body, { 'x-hub-signature-256': d.signature });
}

function eventsApplied(st: AppliedState, accepted: Record<EventKind, number>): boolean {
  const stillUnread = (st.outbound['sent'] ?? 0) + (st.outbound['delivered'] ?? 0);
  return (
    EVENT_KINDS.every((k) => (st.events[k] ?? 0) >= accepted[k]) &&
    st.reactionsApplied >= accepted.reaction &&
    // Every reply was sent before the read watermark: once the reads are in, none may stay unread.
    (accepted.read < accepted.reaction || stillUnread === 0)
  );
}

async function runNonAnswerable(ctx: Ctx, targets: EventTarget[], benchCustomers: Set<string>): Promise<EventsResult> {
  const { opts } = ctx;
  const total = targets.length * EVENT_KINDS.length;
  const stats = newPostStats();
  const acceptedByKind: Record<EventKind, number> = { reaction: 0, delivery: 0, read: 0 };
  const ack: number[] = [];
  const startedEpoch = Date.now();
  // Per conversation: the reaction, then the delivery receipt, then the read receipt, 1/rate apart.
  const run = await openLoop(
    total,
    opts['events-rate'],
    opts['max-in-flight'],
    async (j, dueEpoch) => {
      const kind = EVENT_KINDS[j % EVENT_KINDS.length]!;
      const code = countOutcome(stats, await postEvent(ctx, kind, targets[Math.floor(j / EVENT_KINDS.length)]!));
      if (code === 200) {
        acceptedByKind[kind]++;
        ack.push(nowEpoch() - dueEpoch);
      }
    },
    () => {
      stats.skipped++;
      stats.errors++;
    },
  );
  markLoad(ctx, 'events');
  await run.settled;
  say(`  ${total} events sent over ${(run.sendWindowMs / 1000).toFixed(1)} s, ${stats.accepted} accepted; waiting for the database to show them applied (≤ ${opts['events-wait']} s)…`);

  const started = performance.now();
  let applied = await appliedState(ctx.replies.pool, ctx.tenant.channelId, targets);
  let lastPrint = 0;
  for (;;) {
    if (eventsApplied(applied, acceptedByKind)) break;
    const waited = performance.now() - started;
    if (waited >= opts['events-wait'] * 1000) break;
    if (waited - lastPrint >= 30_000) {
      say(`    … phase 4: events ${JSON.stringify(applied.events)} · reactions ${applied.reactionsApplied} · replies ${JSON.stringify(applied.outbound)} after ${Math.round(waited / 1000)} s`);
      lastPrint = waited;
    }
    await sleep(Math.min(POLL_MS, Math.max(100, opts['events-wait'] * 1000 - waited)));
    applied = await appliedState(ctx.replies.pool, ctx.tenant.channelId, targets);
  }
  const waitedMs = performance.now() - started;
  const complete = eventsApplied(applied, acceptedByKind);
  await sleep(EVENTS_SETTLE_MS);
  applied = await appliedState(ctx.replies.pool, ctx.tenant.channelId, targets);
  const calls = await sandboxSendCalls(ctx.replies.sandbox, startedEpoch);
  const signs = await misreadSigns(ctx.replies.pool, ctx.tenant.channelId, `m_bench_${ctx.runId}_`, new Date(startedEpoch));
  return {
    conversations: targets.length,
    scheduled: total,
    requests: stats,
    acceptedByKind,
    ackMs: summarize(ack),
    applied,
    complete,
    waitedMs: Math.round(waitedMs),
    sendCalls: calls.length,
    sendCallsToBenchCustomers: calls.filter((c) => benchCustomers.has(c.recipient)).length,
    outboundRowsCreated: signs.outboundSince,
  };
}

/** Rows the stack wrote for the bench channel, per phase: inbound messages and outbound by status. */
async function databaseCounts(pool: Sql, channelId: string, phases: Record<string, Set<string>>) {
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
    `duplicate calls ${a.duplicateCalls} · messages covered by two replies ${a.coveredTwice} · replies to non-200 webhooks ${a.repliesToUnacknowledged} · ` +
    `out of order ${a.outOfOrder} · Send calls pairing with no customer message ${a.unattributed}${a.inReplyToNotNewest ? ` · in_reply_to not the newest covered: ${a.inReplyToNotNewest}` : ''}`
  );
}

function burstLine(a: ReplyAnalysis): string {
  return `${a.repliesSent} replies sent for ${a.repliedMessages} answered messages; ${a.burstReplies} replies covered a burst (${a.messagesInBurstReplies} messages)`;
}

function rowsLine(r: PhaseRows, accepted: number): string {
  return `${r.inbound} inbound rows (${r.inbound - accepted} beyond the accepted webhooks), ${r.settled} answered, ${r.pending} replies pending, ${r.inbound - r.settled - r.pending} without a reply row`;
}

type Facts = ReturnType<typeof machine>;

/** The JSON output keeps the numbers, not the per-reply list phase 4 sampled from. */
function withoutAnswered<T extends { answered: unknown }>(a: T): Omit<T, 'answered'> {
  const { answered: _answered, ...rest } = a;
  return rest;
}

async function runPhases(ctx: Ctx, pool: Pool, temporal: Client, facts: Facts, command: string, saturationCustomers: string[], sustainedCustomers: string[]): Promise<number> {
  const { opts, settings, tenant, runId } = ctx;
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
    say(`  replies          ${saturation.requests.accepted - r.missing}/${saturation.requests.accepted}${r.complete ? '' : ` (${r.missing} MISSING after ${opts['drain-wait']} s)`}, last ${fmtMs(r.lastReplyAfterStartMs ?? undefined)} after the phase began → ${r.repliesPerSec} replies/s end to end`);
    say(`  inbound → Send   ${fmtSummary(r.inboundToSendMs)}`);
    say(`  ${burstLine(r)}`);
    say(`  ${replyLine(r)}`);
    say(`  database         ${rowsLine(r.rows, saturation.requests.accepted)}`);
  } else say('  skipped');

  say(`\nPhase 3 — sustained: ${opts.rate} events/s for ${opts.duration} s (open loop)${opts.burst > 1 ? `, ${opts.burst} consecutive messages per conversation` : ''}`);
  await controlRequest(`${settings.GRAPH_API_BASE}/_sandbox/requests`, 'DELETE');
  const { result: sustained, ledger: sustainedLedger } = await runSustained(ctx, sustainedCustomers);
  await ctx.echoes?.poll();
  const echoesPhase3 = ctx.echoes?.counts() ?? null;
  const f = sustained.final;
  say(`  ${sustained.acceptedPerSec} accepted events/s · ${fmtRequests(sustained.requests)}`);
  say(`  ack              ${fmtSummary(sustained.ackMs)}`);
  say(`  inbound → Send   ${fmtSummary(f.inboundToSendMs)}   (per answered message, from its webhook's scheduled send)`);
  if (f.burstReplies > 0 && f.inboundToSendSingleMs) say(`    … answered alone ${fmtSummary(f.inboundToSendSingleMs)}`);
  say(`                   p50 of the first quarter of messages ${fmtMs(f.firstQuarterP50 ?? undefined)} → last quarter ${fmtMs(f.lastQuarterP50 ?? undefined)}`);
  say(`  replies          missing after ${sustained.replyWaitS} s: ${sustained.missingAfterWait} · arrived later: ${f.lateReplies} · lost (no reply after ${Math.round(f.waitedMs / 1000)} s): ${f.missing}`);
  say(`                   ${burstLine(f)}`);
  say(
    `  Send API calls   ${f.sendCalls} for ${sustained.requests.accepted} accepted → ${f.sendCallsPerInbound ?? '–'} per accepted inbound · ` +
      `${f.sendCallsPerReply ?? '–'} per reply sent (goal 1.0) · ${f.sendCallsPerRepliedMessage ?? '–'} per answered message (1.0 without bursts)` +
      `${f.sendCallsNon200 ? ` · ${f.sendCallsNon200} answered non-200` : ''}`,
  );
  say(`  ${replyLine(f)}`);
  say(`  database         ${rowsLine(f.rows, sustained.requests.accepted)}`);
  if (echoesPhase3) {
    const failed = Object.entries(echoesPhase3.failed).map(([k, n]) => `${n}× ${k}`);
    say(
      `  echoes           ${echoesPhase3.delivered} echo webhooks delivered to the gateway for ${f.repliesSent} replies sent${failed.length ? ` · failed: ${failed.join(', ')}` : ''}` +
        `${echoesPhase3.gaps ? ` · ${echoesPhase3.gaps} polls found the sandbox's echo log overflowed (counts are a lower bound)` : ''} · Send API calls they caused: ${f.unattributed} (goal 0)`,
    );
  }
  if (f.missingExamples.length) say(`    lost e.g. ${f.missingExamples.join('; ')}`);
  if (f.duplicateExamples.length) say(`    duplicates e.g. ${f.duplicateExamples.join('; ')}`);
  if (f.coveredTwiceExamples.length) say(`    covered twice e.g. ${f.coveredTwiceExamples.join('; ')}`);
  if (f.unattributedExamples.length) say(`    unattributed e.g. ${f.unattributedExamples.join('; ')}`);

  say('\nPhase 4 — non-answerable events: a reaction, a delivery receipt and a read receipt per answered conversation (open loop)');
  const targets = pickTargets(f.answered, opts['events-sample'], (i) => sustainedLedger.mid(i));
  const events = targets.length > 0 ? await runNonAnswerable(ctx, targets, new Set(sustainedCustomers)) : null;
  if (events) {
    const out = events.applied.outbound;
    say(`  ${events.conversations} conversations · ${events.scheduled} events at ${opts['events-rate']}/s · accepted ${EVENT_KINDS.map((k) => `${events.acceptedByKind[k]} ${k}`).join(', ')} · ${fmtRequests(events.requests)}`);
    say(`  ack              ${fmtSummary(events.ackMs)}`);
    say(
      `  applied          ${events.complete ? 'all' : 'NOT ALL'} after ${(events.waitedMs / 1000).toFixed(1)} s: conversation_events ${EVENT_KINDS.map((k) => `${events.applied.events[k] ?? 0} ${k}`).join(', ')} · ` +
        `reactions on ${events.applied.reactionsApplied} customer messages · their replies ${Object.entries(out).map(([st, n]) => `${n} ${st}`).join(', ') || 'none'}`,
    );
    say(`  Send API calls   ${events.sendCalls} during phase 4 (${events.sendCallsToBenchCustomers} to the bench's customers; goal 0) · outbound rows created ${events.outboundRowsCreated} (goal 0)`);
  } else say(opts['events-sample'] > 0 ? '  skipped: no conversation was answered in phase 3' : '  skipped');

  const signs = await misreadSigns(tenantSql(pool, tenant.tenantId), tenant.channelId, `m_bench_${runId}_`, new Date());
  const handoffs = Object.entries(signs.handoffs).map(([k, n]) => `${n} ${k}`);
  say(`\nEchoes and events misread: human-agent rows ${signs.humanAgentRows} · conversations handed to a human ${handoffs.length ? handoffs.join(', ') : 0} · inbound rows the bench did not send ${signs.foreignInbound} (goal 0 each)`);
  const echoTotal = ctx.echoes?.counts() ?? null;
  if (echoTotal) say(`Echoes over the whole run: ${echoTotal.delivered} delivered, ${Object.values(echoTotal.failed).reduce((x, y) => x + y, 0)} failed (of ${echoTotal.attempted} the sandbox attempted for the bench page)`);

  say(`\n1-minute load average at the end of each load window: ${Object.entries(ctx.load).map(([k, v]) => `${k} ${v}`).join(' · ')} (${facts.cpus} CPUs)`);
  const database = await databaseCounts(tenantSql(pool, tenant.tenantId), tenant.channelId, { saturation: new Set(saturationCustomers), sustained: new Set(sustainedCustomers) });
  say('\nDatabase rows for the bench channel');
  for (const [phase, c] of Object.entries(database)) {
    say(`  ${phase.padEnd(10)} inbound ${c.inbound} · outbound ${Object.entries(c.outbound).map(([st, n]) => `${n} ${st}`).join(', ') || 'none'}`);
  }

  const problems: string[] = [];
  const check = (phase: string, a: ReplyAnalysis & { rows: PhaseRows }, accepted: number, waitedS: number) => {
    const unanswered = a.rows.inbound - a.rows.settled;
    if (unanswered > 0) problems.push(`${phase}: ${unanswered} messages that reached their conversation were not answered after ${waitedS} s (${a.rows.pending} replies pending)`);
    if (a.missing > 0) problems.push(`${phase}: ${a.missing} of ${accepted} accepted messages have no reply after ${waitedS} s`);
    if (a.duplicateCalls > 0) problems.push(`${phase}: ${a.duplicateCalls} duplicate Send API calls (same outbound message sent again)`);
    if (a.coveredTwice > 0) problems.push(`${phase}: ${a.coveredTwice} messages covered by two different outbound messages`);
    if (a.outOfOrder > 0) problems.push(`${phase}: ${a.outOfOrder} replies sent before the reply to an earlier message of the same conversation`);
    if (a.unattributed > 0) problems.push(`${phase}: ${a.unattributed} Send API calls pair with no customer message (an echo, reaction or receipt answered?)`);
  };
  if (saturation) check('phase 2', saturation.replies, saturation.requests.accepted, Math.round(saturation.replies.waitedMs / 1000));
  check('phase 3', f, sustained.requests.accepted, Math.round(f.waitedMs / 1000));
  if (events) {
    if (events.sendCalls > 0) problems.push(`phase 4: ${events.sendCalls} Send API calls while only reactions and receipts arrived`);
    if (events.outboundRowsCreated > 0) problems.push(`phase 4: ${events.outboundRowsCreated} outbound rows created while only reactions and receipts arrived`);
    if (!events.complete) problems.push(`phase 4: the events were not all applied after ${opts['events-wait']} s`);
  }
  if (signs.humanAgentRows > 0) problems.push(`${signs.humanAgentRows} outbound rows recorded as a human agent's (an echo of our own send taken for an inbox reply?)`);
  if ((signs.handoffs['inbox_reply'] ?? 0) > 0) problems.push(`${signs.handoffs['inbox_reply']} conversations handed to a human because of an "inbox reply" (echoes of our own sends?)`);
  if (signs.foreignInbound > 0) problems.push(`${signs.foreignInbound} inbound rows the bench did not send (an echo or event stored as a customer message)`);
  say(
    problems.length
      ? `\nCORRECTNESS PROBLEMS\n${problems.map((p) => `  - ${p}`).join('\n')}`
      : '\nCorrectness: every accepted message was answered by exactly one Send API call, in order; no echo, reaction or receipt was answered.',
  );

  if (!opts.keep) {
    const c = await terminateConversations(tenantSql(pool, tenant.tenantId), temporal, tenant.tenantId, tenant.channelId, opts.concurrency);
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
    const json = {
      command,
      runId,
      machine: facts,
      options: opts,
      tenant,
      loadAverage: ctx.load,
      baseline,
      saturation: saturation && { ...saturation, replies: withoutAnswered(saturation.replies) },
      sustained: { ...sustained, final: withoutAnswered(sustained.final) },
      echoes: { phase3: echoesPhase3, total: echoTotal },
      events,
      misread: signs,
      database,
      problems,
    };
    writeFileSync(opts.out, `${JSON.stringify(json, null, 2)}\n`);
    say(`\nwrote ${opts.out}`);
  }
  return problems.length ? 3 : 0;
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
  say(`  ${command}   (work tree now: ${facts.code}; the stack runs the code it was started with)`);

  const pool = createPool(settings.DATABASE_URL, 2);
  const connection = await Connection.connect({ address: settings.TEMPORAL_ADDRESS });
  const temporal = new Client({ connection, namespace: settings.TEMPORAL_NAMESPACE });
  const poster = new WebhookPoster(opts.gateway, '/webhooks/meta', Math.max(opts.concurrency, 256), opts['request-timeout']);
  try {
    const tenant = await setupTenant(pool, settings, runId, opts['send-rate']);
    const echoControl = new EchoTracker(settings.GRAPH_API_BASE, tenant.pageId, Date.now());
    const echoes = opts.echo === 'on' ? echoControl : null;
    const ctx: Ctx = {
      opts,
      settings,
      tenant,
      poster,
      runId,
      nextTimestamp: monotonicClock(),
      load: {},
      echoes,
      replies: { sandbox: settings.GRAPH_API_BASE, pool: tenantSql(pool, tenant.tenantId), channelId: tenant.channelId },
    };
    const runDigits = numericId(1, 5);
    const saturationCustomers = customerIds(2, runDigits, opts.conversations);
    const sustainedCustomers = customerIds(3, runDigits, opts.conversations);
    say(`  tenant ${tenant.tenantId} · Messenger page ${tenant.pageId} · ${opts.conversations} conversations per phase`);
    say(
      `  reply engine ${tenant.engine} · quiet window ${tenant.debounceMs} ms · channel send budget ${tenant.sendRatePerSec}/s` +
        `${opts['send-rate'] > 0 ? ' (set by --send-rate)' : ' (default)'} · echoes ${opts.echo}${opts.burst > 1 ? ` · bursts of ${opts.burst}` : ''}`,
    );
    try {
      // The sandbox posts from its own process: name the gateway by address, not by a name that may resolve to ::1.
      const webhookUrl = new URL('/webhooks/meta', opts.gateway);
      if (webhookUrl.hostname === 'localhost') webhookUrl.hostname = '127.0.0.1';
      await echoControl.configure(echoes ? webhookUrl.toString() : null, settings.META_APP_SECRET);
      echoes?.start();
      return await runPhases(ctx, pool, temporal, facts, command, saturationCustomers, sustainedCustomers);
    } finally {
      await echoes?.stop();
      await echoControl.restore(settings.META_APP_SECRET).catch((err: unknown) => say(`  could not restore the sandbox's echo setting: ${(err as Error).message}`));
    }
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
