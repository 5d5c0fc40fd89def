import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import { z } from 'zod';
import {
  SANDBOX_APP_ID,
  describeIssues,
  isPlainObject,
  metaError,
  numericId,
  paramError,
  parseOptions,
  metaDate,
  tokenFingerprint,
  unsupportedRequest,
  type AcceptedMessage,
  type GraphCall,
  type GraphErrorFields,
  type GraphRoute,
  type Reply,
} from './graph-common';
import { checkIssuedToken, checkSender, oauthRoutes } from './oauth';
import { authorizeInProcess, dialogErrorPage, dialogFlow, showDialog, submitConsent, type DialogReply } from './oauth-dialog';
import { OAuthStore, DEFAULT_OAUTH_APPS, type OAuthApp, type OAuthPersona, type OAuthStateView, type SeedAccount, type SeededToken } from './oauth-store';

export { SANDBOX_APP_ID, tokenFingerprint } from './graph-common';
export type { GraphErrorFields } from './graph-common';
export {
  DEFAULT_OAUTH_APPS,
  DEFAULT_OAUTH_PERSONA,
  SANDBOX_INSTAGRAM_APP_ID,
  oauthAppsFromConfig,
  type OAuthApp,
  type OAuthFlow,
  type OAuthPersona,
  type OAuthStateView,
  type PersonaPage,
  type PersonaInstagramLogin,
  type SeedAccount,
  type SeededToken,
} from './oauth-store';

/**
 * A local stand-in for Meta's Graph API: the Send API and the OAuth side (dialogs, token
 * endpoints, `/me/accounts`, `/me`, `subscribed_apps`, `debug_token`). Meta is unreachable from
 * CI and dev machines, so tests and the dev stack point GRAPH_API_BASE / INSTAGRAM_API_BASE and
 * the dialog / OAuth bases here: one port serves them all. It answers with the shapes of
 * meta-api-contract.md §3–§5, records every call (tokens, codes and secrets hashed, never in
 * clear) and lets a test queue faults (`failNext`, `POST /_sandbox/faults`) on any Graph call,
 * the OAuth endpoints included (`match` e.g. '/oauth/access_token', '/me/accounts',
 * '/subscribed_apps', '/debug_token'); the dialog pages themselves are never faulted:
 *
 * - Meta errors by preset (`token_expired`, `rate_limit`, `outside_window`, `ig_outside_window`,
 *   `user_unavailable`, `permission_denied`, `server_error`) or as a custom `error` object;
 * - `timeout`: the request is recorded (status 0) but never accepted and never answered; the
 *   socket is dropped after `delayMs` (default 30 s), so the client times out first;
 * - `drop_after_accept`: the message IS accepted — recorded with its `messageId` (status 0) and
 *   echoed — but the socket is dropped without an answer (after `delayMs`, default at once). This
 *   is the ambiguous send that makes POST /messages non-idempotent (§4.2): the customer got the
 *   message and the client cannot know. A request the Send API would refuse is answered normally.
 *   On the OAuth endpoints the same holds for a call that changes state: a code exchange redeems
 *   the code (the retry gets 36009), a token exchange mints a token, a subscription is made.
 *
 * OAuth (oauth-dialog.ts, oauth.ts, oauth-store.ts; contract §5):
 * - `GET /{ver}/dialog/oauth` (Facebook Login, `scope` or `config_id`) and `GET /oauth/authorize`
 *   (Instagram Login) show an HTML consent page (no JavaScript) listing the persona's assets, with
 *   Allow / Cancel buttons in forms posting back; Allow → 302 `redirect_uri?code=…&state=…`
 *   (Instagram: `#_` appended), Cancel → `?error=access_denied&error_reason=user_denied&…`.
 *   Codes: single use, 1 h, bound to the app, the redirect URI and a PKCE challenge if one was sent.
 * - Facebook: `GET /{ver}/oauth/access_token` (code → `EAAB…` user token, 5400 s;
 *   `grant_type=fb_exchange_token` → 5183944 s), `/me/accounts` (Page tokens, `EAAB…`, distinct per
 *   Page, never expiring from a long-lived user token), `/{page-id}`, `/me`.
 *   Instagram: `POST /oauth/access_token` (form or multipart; errors in api.instagram.com's flat
 *   `{error_type, code, error_message}` shape) → `IGAA…` token + the app-scoped `user_id`;
 *   `GET /access_token?grant_type=ig_exchange_token`; `GET /refresh_access_token` (≥ 24 h old);
 *   `GET /{ver}/me?fields=user_id,username,account_type`.
 * - `POST|GET|DELETE /{ver}/{page-id|me}/subscribed_apps` (Page or Instagram token),
 *   `GET /{ver}/debug_token?input_token&access_token=<app id>|<app secret>`.
 * - Every call with a token the sandbox issued is checked: expired → 190/463; `appsecret_proof`
 *   (hex HMAC-SHA256 of the token keyed with its app's secret) when present or required by the
 *   app → 100 if wrong. Unknown tokens get 190 on the OAuth endpoints; the Send API still takes
 *   any token (the CLI's hand-typed ones), but an issued one sends only as its own account.
 * - Apps: `oauthApps` option / `setOAuthApps` / `POST /_sandbox/oauth/apps` (default
 *   DEFAULT_OAUTH_APPS; `oauthAppsFromConfig` maps META_APP_ID/SECRET, INSTAGRAM_APP_ID/SECRET).
 *   Assets: `setOAuthPersona` / `POST /_sandbox/oauth/persona` (default DEFAULT_OAUTH_PERSONA: two
 *   Pages, the first with a linked Instagram account, and an Instagram-Login account). State:
 *   `oauthState()` / `GET /_sandbox/oauth` (subscriptions per account, token fingerprints).
 *   Without a browser: `authorize(dialogUrl)` / `POST /_sandbox/oauth/authorize` → the redirect
 *   location. Expiry in tests: `advanceOAuthClock(ms)` / `POST /_sandbox/oauth/clock`.
 * - A password change: `invalidateTokens(accountId)` / `POST /_sandbox/oauth/invalidate
 *   {accountId}` (a Page id, an Instagram account id or a Facebook user id) kills every token of
 *   the account issued so far, and every hand-typed Send API token sending as it (seen before or
 *   not: the sandbox cannot tell an old one from a new one): every Graph call with one answers
 *   190/460, `debug_token` says `is_valid: false`, a refresh fails with 190. Tokens the sandbox
 *   issues afterwards (a reconnect through OAuth) work; `reset()` forgets the invalidation.
 * - Many accounts without dialogs: `seedTokens(accounts)` / `POST /_sandbox/oauth/tokens
 *   {accounts}` mints never-expiring Page tokens and long-lived Instagram tokens (issue and expiry
 *   times chosen, optionally already subscribed) and answers them in clear, for benchmarks.
 * - Every record carries `receivedAt` (epoch ms, wall clock), so a caller can measure call rates.
 *
 * Echoes (`echo` option, `POST|DELETE|GET /_sandbox/echo`): after each accepted Send API message
 * the sandbox POSTs a signed webhook delivery (`X-Hub-Signature-256: sha256=<HMAC of the raw body
 * with appSecret>`, non-ASCII escaped as `\uXXXX` like Meta) to `webhookUrl`, `delayMs` later: a
 * `message_echoes` event in the shape of meta-fixtures/messenger-echo.json — `sender` = the account,
 * `recipient` = the customer, `message{mid, is_echo, app_id, metadata, text}`. The entry id is the
 * account id of the URL path; `/me/messages` resolves through `echo.accounts[].accessToken`, else
 * through the tokens the OAuth endpoints issued (a Page token → its Page, an Instagram token → its
 * account), so a channel connected through onboarding gets echoes without configuration (no
 * match: the echo is skipped and logged in the deliveries). The envelope's `object` is the
 * account's `echo.accounts[].object`, else `instagram` for an Instagram account the sandbox knows
 * (the persona's or a grant's, also when a Page token sends as the Page's linked account) or an
 * Instagram-Login token (`IG…`), and `page` for the rest. Best effort, like Meta: no retries, a
 * failure is only recorded.
 *
 * Usage headers (`usage` option, `POST|DELETE|GET /_sandbox/usage`): every Graph answer carries
 * `X-App-Usage` (zeros unless set) and, when set, `X-Business-Use-Case-Usage`, so clients'
 * adaptive backoff can be driven from a test.
 *
 * `reset()` clears records, faults and echo deliveries, restores echo and usage to the options
 * the sandbox started with, and clears the OAuth state (codes, tokens, subscriptions, clock;
 * persona back to the default). The OAuth apps stay: they are configuration.
 *
 * Adding an endpoint (OAuth, debug_token, subscribed_apps, …) means adding one entry to
 * `graphRoutes`; versioning, auth, body parsing, recording, faults and latency are shared.
 */

