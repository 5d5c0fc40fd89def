import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { z } from 'zod';
import { createGatewayApp } from '../src/gateway/app';
import type { ErrorPreset, GraphSandbox, RecordedRequest } from '../src/sandbox/graph-sandbox';
import type { OAuthPersona } from '../src/sandbox/oauth-store';
import type { OnboardingStatus } from '../workflows/onboarding-definitions';
import { parseBenchFlags, runBench } from './lib/cli';
import { startBenchStack } from './lib/stack';
import { summarize } from './lib/stats';

/**
 * `npm run bench:onboarding`: the OAuth success rate of self-service onboarding (issue 7: ≥ 99 %
 * of 200 onboardings succeed without human action while 5 % of Meta's answers are transient
 * faults), and how long one takes.
 *
 * Self-contained: it starts an embedded PostgreSQL, a Temporal dev server (the pinned CLI), the
 * Graph API sandbox, the real worker and the real gateway, all on free local ports, and removes
 * them afterwards; nothing else needs to run. Each onboarding is driven over HTTP the way a
 * browser without JavaScript would: sign up → wait for step 2 → tick the checklist and press
 * connect → open the sandbox's consent dialog and post its Allow form → follow the redirect to
 * the portal's callback → pick the first Page (Facebook) → post the assistant form → poll
 * /portal/status.json until live. Flows alternate Facebook Login / Instagram Login; each
 * onboarding grants its own accounts (a persona set on the sandbox just before its dialog opens).
 *
 * Faults: while the run goes, the sandbox always has one fault queued on one of the three
 * endpoint groups (token exchanges, account listing, subscribed_apps), and a new one is queued
 * whenever the faults so far fall below `--fault-rate` of the calls those groups received: a 500,
 * a dropped connection after 1.5 s, or a 613 throttle. "Without human action" means the saga got
 * from the callback to live without the client pressing anything but what a first-time client
 * presses: a problem shown in step 2, an ended saga or a time-out counts as a failure.
 *
 * Exit codes: 0 the target was met, 3 it was not, 1 the run failed, 2 bad flags.
 */

const USAGE = 'usage: npm run bench:onboarding -- [--onboardings 200] [--concurrency 4] [--fault-rate 0.05] [--flows both|facebook|instagram] [--timeout-s 180] [--out FILE]';
const TARGET_SUCCESS = 0.99;
const POLL_MS = 250;
const say = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const options = parseBenchFlags(
  USAGE,
  ['onboardings', 'concurrency', 'fault-rate', 'flows', 'timeout-s', 'out'],
  z.object({
    onboardings: z.coerce.number().int().min(1).max(10_000).default(200),
    concurrency: z.coerce.number().int().min(1).max(64).default(4),
    faultRate: z.coerce.number().min(0).max(0.5).default(0.05),
    flows: z.enum(['both', 'facebook', 'instagram']).default('both'),
    timeoutS: z.coerce.number().int().min(10).max(3600).default(180),
    out: z.string().optional(),
  }),
);

// ---------------------------------------------------------------------------------------------
// The stack

interface Stack {
  gatewayUrl: string;
  sandbox: GraphSandbox;
  graphVersion: string;
  close(): Promise<void>;
}

async function startStack(): Promise<Stack> {
  let handler: RequestListener = (_req, res) => void res.writeHead(503).end();
  let gatewayUrl = '';
  const stack = await startBenchStack({
    name: 'onboarding',
    // The redirect URI names the gateway's port, so the port is taken before the configuration is made.
    settings: async (sandbox, onClose) => {
      const server: Server = createServer((req, res) => handler(req, res));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      onClose(async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      });
      gatewayUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return {
        OAUTH_REDIRECT_URI: `${gatewayUrl}/portal/oauth/callback`,
        FACEBOOK_DIALOG_BASE: sandbox.url,
        INSTAGRAM_DIALOG_BASE: sandbox.url,
        // Sign-up and sign-in throttles count per IP: every bench client is 127.0.0.1.
        LOGIN_MAX_FAILURES_PER_IP: '100000',
      };
    },
  });
  const { config, pool, temporal, client, codec, logger } = stack;
  try {
    handler = createGatewayApp({ config, pool, temporal: { client, connection: temporal.connection }, codec, logger }).callback();
  } catch (err) {
    await stack.close();
    throw err;
  }
  return { gatewayUrl, sandbox: stack.sandbox, graphVersion: config.GRAPH_API_VERSION, close: stack.close };
}

// ---------------------------------------------------------------------------------------------
// A browser without JavaScript

class Visitor {
  private cookie = '';
  constructor(private readonly base: string) {}

