import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import dns, { type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { NotificationKind } from '../../workflows/token-lifecycle-definitions';

/**
 * The tenant's optional notification webhook (docs/token-lifecycle.md, "Notifications"): one JSON
 * POST per episode, signed like Stripe's — `X-Switchboard-Signature: t=<unix s>,v1=<hex
 * HMAC-SHA256(secret, "<t>.<raw body>")>` — so a receiver can check who sent it and refuse
 * replays. The body is the same on every attempt (its `id` is the episode id: a receiver
 * deduplicates on it); the timestamp and signature are fresh per attempt.
 */

export const TIMESTAMP_HEADER = 'X-Switchboard-Timestamp';
export const SIGNATURE_HEADER = 'X-Switchboard-Signature';
export const EVENT_ID_HEADER = 'X-Switchboard-Event-Id';

export type NotificationEventType = 'channel.reauth_required' | 'channel.token_expiring';

export interface NotificationEvent {
  /** The episode id: the same for every attempt and every run, so receivers can deduplicate. */
  id: string;
  type: NotificationEventType;
  tenantId: string;
  channel: { id: string; platform: 'messenger' | 'instagram'; accountId: string };
  level: 'warning' | 'critical';
  /** Failure type and Graph code, or the expiry: never API text, never a token. */
  reason: string;
  /** For `channel.token_expiring`: when the token expires (ISO 8601). */
  expiresAt?: string;
  /** When the episode opened (ISO 8601). */
  occurredAt: string;
}

export const eventTypeOf = (kind: NotificationKind): NotificationEventType => (kind === 'reauth_required' ? 'channel.reauth_required' : 'channel.token_expiring');

/** A new signing secret: 32 random bytes, base64url (43 characters). The HMAC key is this string itself. */
export function generateWebhookSecret(): string {
  return randomBytes(32).toString('base64url');
}

const hmacHex = (secret: string, timestampS: number, rawBody: string | Buffer): string =>
  createHmac('sha256', secret).update(`${timestampS}.`).update(rawBody).digest('hex');

/** The `X-Switchboard-Signature` value for this body at this time. */
export function signNotification(secret: string, timestampS: number, rawBody: string | Buffer): string {
  return `t=${timestampS},v1=${hmacHex(secret, timestampS, rawBody)}`;
}

export type SignatureCheck = { ok: true; timestampS: number } | { ok: false; reason: 'malformed' | 'stale' | 'mismatch' };

/**
 * A receiver's check of `X-Switchboard-Signature` against the raw request body (the bytes as
 * received, before any JSON parsing). Refuses a timestamp further than `toleranceS` (default 300)
 * from now in either direction, so a captured request cannot be replayed later. Every `v1=` in
 * the header is tried (room for a future second secret during rotation), each compared in
 * constant time.
 */
export function verifyNotificationSignature(
  secret: string,
  header: string | null | undefined,
  rawBody: string | Buffer,
  opts: { toleranceS?: number; nowS?: number } = {},
): SignatureCheck {
  if (typeof header !== 'string' || header.length > 1000) return { ok: false, reason: 'malformed' };
  let timestampS: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (!/^\d{1,12}$/.test(value) || timestampS !== undefined) return { ok: false, reason: 'malformed' };
      timestampS = Number(value);
    } else if (key === 'v1') {
      if (!/^[0-9a-f]{64}$/i.test(value)) return { ok: false, reason: 'malformed' };
      signatures.push(Buffer.from(value, 'hex'));
    }
    // Unknown schemes are ignored: a later version may add one beside v1.
  }
  if (timestampS === undefined || signatures.length === 0) return { ok: false, reason: 'malformed' };
  const nowS = opts.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(nowS - timestampS) > (opts.toleranceS ?? 300)) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(hmacHex(secret, timestampS, rawBody), 'hex');
  let match = false;
  for (const candidate of signatures) if (timingSafeEqual(candidate, expected)) match = true;
  return match ? { ok: true, timestampS } : { ok: false, reason: 'mismatch' };
}

// ---- where a webhook may go -------------------------------------------------------------------

/**
 * Addresses a tenant's URL must not reach in production: loopback, private, link-local (cloud
 * metadata at 169.254.169.254), carrier-grade NAT, multicast and the like. A tenant-chosen URL
 * that Switchboard calls from inside its network is a request forgery waiting to happen.
 */