// ---------------------------------------------------------------------------------------------
// Public types

const ERROR_PRESET_NAMES = [
  'token_expired',
  'rate_limit',
  'outside_window',
  'ig_outside_window',
  'user_unavailable',
  'permission_denied',
  'server_error',
  'timeout',
  'drop_after_accept',
] as const;

export type ErrorPreset = (typeof ERROR_PRESET_NAMES)[number];

export interface RecordedRequest {
  method: string;
  /** Path without the query string, version prefix kept (e.g. `/v23.0/me/messages`). */
  path: string;
  /** Credentials (`access_token`, `input_token`, `fb_exchange_token`, `client_secret`, `code`, `code_verifier`) as `sha256:` fingerprints. */
  query: Record<string, string>;
  /** Parsed JSON or form body (form fields holding JSON are decoded); raw text if unparseable; null if empty or refused. */
  body: unknown;
  /** Epoch ms. */
  receivedAt: number;
  /** HTTP status we answered; 0 when the call was deliberately left unanswered (`timeout`, `drop_after_accept`). */
  status: number;
  /** The `message_id` of an accepted message (also when the answer was dropped). */
  messageId?: string;
  /** `sha256:` + first 16 hex chars of sha256(token), whichever way the token was passed. */
  tokenHash?: string;
}

export interface FaultSpec {
  /** How many matching Graph calls this fault answers. */
  count: number;
  /** HTTP status; defaults to the preset's (400, or 500 for `server_error`), 400 for a custom `error`. */
  status?: number;
  /** Exactly one of `preset` and `error` must be given. */
  preset?: ErrorPreset;
  error?: GraphErrorFields;
  /** Substring of the request path; absent = any Graph call. */
  match?: string;
  /**
   * Delay before answering; for `timeout`, how long to hold the request before dropping the
   * socket (default 30 000); for `drop_after_accept`, how long after accepting (default 0).
   */
  delayMs?: number;
}

export type WebhookObject = 'page' | 'instagram';

export interface EchoAccount {
  /** Page ID or Instagram professional account ID. */
  id: string;
  /** Webhook `object` of this account's echoes. */
  object?: WebhookObject;
  /** Lets `/me/messages` calls with this token resolve to `id` (kept as a fingerprint only). */
  accessToken?: string;
}

export interface EchoOptions {
  /** Where the signed `message_echoes` deliveries go (the gateway's webhook route). */
  webhookUrl: string;
  /** The Meta app secret the gateway verifies `X-Hub-Signature-256` with. */
  appSecret: string;
  /** Delay between accepting a message and delivering its echo (default 0). */
  delayMs?: number;
  /** `message.app_id` of the echoes (default the fixtures' app, 618273940215567). */
  appId?: number;
  accounts?: EchoAccount[];
}

export interface EchoDelivery {
  mid: string;
  object: WebhookObject;
  /** The entry id; undefined when `/me` could not be resolved. */
  accountId: string | undefined;
  /** Epoch ms of the attempt. */
  at: number;
  /** HTTP status of the webhook's answer; absent when the delivery failed or was skipped. */
  status?: number;
  error?: string;
}

export interface AppUsage {
  call_count: number;
  total_time: number;
  total_cputime: number;
}

export interface BusinessUseCaseUsageEntry {
  type: string;
  call_count: number;
  total_cputime: number;
  total_time: number;
  /** Minutes; Meta sets it when the business object is throttled. */
  estimated_time_to_regain_access?: number;
}

export interface UsageOptions {
  /** `X-App-Usage` (percentages); missing counters are 0. */
  appUsage?: Partial<AppUsage>;
  /** `X-Business-Use-Case-Usage`, keyed by business object id; absent: no header. */
  businessUseCaseUsage?: Record<string, BusinessUseCaseUsageEntry[]>;
}