  async req(url: string, init: { method?: string; form?: URLSearchParams; body?: FormData } = {}): Promise<Response> {
    const absolute = url.startsWith('http') ? url : `${this.base}${url}`;
    const headers: Record<string, string> = {};
    // The session cookie goes to the gateway only, never to "Meta".
    if (this.cookie && absolute.startsWith(this.base)) headers.cookie = this.cookie;
    if (init.form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(absolute, { method: init.method ?? (init.form || init.body ? 'POST' : 'GET'), headers, body: init.form?.toString() ?? init.body, redirect: 'manual' });
    const set = res.headers.get('set-cookie');
    if (set && absolute.startsWith(this.base)) this.cookie = set.split(';')[0]!;
    return res;
  }

  async status(): Promise<OnboardingStatus> {
    const res = await this.req('/portal/status.json');
    if (!res.ok) throw new Error(`status.json answered ${res.status}`);
    return (await res.json()) as OnboardingStatus;
  }

  async csrf(): Promise<string> {
    const html = await (await this.req('/portal')).text();
    const m = /name="_csrf" value="([^"]+)"/.exec(html);
    if (!m) throw new Error('no CSRF token on the setup page');
    return m[1]!;
  }
}

const decodeHtml = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** The consent page's Allow form: where it posts and the fields a browser would send (hidden inputs, checked boxes, the button). */
function allowForm(html: string, pageUrl: string): { action: string; form: URLSearchParams } {
  for (const m of html.matchAll(/<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/g)) {
    const [, action, inner] = m;
    if (!/<button[^>]*name="decision"[^>]*value="allow"/.test(inner!)) continue;
    const form = new URLSearchParams();
    for (const input of inner!.matchAll(/<input\b([^>]*)>/g)) {
      const attrs = input[1]!;
      const name = /\bname="([^"]*)"/.exec(attrs)?.[1];
      const value = /\bvalue="([^"]*)"/.exec(attrs)?.[1] ?? 'on';
      const type = /\btype="([^"]*)"/.exec(attrs)?.[1] ?? 'text';
      if (!name || ((type === 'checkbox' || type === 'radio') && !/\bchecked\b/.test(attrs))) continue;
      form.append(decodeHtml(name), decodeHtml(value));
    }
    form.append('decision', 'allow');
    return { action: new URL(decodeHtml(action!), pageUrl).href, form };
  }
  throw new Error('the consent page has no Allow form');
}

// ---------------------------------------------------------------------------------------------
// One onboarding

type Flow = 'facebook' | 'instagram';
interface Outcome {
  i: number;
  flow: Flow;
  ok: boolean;
  /** Sign-up posted → live (ms). */
  ms: number;
  /** Why it did not go live: a problem code, an end state, `timeout` or `error: …`. */
  failure?: string;
}

/** Ids no other onboarding of this run uses (Pages 15 digits, Instagram accounts 17). */
function persona(i: number, flow: Flow): OAuthPersona {
  const n = String(i < 0 ? 999_999 : i).padStart(6, '0');
  if (flow === 'instagram') return { pages: [], instagram: { userId: `178414${n}00001`.padEnd(17, '0'), username: `bench.shop.${i}` } };
  return {
    pages: [
      { id: `9${n}00000001`.padEnd(15, '0'), name: `Bench Shop ${i}`, instagram: { id: `178415${n}00002`.padEnd(17, '0'), username: `bench.linked.${i}` } },
      { id: `8${n}00000002`.padEnd(15, '0'), name: `Bench Other ${i}` },
    ],
  };
}

/** Setting the persona and opening the dialog must not interleave with another onboarding's. */
let dialogLock: Promise<unknown> = Promise.resolve();
function exclusively<T>(fn: () => Promise<T>): Promise<T> {
  const run = dialogLock.then(fn, fn);
  dialogLock = run.catch(() => undefined);
  return run;
}