const NON_PUBLIC = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NON_PUBLIC.addSubnet(prefix, bits, 'ipv4');
for (const [prefix, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) NON_PUBLIC.addSubnet(prefix, bits, 'ipv6');

export function isNonPublicAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) return NON_PUBLIC.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return NON_PUBLIC.check(mapped[1]!, 'ipv4');
    return NON_PUBLIC.check(address, 'ipv6');
  }
  return false;
}

export interface WebhookPolicy {
  /**
   * Production: https only, and never a loopback, private or link-local address (checked on the
   * URL and again on every DNS answer at delivery). Development and tests allow both, so a
   * receiver on 127.0.0.1 works.
   */
  production: boolean;
}

/** Why this URL is refused as a webhook target, or null when it is fine. */
export function webhookUrlProblem(value: string, policy: WebhookPolicy): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http(s) URL';
  if (url.username || url.password) return 'must not contain credentials (the signature authenticates the request)';
  if (url.hash) return 'must not contain a fragment';
  if (!policy.production) return null;
  if (url.protocol !== 'https:') return 'must use https in production';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost') || isNonPublicAddress(host)) return 'must be a public address in production';
  return null;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** `dns.lookup` that refuses a name resolving to a non-public address (DNS rebinding included: it runs per connection). */
function publicOnlyLookup(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    if (addresses.length === 0 || addresses.some((a) => isNonPublicAddress(a.address))) {
      return callback(Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: 'ENONPUBLIC' }), []);
    }
    if (options.all) return callback(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

export type DeliveryResult =
  | { ok: true; status: number }
  /** `retryable: false`: the receiver refused for good (a 4xx other than 408/429, a redirect) or the URL is not allowed. */
  | { ok: false; retryable: boolean; status: number | null; error: string };

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * One signed POST. No redirect is followed (a 3xx is a refusal: the tenant configures the final
 * URL), the whole exchange is cut off after `timeoutMs` (default 10 s), and the answer's body is
 * read (at most 64 KiB) and dropped. Errors name an HTTP status or a network error class only.
 */
export async function deliverNotification(
  url: string,
  secret: string,
  event: NotificationEvent,
  opts: WebhookPolicy & { timeoutMs?: number; nowS?: number; userAgent?: string },
): Promise<DeliveryResult> {
  const problem = webhookUrlProblem(url, opts);
  if (problem) return { ok: false, retryable: false, status: null, error: `webhook URL refused: ${problem}` };
  const body = JSON.stringify(event);
  const timestampS = opts.nowS ?? Math.floor(Date.now() / 1000);
  const target = new URL(url);
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'user-agent': opts.userAgent ?? 'Switchboard-Notifications/1',
    [TIMESTAMP_HEADER.toLowerCase()]: String(timestampS),
    [SIGNATURE_HEADER.toLowerCase()]: signNotification(secret, timestampS, body),
    [EVENT_ID_HEADER.toLowerCase()]: event.id,
  };
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const request = target.protocol === 'https:' ? https.request : http.request;

  return new Promise<DeliveryResult>((resolve) => {
    let settled = false;
    const finish = (result: DeliveryResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const req = request(target, {
      method: 'POST',
      headers,
      agent: false,
      ...(opts.production ? { lookup: publicOnlyLookup as never } : {}),
    });
    const timer = setTimeout(() => {
      finish({ ok: false, retryable: true, status: null, error: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.name;
      finish({ ok: false, retryable: code !== 'ENONPUBLIC', status: null, error: code === 'ENONPUBLIC' ? 'webhook URL refused: resolves to a non-public address' : `network error ${code}` });
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_RESPONSE_BYTES) res.destroy();
      });
      const done = () => finish(classifyStatus(status));
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
    });
    req.end(body);
  });
}

/** 2xx delivered; 408, 429 and 5xx try again; a redirect or any other 4xx is the receiver's final word. */
export function classifyStatus(status: number): DeliveryResult {
  if (status >= 200 && status < 300) return { ok: true, status };
  if (status >= 300 && status < 400) return { ok: false, retryable: false, status, error: `HTTP ${status} (redirects are not followed)` };
  if (status === 408 || status === 429 || status >= 500) return { ok: false, retryable: true, status, error: `HTTP ${status}` };
  return { ok: false, retryable: false, status, error: `HTTP ${status}` };
}