export interface GraphSandbox {
  url: string;
  port: number;
  requests(): RecordedRequest[];
  /** Clears recorded requests and queued faults. */
  reset(): void;
  /** Queues a fault; throws if the spec is invalid. */
  failNext(spec: FaultSpec): void;
  /** Turns echoes on (or off with null); throws if the options are invalid. */
  setEcho(echo: EchoOptions | null): void;
  /** Echo deliveries attempted so far, oldest first. */
  echoes(): EchoDelivery[];
  /** Resolves when every echo scheduled so far has been delivered (or has failed). */
  echoesSettled(): Promise<void>;
  /** Replaces the usage headers of every later answer; throws if invalid. */
  setUsage(usage: UsageOptions): void;
  /** The assets the next consent grants (a dialog opened before keeps what it showed); throws if invalid. */
  setOAuthPersona(persona: OAuthPersona): void;
  /** Replaces the apps the dialogs and token endpoints know (kept by reset()); throws if invalid. */
  setOAuthApps(apps: OAuthApp[]): void;
  /** Subscriptions per account, tokens issued (fingerprints only), codes, the persona. */
  oauthState(): OAuthStateView;
  /** Moves the OAuth clock forward (code, token and consent expiry; token age for refreshes). */
  advanceOAuthClock(ms: number): void;
  /**
   * Kills the account's tokens issued so far as a password change does (Page id, Instagram
   * account id or Facebook user id): every call with one answers 190/460. Returns how many died.
   */
  invalidateTokens(accountId: string): number;
  /** Mints tokens for accounts without consent dialogs (benchmarks); throws if the input is invalid. */
  seedTokens(accounts: SeedAccount[]): SeededToken[];
  /**
   * Opens `dialogUrl` (a dialog URL as the portal builds it) and answers it as a user would,
   * without a browser; returns the redirect location (`…?code=…&state=…` or `…?error=access_denied…`).
   * `pageIds`: the Pages left checked in the picker (default all). Throws when the dialog would show an error page.
   */
  authorize(dialogUrl: string, decision?: 'allow' | 'cancel', pageIds?: string[]): string;
  close(): Promise<void>;
}

export interface GraphSandboxOptions {
  port?: number;
  host?: string;
  /** Added to every Graph answer, to imitate Meta's latency in benchmarks. */
  latencyMs?: number;
  /** Records kept before the oldest are dropped (default 100 000). */
  maxRecords?: number;
  /** Deliver signed echoes of accepted messages to a webhook. */
  echo?: EchoOptions;
  /** Usage headers on every Graph answer. */
  usage?: UsageOptions;
  /** The apps the OAuth dialogs and token endpoints accept (default DEFAULT_OAUTH_APPS; see oauthAppsFromConfig). */
  oauthApps?: OAuthApp[];
}

// ---------------------------------------------------------------------------------------------
// Constants and error presets

export const MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_MAX_RECORDS = 100_000;
const DEFAULT_TIMEOUT_HOLD_MS = 30_000;
/** Past this we stop draining an oversized upload and drop the socket; the 413 is already lost by then. */
const MAX_DRAIN_BYTES = 16 * MAX_BODY_BYTES;

const DEFAULT_ECHO_TIMEOUT_MS = 10_000;
const MAX_ECHO_RECORDS = 1_000;

const SENDER_ACTIONS = new Set(['typing_on', 'typing_off', 'mark_seen', 'react', 'unreact']);
const MESSAGING_TYPES = new Set(['RESPONSE', 'UPDATE', 'MESSAGE_TAG']);
const MAX_TEXT_CHARS = 2000;
const MAX_METADATA_CHARS = 1000;

type StaticPreset = Exclude<ErrorPreset, 'timeout' | 'drop_after_accept'>;

/** Built per answer because the token-expiry text carries timestamps. */
function presetError(preset: StaticPreset, now: number): { status: number; error: GraphErrorFields } {
  switch (preset) {
    case 'token_expired':
      return {
        status: 400,
        error: {
          message:
            `Error validating access token: Session has expired on ${metaDate(now - 3_600_000)}. ` +
            `The current time is ${metaDate(now)}.`,
          type: 'OAuthException',
          code: 190,
          error_subcode: 463,
        },
      };
    case 'rate_limit':
      return {
        status: 400,
        error: {
          message: 'Calls to this api have exceeded the rate limit.',
          type: 'OAuthException',
          code: 613,
          error_subcode: 2534040,
        },
      };
    case 'outside_window':
      return {
        status: 400,
        error: {
          message:
            '(#10) This message is sent outside of allowed window. Learn more about the new policy here: ' +
            'https://developers.facebook.com/docs/messenger-platform/policy-overview',
          type: 'OAuthException',
          code: 10,
          error_subcode: 2018278,
        },
      };
    case 'ig_outside_window':
      return {
        status: 400,
        error: {
          message: 'This message is sent outside of allowed window.',
          type: 'IGApiException',
          code: 10,
          error_subcode: 2534022,
        },
      };
    case 'user_unavailable':
      return {
        status: 400,
        error: {
          message: "(#551) This person isn't available right now.",
          type: 'OAuthException',
          code: 551,
          error_subcode: 1545041,
        },
      };
    case 'permission_denied':
      return {
        status: 400,
        error: { message: '(#10) Permission denied', type: 'OAuthException', code: 10 },
      };
    case 'server_error':
      return {
        status: 500,
        error: {
          message: 'An unexpected error has occurred. Please retry your request later.',
          type: 'OAuthException',
          code: 2,
          is_transient: true,
        },
      };
  }
}

// ---------------------------------------------------------------------------------------------
// Fault spec validation (shared by failNext and POST /_sandbox/faults)

const graphErrorSchema = z.strictObject({
  message: z.string().min(1),
  type: z.string().min(1),
  code: z.number().int(),
  error_subcode: z.number().int().optional(),
  error_user_title: z.string().optional(),
  error_user_msg: z.string().optional(),
  is_transient: z.boolean().optional(),
});

// Strict so a typo such as `{"counts": 2}` is refused instead of silently queuing the wrong fault.
const faultSpecSchema = z
  .strictObject({
    count: z.number().int().min(1),
    status: z.number().int().min(100).max(599).optional(),
    preset: z.enum(ERROR_PRESET_NAMES).optional(),
    error: graphErrorSchema.optional(),
    match: z.string().min(1).optional(),
    delayMs: z.number().int().min(0).max(600_000).optional(),
  })
  .refine((s) => (s.preset === undefined) !== (s.error === undefined), {
    message: 'exactly one of "preset" or "error" is required',
  });

export function parseFaultSpec(input: unknown): { ok: true; spec: FaultSpec } | { ok: false; error: string } {
  const parsed = faultSpecSchema.safeParse(input);
  return parsed.success ? { ok: true, spec: parsed.data } : { ok: false, error: describeIssues(parsed.error) };
}