async function onboard(stack: Stack, i: number, flow: Flow, deadline: number): Promise<Outcome> {
  const v = new Visitor(stack.gatewayUrl);
  const started = performance.now();
  const done = (ok: boolean, failure?: string): Outcome => ({ i, flow, ok, ms: Math.round(performance.now() - started), ...(failure && { failure }) });
  const tag = randomBytes(5).toString('hex');
  const waitFor = async (pred: (s: OnboardingStatus) => boolean): Promise<OnboardingStatus> => {
    for (;;) {
      const s = await v.status().catch(() => undefined);
      if (s && pred(s)) return s;
      if (Date.now() > deadline) throw new Error('timeout');
      await sleep(POLL_MS);
    }
  };
  try {
    const signup = await v.req('/portal/signup', { form: new URLSearchParams({ businessName: `Bench Shop ${i}`, email: `bench-${i}-${tag}@bench.example`, password: `bench passphrase ${tag}` }) });
    if (signup.status !== 303) return done(false, `signup ${signup.status}`);
    await waitFor((s) => s.step === 'awaiting_oauth');
    const connect = await v.req(`/portal/connect?flow=${flow}`, { form: new URLSearchParams({ _csrf: await v.csrf(), req_professional: 'yes', req_page: 'yes', req_admin: 'yes' }) });
    if (connect.status !== 303) return done(false, `connect ${connect.status}`);
    const dialogUrl = connect.headers.get('location')!;
    const consent = await exclusively(async () => {
      stack.sandbox.setOAuthPersona(persona(i, flow));
      const res = await v.req(dialogUrl);
      return { status: res.status, html: await res.text() };
    });
    if (consent.status !== 200) return done(false, `dialog ${consent.status}`);
    const allow = allowForm(consent.html, dialogUrl);
    const decided = await v.req(allow.action, { form: allow.form });
    if (decided.status !== 302) return done(false, `consent ${decided.status}`);
    const callback = await v.req(new URL(decided.headers.get('location')!).href);
    if (callback.status !== 303) return done(false, `callback ${callback.status}`);

    for (;;) {
      const s = await waitFor((x) => x.status !== 'working');
      if (s.step === 'live') return done(true);
      if (s.problem || s.status === 'failed' || s.step === 'awaiting_oauth' || s.step === 'abandoned' || s.step === 'failed' || s.step === 'cancelled') {
        return done(false, s.problem?.code ?? s.step);
      }
      if (s.step === 'selecting_assets') {
        const first = s.assets?.find((a) => !a.connectedElsewhere);
        if (!first) return done(false, 'no selectable asset');
        const res = await v.req('/portal/select', { form: new URLSearchParams({ _csrf: await v.csrf(), account: first.accountId }) });
        if (res.status !== 303) return done(false, `select ${res.status}`);
      } else if (s.step === 'configuring_assistant') {
        const body = new FormData();
        body.set('_csrf', await v.csrf());
        body.set('businessName', `Bench Shop ${i}`);
        body.set('persona', 'Friendly and brief.');
        body.set('language', 'en');
        const res = await v.req('/portal/configure', { body });
        if (res.status !== 303) return done(false, `configure ${res.status}`);
      }
      // Wait for the saga to take the answer before looking again.
      await waitFor((x) => x.step !== s.step || x.status === 'working');
    }
  } catch (err) {
    return done(false, (err as Error).message === 'timeout' ? 'timeout' : `error: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Faults

const GROUPS = {
  token: { test: (p: string) => /\/(oauth\/)?access_token$|\/refresh_access_token$/.test(p), matches: ['/access_token'] },
  accounts: { test: (p: string) => /\/me\/accounts$|^\/v\d+\.\d+\/me$/.test(p), matches: ['/me/accounts', '/me'] },
  subscribed_apps: { test: (p: string) => /\/subscribed_apps$/.test(p), matches: ['/subscribed_apps'] },
} as const;
type Group = keyof typeof GROUPS;
const groupOf = (r: RecordedRequest): Group | undefined => (Object.keys(GROUPS) as Group[]).find((g) => GROUPS[g].test(r.path));
/** What a transient fault looks like here; a 400 in these groups is only ever the injected 613. */
const isFault = (r: RecordedRequest) => r.status === 0 || r.status >= 500 || r.status === 400;

function startFaults(sandbox: GraphSandbox, rate: number) {
  const presets: Array<{ preset: ErrorPreset; delayMs?: number }> = [{ preset: 'server_error' }, { preset: 'server_error' }, { preset: 'timeout', delayMs: 1500 }, { preset: 'rate_limit' }];
  const injected: Record<Group, number> = { token: 0, accounts: 0, subscribed_apps: 0 };
  let n = 0;
  let stopped = false;
  const order: Group[] = ['token', 'accounts', 'subscribed_apps'];
  const tick = () => {
    if (stopped || rate === 0) return;
    const calls = sandbox.requests().filter((r) => groupOf(r) !== undefined).length;
    // One fault always waits ahead, and the total follows `rate` of the calls so far.
    while (n < Math.floor(calls * rate) + 1) {
      const group = order[n % order.length]!;
      const matches = GROUPS[group].matches;
      const { preset, delayMs } = presets[n % presets.length]!;
      sandbox.failNext({ count: 1, preset, match: matches[Math.floor(n / order.length) % matches.length]!, ...(delayMs !== undefined && { delayMs }) });
      injected[group] += 1;
      n += 1;
    }
    setTimeout(tick, 50);
  };
  tick();
  return {
    stop: () => {
      stopped = true;
    },
    injected,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const flows: Flow[] = options.flows === 'both' ? ['facebook', 'instagram'] : [options.flows];
  say(`starting PostgreSQL, Temporal, the Graph sandbox, the worker and the gateway…`);
  const setupStarted = performance.now();
  const stack = await startStack();
  say(`stack up in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s; ${options.onboardings} onboardings, ${options.concurrency} at a time, ${(options.faultRate * 100).toFixed(1)} % faults on token / accounts / subscribed_apps`);
  const outcomes: Outcome[] = [];
  const runStarted = performance.now();
  let faults: ReturnType<typeof startFaults> | undefined;
  try {
    // One onboarding without faults first: the worker's first workflow tasks load the bundle.
    const warm = await onboard(stack, -1, 'facebook', Date.now() + options.timeoutS * 1000);
    if (!warm.ok) throw new Error(`the warm-up onboarding failed (${warm.failure}): the stack does not work, nothing to measure`);
    stack.sandbox.reset();
    faults = startFaults(stack.sandbox, options.faultRate);
    let next = 0;
    const workers = Array.from({ length: options.concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= options.onboardings) return;
        const o = await onboard(stack, i, flows[i % flows.length]!, Date.now() + options.timeoutS * 1000);
        outcomes.push(o);
        if (outcomes.length % 20 === 0 || !o.ok) say(`  ${outcomes.length}/${options.onboardings}${o.ok ? '' : `  #${i} (${o.flow}) failed: ${o.failure}`}`);
      }
    });
    await Promise.all(workers);
  } finally {
    faults?.stop();
  }
  const wallS = (performance.now() - runStarted) / 1000;
  const records = stack.sandbox.requests();
  await stack.close();

  const grouped = records.filter((r) => groupOf(r) !== undefined);
  const faulted = grouped.filter(isFault);
  const byGroup = (Object.keys(GROUPS) as Group[]).map((g) => {
    const calls = grouped.filter((r) => groupOf(r) === g);
    return { group: g, calls: calls.length, faulted: calls.filter(isFault).length };
  });
  const ok = outcomes.filter((o) => o.ok);
  const rate = ok.length / outcomes.length;
  const durations = summarize(ok.map((o) => o.ms));
  const perFlow = flows.map((flow) => {
    const of = outcomes.filter((o) => o.flow === flow);
    return { flow, onboardings: of.length, succeeded: of.filter((o) => o.ok).length, duration: summarize(of.filter((o) => o.ok).map((o) => o.ms)) };
  });
  const failures = Object.entries(outcomes.filter((o) => !o.ok).reduce<Record<string, number>>((acc, o) => ({ ...acc, [o.failure!]: (acc[o.failure!] ?? 0) + 1 }), {}));
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10, node: process.version },
    options,
    onboardings: outcomes.length,
    succeeded: ok.length,
    successRate: rate,
    target: TARGET_SUCCESS,
    durationMs: durations,
    perFlow,
    failures: Object.fromEntries(failures),
    faults: { calls: grouped.length, faulted: faulted.length, rate: grouped.length ? faulted.length / grouped.length : 0, byGroup },
    wallSeconds: Math.round(wallS * 10) / 10,
  };

  say();
  say(`onboardings: ${ok.length} / ${outcomes.length} live without human action = ${(rate * 100).toFixed(1)} % (target ≥ ${TARGET_SUCCESS * 100} %)`);
  if (durations) say(`sign-up → live: p50 ${(durations.p50 / 1000).toFixed(1)} s · p95 ${(durations.p95 / 1000).toFixed(1)} s · max ${(durations.max / 1000).toFixed(1)} s`);
  for (const f of perFlow) say(`  ${f.flow}: ${f.succeeded}/${f.onboardings}${f.duration ? `, p50 ${(f.duration.p50 / 1000).toFixed(1)} s, p95 ${(f.duration.p95 / 1000).toFixed(1)} s` : ''}`);
  say(`faults: ${faulted.length} of ${grouped.length} calls (${(result.faults.rate * 100).toFixed(1)} %): ${byGroup.map((g) => `${g.group} ${g.faulted}/${g.calls}`).join(', ')}`);
  if (failures.length > 0) say(`failures: ${failures.map(([k, n]) => `${k} × ${n}`).join(', ')}`);
  say(`wall time ${result.wallSeconds} s`);
  if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  return rate >= TARGET_SUCCESS ? 0 : 3;
}

runBench('bench:onboarding', main);