// Echo and usage options (shared by the options, the setters and the control routes); strict for
// the same reason as fault specs.

const echoOptionsSchema = z.strictObject({
  webhookUrl: z.url({ protocol: /^https?$/ }),
  appSecret: z.string().min(1),
  delayMs: z.number().int().min(0).max(600_000).optional(),
  appId: z.number().int().positive().optional(),
  accounts: z
    .array(z.strictObject({ id: numericId, object: z.enum(['page', 'instagram']).optional(), accessToken: z.string().min(1).optional() }))
    .optional(),
});

const percentSchema = z.number().min(0);

const usageOptionsSchema = z.strictObject({
  appUsage: z.strictObject({ call_count: percentSchema, total_time: percentSchema, total_cputime: percentSchema }).partial().optional(),
  businessUseCaseUsage: z
    .record(
      numericId,
      z.array(
        z.strictObject({
          type: z.string().min(1),
          call_count: percentSchema,
          total_cputime: percentSchema,
          total_time: percentSchema,
          estimated_time_to_regain_access: z.number().min(0).optional(),
        }),
      ).min(1),
    )
    .optional(),
});

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Fixed-capacity FIFO so recording stays O(1) per request even at the 100 000-record cap. */
class RingBuffer<T> {
  private items: (T | undefined)[] = [];
  private start = 0;
  private size = 0;
  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.size < this.capacity) {
      this.items[(this.start + this.size) % this.capacity] = item;
      this.size++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }

  clear(): void {
    this.items = [];
    this.start = 0;
    this.size = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Body reading and parsing

type BodyRead = { tooLarge: false; raw: Buffer } | { tooLarge: true };

/** Drains an oversized upload instead of answering mid-upload, because clients often see a reset rather than the 413 otherwise. */
function readBody(req: http.IncomingMessage): Promise<BodyRead> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    req.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > MAX_DRAIN_BYTES) {
        req.socket.destroy();
        return;
      }
      if (total <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () =>
      resolve(total > MAX_BODY_BYTES ? { tooLarge: true } : { tooLarge: false, raw: Buffer.concat(chunks, total) }),
    );
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new Error('client went away before the body was complete'));
    });
  });
}

type ParsedBody =
  | { kind: 'empty' }
  | { kind: 'ok'; value: Record<string, unknown> }
  | { kind: 'invalid'; reason: string; raw: string };

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Graph decodes object-typed params that arrive form-encoded (`recipient={"id":"…"}`). */
function decodeFormValue(v: string): unknown {
  const t = v.trim();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return v;
    }
  }
  return v;
}

async function parseGraphBody(raw: Buffer, contentType: string | undefined): Promise<ParsedBody> {
  if (raw.length === 0) return { kind: 'empty' };
  const text = raw.toString('utf8');
  const type = mediaType(contentType);
  if (type === 'application/x-www-form-urlencoded') {
    const value: Record<string, unknown> = {};
    for (const [k, v] of new URLSearchParams(text)) value[k] = decodeFormValue(v);
    return { kind: 'ok', value };
  }
  // Meta's Instagram examples post the code exchange with `curl -F`, and FormData bodies are multipart.
  if (type === 'multipart/form-data') {
    try {
      const form = await new Response(raw, { headers: { 'content-type': contentType! } }).formData();
      const value: Record<string, unknown> = {};
      for (const [k, v] of form) value[k] = typeof v === 'string' ? decodeFormValue(v) : `[file ${v.name}, ${v.size} bytes]`;
      return { kind: 'ok', value };
    } catch (err) {
      return { kind: 'invalid', raw: text, reason: `The multipart body could not be parsed: ${(err as Error).message}` };
    }
  }
  if (type !== 'application/json') {
    return {
      kind: 'invalid',
      raw: text,
      reason: `Unsupported Content-Type "${type || '(none)'}": send application/json, application/x-www-form-urlencoded or multipart/form-data`,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', raw: text, reason: `The request body is not valid JSON: ${(err as Error).message}` };
  }
  if (!isPlainObject(value)) return { kind: 'invalid', raw: text, reason: 'The request body must be a JSON object' };
  return { kind: 'ok', value };
}

/** Parameters that are credentials: recorded as `sha256:` fingerprints, never in clear. */
const SECRET_PARAMS = ['access_token', 'input_token', 'fb_exchange_token', 'client_secret', 'code', 'code_verifier'];

function redactSecrets<T>(fields: Record<string, T>): Record<string, T | string> {
  const copy: Record<string, T | string> = { ...fields };
  for (const name of SECRET_PARAMS) {
    const v = copy[name];
    if (typeof v === 'string' && v !== '') copy[name] = tokenFingerprint(v);
  }
  return copy;
}

function sendDialog(res: http.ServerResponse, reply: DialogReply): void {
  if (res.destroyed || res.writableEnded) return;
  const headers: Record<string, string> = {
    'Cache-Control': 'no-store',
    // No form-action: Chrome applies it to the redirect after the POST, which goes to the app.
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
  };
  if (reply.location !== undefined) {
    res.writeHead(302, { ...headers, Location: reply.location }).end();
    return;
  }
  const html = reply.html ?? '';
  if (reply.status === 405) headers['Allow'] = 'GET, POST';
  res.writeHead(reply.status, { ...headers, 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(Buffer.byteLength(html)) });
  res.end(html);
}

function bearerToken(header: string | undefined): string | undefined {
  // Graph also accepts the legacy "OAuth <token>" scheme.
  const m = /^(?:Bearer|OAuth)\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

// ---------------------------------------------------------------------------------------------
// Graph routes

const graphRoutes: GraphRoute[] = [
  {
    pattern: /^\/(?<node>[^/]+)\/messages$/,
    auth: true,
    methods: { POST: sendMessage },
  },
  // Token endpoints, /me, /me/accounts, subscribed_apps, debug_token (oauth.ts).
  ...oauthRoutes,
];

const VERSION_PREFIX = /^\/(v\d+\.\d+)(?=\/)/;

function sendMessage(call: GraphCall): Reply {
  const node = call.params['node'] ?? '';
  // A literal "undefined" or "null" here is a common client bug; Meta answers 803, so do we.
  if (node !== 'me' && !/^\d+$/.test(node)) {
    return metaError(400, {
      message: `(#803) Some of the aliases you requested do not exist: ${node}`,
      type: 'OAuthException',
      code: 803,
    });
  }
  const wrongSender = checkSender(call, node);
  if (wrongSender) return wrongSender;

  const b = call.body;
  const recipient = b['recipient'];
  if (recipient === undefined) return paramError('The parameter recipient is required');
  if (!isPlainObject(recipient)) return paramError('param recipient must be a JSON object like {"id":"<PSID>"}');
  const recipientId = recipient['id'];
  if (recipientId === undefined) return paramError('param recipient[id] is required');
  if (typeof recipientId !== 'string') {
    return paramError('param recipient[id] must be a string (IDs exceed 2^53; never send them as JSON numbers)');
  }
  if (!/^\d+$/.test(recipientId)) return paramError(`param recipient[id] "${recipientId}" is not a valid ID`, 2018001);

  const message = b['message'];
  const senderAction = b['sender_action'];
  if (message !== undefined && senderAction !== undefined) {
    return paramError('Only one of message or sender_action may be sent in one request');
  }
  if (message === undefined && senderAction === undefined) {
    return paramError('One of the parameters message or sender_action is required');
  }

  if (senderAction !== undefined) {
    if (typeof senderAction !== 'string' || !SENDER_ACTIONS.has(senderAction)) {
      return paramError(`param sender_action must be one of ${[...SENDER_ACTIONS].join(', ')}`);
    }
    return { status: 200, body: { recipient_id: recipientId } };
  }

  if (!isPlainObject(message)) return paramError('param message must be a JSON object');
  const text = message['text'];
  const attachment = message['attachment'];
  if (text === undefined && attachment === undefined) {
    return paramError('Message cannot be empty, must provide valid attachment or text');
  }
  if (text !== undefined) {
    if (typeof text !== 'string' || text.length === 0) return paramError('param message[text] must be a non-empty string');
    if ([...text].length > MAX_TEXT_CHARS) {
      return paramError(`Length of param message[text] must be less than or equal to ${MAX_TEXT_CHARS}`);
    }
  }
  if (attachment !== undefined && (!isPlainObject(attachment) || typeof attachment['type'] !== 'string')) {
    return paramError('param message[attachment] must be an object with a string type');
  }
  const metadata = message['metadata'];
  if (metadata !== undefined && (typeof metadata !== 'string' || metadata.length > MAX_METADATA_CHARS)) {
    return paramError(`param message[metadata] must be a string of at most ${MAX_METADATA_CHARS} characters`);
  }

  const messagingType = b['messaging_type'];
  if (messagingType !== undefined && (typeof messagingType !== 'string' || !MESSAGING_TYPES.has(messagingType))) {
    return paramError(`param messaging_type must be one of ${[...MESSAGING_TYPES].join(', ')}`);
  }
  if (messagingType === 'MESSAGE_TAG' && typeof b['tag'] !== 'string') {
    return paramError('param tag is required when messaging_type is MESSAGE_TAG');
  }

  const messageId = 'm_' + randomBytes(32).toString('base64url');
  return {
    status: 200,
    body: { recipient_id: recipientId, message_id: messageId },
    accepted: {
      node,
      recipientId,
      messageId,
      ...(typeof text === 'string' && { text }),
      ...(typeof metadata === 'string' && { metadata }),
      ...(isPlainObject(attachment) && { attachment }),
    },
  };
}

function routeGraphCall(base: Omit<GraphCall, 'params' | 'graphPath' | 'version' | 'body'>, parsed: ParsedBody): Reply {
  const version = VERSION_PREFIX.exec(base.path)?.[1];
  const graphPath = base.path.replace(VERSION_PREFIX, '');
  let found: { route: GraphRoute; params: Record<string, string> } | undefined;
  for (const route of graphRoutes) {
    const m = route.pattern.exec(graphPath);
    if (m) {
      found = { route, params: { ...m.groups } };
      break;
    }
  }
  if (!found) {
    // Meta resolves the first component as a node and reports what is left over.
    const segments = graphPath.split('/').filter(Boolean);
    const rest = segments.length > 1 ? '/' + segments.slice(1).join('/') : graphPath;
    return metaError(400, { message: `Unknown path components: ${rest}`, type: 'OAuthException', code: 2500 });
  }
  const handler = found.route.methods[base.method];
  if (!handler) return unsupportedRequest(base.method, graphPath.split('/').filter(Boolean)[0] ?? '');
  if (found.route.auth && base.token === undefined) {
    return metaError(400, {
      message: 'An active access token must be used to query information about the current user.',
      type: 'OAuthException',
      code: 2500,
    });
  }
  if (parsed.kind === 'invalid') return paramError(parsed.reason);
  const call: GraphCall = {
    ...base,
    graphPath,
    ...(version === undefined ? {} : { version }),
    params: found.params,
    body: parsed.kind === 'ok' ? parsed.value : {},
  };
  return checkIssuedToken(call) ?? handler(call);
}

// ---------------------------------------------------------------------------------------------
// Echoes and usage headers

/** Echo settings as kept: tokens only as fingerprints, defaults applied. */
interface EchoConfig {
  webhookUrl: string;
  appSecret: string;
  delayMs: number;
  appId: number;
  accounts: Array<{ id: string; object?: WebhookObject; tokenHash?: string }>;
}

function echoConfig(input: unknown): EchoConfig {
  const o = parseOptions(echoOptionsSchema, input, 'echo options');
  return {
    webhookUrl: o.webhookUrl,
    appSecret: o.appSecret,
    delayMs: o.delayMs ?? 0,
    appId: o.appId ?? SANDBOX_APP_ID,
    accounts: (o.accounts ?? []).map((a) => ({
      id: a.id,
      ...(a.object && { object: a.object }),
      ...(a.accessToken && { tokenHash: tokenFingerprint(a.accessToken) }),
    })),
  };
}

/** Meta serializes webhook bodies with non-ASCII escaped; a verifier that re-serializes would fail, as it should. */
function metaJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** The `message_echoes` delivery for an accepted message, in the shape of meta-fixtures/messenger-echo.json. */
function echoDelivery(
  msg: AcceptedMessage,
  config: EchoConfig,
  token: string | undefined,
  now: number,
  oauth: OAuthStore,
): { object: WebhookObject; accountId: string | undefined; body?: string } {
  const tokenHash = token === undefined ? undefined : tokenFingerprint(token);
  const account =
    msg.node === 'me' ? config.accounts.find((a) => a.tokenHash !== undefined && a.tokenHash === tokenHash) : config.accounts.find((a) => a.id === msg.node);
  // Tokens from the OAuth endpoints resolve to their Page / Instagram account without echo.accounts,
  // so a channel connected through onboarding gets its echoes like one configured by hand.
  const issued = oauth.senderFor(msg.node, token);
  const accountId = msg.node === 'me' ? (account?.id ?? issued?.id) : msg.node;
  // Instagram-Login user tokens start with "IG"; Page tokens with "EAA".
  const object: WebhookObject = account?.object ?? issued?.object ?? (token?.startsWith('IG') ? 'instagram' : 'page');
  if (accountId === undefined) return { object, accountId };
  const attachment = msg.attachment;
  const payload = isPlainObject(attachment?.['payload']) ? (attachment['payload'] as Record<string, unknown>) : undefined;
  const body = {
    object,
    entry: [
      {
        id: accountId,
        time: now,
        messaging: [
          {
            sender: { id: accountId },
            recipient: { id: msg.recipientId },
            timestamp: now,
            message: {
              mid: msg.messageId,
              is_echo: true,
              app_id: config.appId,
              ...(msg.metadata !== undefined && { metadata: msg.metadata }),
              ...(msg.text !== undefined && { text: msg.text }),
              ...(attachment && {
                attachments: [{ type: attachment['type'], payload: typeof payload?.['url'] === 'string' ? { url: payload['url'] } : {} }],
              }),
            },
          },
        ],
      },
    ],
  };
  return { object, accountId, body: metaJson(body) };
}

function usageHeaders(usage: UsageOptions): Record<string, string> {
  const app = { call_count: 0, total_time: 0, total_cputime: 0, ...usage.appUsage };
  return {
    'X-App-Usage': JSON.stringify(app),
    ...(usage.businessUseCaseUsage && { 'X-Business-Use-Case-Usage': JSON.stringify(usage.businessUseCaseUsage) }),
  };
}

// ---------------------------------------------------------------------------------------------
// Server

interface QueuedFault {
  spec: FaultSpec;
  remaining: number;
}

export async function startGraphSandbox(opts: GraphSandboxOptions = {}): Promise<GraphSandbox> {
  const host = opts.host ?? '127.0.0.1';
  const latencyMs = Math.max(0, opts.latencyMs ?? 0);
  const records = new RingBuffer<RecordedRequest>(Math.max(1, opts.maxRecords ?? DEFAULT_MAX_RECORDS));
  let faults: QueuedFault[] = [];
  // Tracked so close() can cancel held/delayed answers; otherwise a 30 s timeout fault keeps jest alive.
  const timers = new Set<NodeJS.Timeout>();
  let closed: Promise<void> | undefined;
  const initialEcho = opts.echo ? echoConfig(opts.echo) : null;
  const initialUsage = parseOptions(usageOptionsSchema, opts.usage ?? {}, 'usage options');
  let echo: EchoConfig | null = initialEcho;
  let usage: UsageOptions = initialUsage;
  const oauth = new OAuthStore(opts.oauthApps ?? DEFAULT_OAUTH_APPS);
  const echoLog = new RingBuffer<EchoDelivery>(MAX_ECHO_RECORDS);
  // Scheduled and in-flight echoes, each with a way to give up on it when the sandbox closes.
  const pendingEchoes = new Map<Promise<void>, () => void>();

  function later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  }

  function failNext(spec: FaultSpec): void {
    const parsed = parseFaultSpec(spec);
    if (!parsed.ok) throw new Error(`invalid fault spec: ${parsed.error}`);
    faults.push({ spec: parsed.spec, remaining: parsed.spec.count });
  }

  function takeFault(path: string): FaultSpec | undefined {
    const idx = faults.findIndex((f) => f.spec.match === undefined || path.includes(f.spec.match));
    if (idx < 0) return undefined;
    const f = faults[idx]!;
    f.remaining--;
    if (f.remaining <= 0) faults.splice(idx, 1);
    return f.spec;
  }

  /** Schedules the echo of an accepted message; never throws, failures end up in the echo log. */
  function scheduleEcho(msg: AcceptedMessage, token: string | undefined): void {
    const config = echo;
    if (!config || closed) return;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const timer = later(config.delayMs, () => {
      deliverEcho(msg, config, token).finally(() => {
        pendingEchoes.delete(done);
        settle();
      });
    });
    pendingEchoes.set(done, () => {
      clearTimeout(timer);
      timers.delete(timer);
      settle();
    });
  }

  async function deliverEcho(msg: AcceptedMessage, config: EchoConfig, token: string | undefined): Promise<void> {
    const at = Date.now();
    let entry: EchoDelivery | undefined;
    try {
      const delivery = echoDelivery(msg, config, token, at, oauth);
      entry = { mid: msg.messageId, object: delivery.object, accountId: delivery.accountId, at };
      if (delivery.body === undefined) {
        entry.error = 'cannot resolve /me to an account: pass echo.accounts with its accessToken';
        return;
      }
      const signature = 'sha256=' + createHmac('sha256', config.appSecret).update(delivery.body, 'utf8').digest('hex');
      const res = await fetch(config.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
        body: delivery.body,
        signal: AbortSignal.timeout(DEFAULT_ECHO_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      entry.status = res.status;
    } catch (err) {
      entry ??= { mid: msg.messageId, object: 'page', accountId: undefined, at };
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message;
      entry.error = `${(err as Error).name ?? 'Error'}${why ? ` (${why})` : ''}`;
    } finally {
      if (entry) echoLog.push(entry);
    }
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown, graph: boolean): void {
    if (res.destroyed || res.writableEnded) return;
    if (graph) for (const [name, value] of Object.entries(usageHeaders(usage))) res.setHeader(name, value);
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': graph ? 'application/json; charset=UTF-8' : 'application/json',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  function answerGraph(res: http.ServerResponse, reply: Reply, extraDelayMs: number): void {
    const delay = latencyMs + extraDelayMs;
    if (delay > 0) later(delay, () => sendJson(res, reply.status, reply.body, true));
    else sendJson(res, reply.status, reply.body, true);
  }

  async function handleGraph(req: http.IncomingMessage, res: http.ServerResponse, receivedAt: number): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    // Split by hand: new URL() would read a path like "//host/x" as a protocol-relative URL.
    const path = q < 0 ? url : url.slice(0, q);
    const query: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(q < 0 ? '' : url.slice(q + 1))) query[k] = v;

    const read = await readBody(req);
    const parsed: ParsedBody = read.tooLarge ? { kind: 'empty' } : await parseGraphBody(read.raw, req.headers['content-type']);

    const bodyToken =
      parsed.kind === 'ok' && typeof parsed.value['access_token'] === 'string' ? parsed.value['access_token'] : undefined;
    const token = query['access_token'] || bearerToken(req.headers.authorization) || bodyToken || undefined;
    const tokenHash = token === undefined ? undefined : tokenFingerprint(token);

    const recordedQuery = redactSecrets(query);
    let recordedBody: unknown = null;
    if (parsed.kind === 'ok') {
      recordedBody = redactSecrets(parsed.value);
    } else if (parsed.kind === 'invalid') {
      recordedBody = token && tokenHash ? parsed.raw.split(token).join(tokenHash) : parsed.raw;
    }

    const record = (status: number, messageId?: string) =>
      records.push({
        method,
        path,
        query: recordedQuery,
        body: recordedBody,
        receivedAt,
        status,
        ...(tokenHash === undefined ? {} : { tokenHash }),
        ...(messageId === undefined ? {} : { messageId }),
      });

    if (read.tooLarge) {
      const reply = metaError(413, {
        message: `(#1) Request body exceeds ${MAX_BODY_BYTES} bytes`,
        type: 'OAuthException',
        code: 1,
      });
      record(reply.status);
      res.setHeader('Connection', 'close');
      answerGraph(res, reply, 0);
      return;
    }

    // The dialogs are pages a person looks at, not Graph calls: never faulted, never delayed.
    const flow = dialogFlow(path);
    if (flow) {
      const reply = dialogReply(flow, method, path, query, read.raw, req.headers['content-type']);
      record(reply.status);
      sendDialog(res, reply);
      return;
    }

    const fault = takeFault(path);
    if (fault?.preset === 'timeout') {
      record(0);
      // Dropping the socket (not answering 5xx) is what makes the send ambiguous for the client.
      const t = later(fault.delayMs ?? DEFAULT_TIMEOUT_HOLD_MS, () => req.socket.destroy());
      res.on('close', () => {
        clearTimeout(t);
        timers.delete(t);
      });
      return;
    }
    if (fault && fault.preset !== 'drop_after_accept') {
      const base = fault.preset ? presetError(fault.preset, Date.now()) : { status: 400, error: fault.error! };
      const reply = metaError(fault.status ?? base.status, base.error);
      record(reply.status);
      answerGraph(res, reply, fault.delayMs ?? 0);
      return;
    }

    const reply = routeGraphCall({ method, path, query, oauth, ...(token === undefined ? {} : { token }) }, parsed);
    if (reply.accepted) scheduleEcho(reply.accepted, token);
    if (fault?.preset === 'drop_after_accept' && (reply.accepted || reply.committed)) {
      record(0, reply.accepted?.messageId);
      // Accepted (a message sent, a code redeemed, …), then the answer is lost: the client cannot know.
      const drop = () => void req.socket.destroy();
      if (!fault.delayMs) return drop();
      const t = later(fault.delayMs, drop);
      res.on('close', () => {
        clearTimeout(t);
        timers.delete(t);
      });
      return;
    }
    record(reply.status, reply.accepted?.messageId);
    answerGraph(res, reply, 0);
  }

  function dialogReply(
    flow: 'facebook' | 'instagram',
    method: string,
    path: string,
    query: Record<string, string>,
    raw: Buffer,
    contentType: string | undefined,
  ): DialogReply {
    if (method === 'GET') return showDialog(oauth, flow, path, query);
    if (method !== 'POST') return { status: 405, html: dialogErrorPage('Method not allowed', `${method} is not supported here.`) };
    if (mediaType(contentType) !== 'application/x-www-form-urlencoded') {
      return { status: 415, html: dialogErrorPage('Unsupported form', 'Submit the consent form as application/x-www-form-urlencoded.') };
    }
    // Parsed again here: the Graph body parser keeps one value per name, the Page picker sends several.
    return submitConsent(oauth, flow, new URLSearchParams(raw.toString('utf8')));
  }

  // Control routes: plain JSON for tests and the dev stack; never recorded, never faulted.
  type ControlHandler = (url: URL, body: unknown) => Reply;
  const controlRoutes: Record<string, Partial<Record<string, ControlHandler>>> = {
    '/_sandbox/health': { GET: () => ({ status: 200, body: { ok: true } }) },
    '/_sandbox/requests': {
      GET: (url) => {
        const sinceRaw = url.searchParams.get('since');
        if (sinceRaw === null) return { status: 200, body: records.toArray() };
        const since = Number(sinceRaw);
        if (sinceRaw.trim() === '' || !Number.isFinite(since)) {
          return { status: 400, body: { error: `since must be epoch milliseconds, got "${sinceRaw}"` } };
        }
        return { status: 200, body: records.toArray().filter((r) => r.receivedAt >= since) };
      },
      DELETE: () => {
        records.clear();
        return { status: 204 };
      },
    },
    '/_sandbox/echo': {
      GET: () => ({
        status: 200,
        body: {
          // The app secret stays out: the dev sandbox may listen beyond localhost.
          echo: echo && { webhookUrl: echo.webhookUrl, delayMs: echo.delayMs, appId: echo.appId, accounts: echo.accounts },
          deliveries: echoLog.toArray(),
        },
      }),
      POST: (_url, body) => {
        if (body === null) {
          echo = null;
          return { status: 204 };
        }
        try {
          echo = echoConfig(body);
        } catch (err) {
          return { status: 400, body: { error: (err as Error).message } };
        }
        return { status: 204 };
      },
      DELETE: () => {
        echo = null;
        return { status: 204 };
      },
    },
    '/_sandbox/usage': {
      GET: () => ({ status: 200, body: usage }),
      POST: (_url, body) => {
        try {
          usage = parseOptions(usageOptionsSchema, body ?? {}, 'usage options');
        } catch (err) {
          return { status: 400, body: { error: (err as Error).message } };
        }
        return { status: 204 };
      },
      DELETE: () => {
        usage = {};
        return { status: 204 };
      },
    },
    '/_sandbox/faults': {
      POST: (_url, body) => {
        const parsed = parseFaultSpec(body);
        if (!parsed.ok) return { status: 400, body: { error: `invalid fault spec: ${parsed.error}` } };
        faults.push({ spec: parsed.spec, remaining: parsed.spec.count });
        return { status: 204 };
      },
      DELETE: () => {
        faults = [];
        return { status: 204 };
      },
    },
    '/_sandbox/oauth': {
      GET: () => ({ status: 200, body: oauth.view() }),
      DELETE: () => {
        oauth.reset();
        return { status: 204 };
      },
    },
    '/_sandbox/oauth/persona': {
      GET: () => ({ status: 200, body: oauth.persona() }),
      POST: (_url, body) => refusing400(() => oauth.setPersona(body)),
    },
    '/_sandbox/oauth/apps': {
      // Secrets stay out, as for /_sandbox/echo.
      GET: () => ({ status: 200, body: oauth.appsView() }),
      POST: (_url, body) => refusing400(() => oauth.setApps(body)),
    },
    '/_sandbox/oauth/clock': {
      POST: (_url, body) => {
        const parsed = z.strictObject({ advanceMs: z.number().int().min(0) }).safeParse(body);
        if (!parsed.success) return { status: 400, body: { error: `invalid clock change: ${describeIssues(parsed.error)}` } };
        oauth.advanceClock(parsed.data.advanceMs);
        return { status: 200, body: { clockOffsetMs: oauth.view().clockOffsetMs } };
      },
    },
    '/_sandbox/oauth/invalidate': {
      POST: (_url, body) => {
        const parsed = z.strictObject({ accountId: numericId }).safeParse(body);
        if (!parsed.success) return { status: 400, body: { error: `invalid invalidation: ${describeIssues(parsed.error)}` } };
        return { status: 200, body: { invalidated: invalidateTokens(parsed.data.accountId) } };
      },
    },
    '/_sandbox/oauth/tokens': {
      POST: (_url, body) => {
        const parsed = z.strictObject({ accounts: z.array(z.unknown()) }).safeParse(body);
        if (!parsed.success) return { status: 400, body: { error: `invalid seed: ${describeIssues(parsed.error)}` } };
        try {
          return { status: 200, body: { tokens: oauth.seedTokens(parsed.data.accounts) } };
        } catch (err) {
          return { status: 400, body: { error: (err as Error).message } };
        }
      },
    },
    '/_sandbox/oauth/authorize': {
      POST: (_url, body) => {
        const parsed = z
          .strictObject({ url: z.url(), decision: z.enum(['allow', 'cancel']).optional(), pageIds: z.array(numericId).optional() })
          .safeParse(body);
        if (!parsed.success) return { status: 400, body: { error: `invalid authorization: ${describeIssues(parsed.error)}` } };
        try {
          return { status: 200, body: { location: authorizeInProcess(oauth, parsed.data.url, parsed.data.decision, parsed.data.pageIds) } };
        } catch (err) {
          return { status: 400, body: { error: (err as Error).message } };
        }
      },
    },
  };

  function invalidateTokens(accountId: string): number {
    // Hand-typed tokens configured for `/me/messages` echoes speak for the account too.
    const configured = (echo?.accounts ?? []).filter((a) => a.id === accountId && a.tokenHash !== undefined).map((a) => a.tokenHash!);
    return oauth.invalidateAccount(accountId, configured);
  }

  function refusing400(apply: () => void): Reply {
    try {
      apply();
    } catch (err) {
      return { status: 400, body: { error: (err as Error).message } };
    }
    return { status: 204 };
  }

  async function handleControl(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const method = (req.method ?? 'GET').toUpperCase();
    const read = await readBody(req);
    const route = controlRoutes[url.pathname];
    if (read.tooLarge) {
      res.setHeader('Connection', 'close');
      return sendJson(res, 413, { error: `request body exceeds ${MAX_BODY_BYTES} bytes` }, false);
    }
    if (!route) return sendJson(res, 404, { error: `unknown sandbox route ${url.pathname}` }, false);
    const handler = route[method];
    if (!handler) {
      res.setHeader('Allow', Object.keys(route).join(', '));
      return sendJson(res, 405, { error: `${method} not allowed on ${url.pathname}` }, false);
    }
    let body: unknown;
    if (read.raw.length > 0) {
      try {
        body = JSON.parse(read.raw.toString('utf8'));
      } catch (err) {
        return sendJson(res, 400, { error: `body must be JSON: ${(err as Error).message}` }, false);
      }
    }
    const reply = handler(url, body);
    sendJson(res, reply.status, reply.body, false);
  }

  const server = http.createServer((req, res) => {
    const receivedAt = Date.now();
    const isControl = (req.url ?? '').startsWith('/_sandbox/');
    const work = isControl ? handleControl(req, res) : handleGraph(req, res, receivedAt);
    work.catch((err: unknown) => {
      if (isControl) return sendJson(res, 500, { error: String(err) }, false);
      const reply = metaError(500, {
        message: `An unknown error has occurred. (${String(err)})`,
        type: 'OAuthException',
        code: 1,
      });
      sendJson(res, reply.status, reply.body, true);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('graph sandbox: unexpected listen address');
  const port = address.port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    requests: () => records.toArray().map((r) => ({ ...r, query: { ...r.query } })),
    reset: () => {
      records.clear();
      faults = [];
      echoLog.clear();
      echo = initialEcho;
      usage = initialUsage;
      oauth.reset();
    },
    failNext,
    setEcho: (options) => {
      echo = options === null ? null : echoConfig(options);
    },
    echoes: () => echoLog.toArray().map((e) => ({ ...e })),
    echoesSettled: async () => {
      while (pendingEchoes.size > 0) await Promise.all([...pendingEchoes.keys()]);
    },
    setUsage: (options) => {
      usage = parseOptions(usageOptionsSchema, options, 'usage options');
    },
    setOAuthPersona: (persona) => oauth.setPersona(persona),
    setOAuthApps: (apps) => oauth.setApps(apps),
    oauthState: () => oauth.view(),
    advanceOAuthClock: (ms) => oauth.advanceClock(ms),
    invalidateTokens: (accountId) => {
      if (!/^\d+$/.test(accountId)) throw new Error('invalidateTokens: accountId must be a numeric ID string');
      return invalidateTokens(accountId);
    },
    seedTokens: (accounts) => oauth.seedTokens(accounts),
    authorize: (dialogUrl, decision, pageIds) => authorizeInProcess(oauth, dialogUrl, decision, pageIds),
    close: () => {
      closed ??= new Promise<void>((resolve, reject) => {
        for (const cancel of pendingEchoes.values()) cancel();
        pendingEchoes.clear();
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close((err) => (err ? reject(err) : resolve()));
        // Without this, idle keep-alive sockets from fetch() hold the server (and jest) open.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
