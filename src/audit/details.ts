import { scrubSecretsInText } from '../logger';
import { maskEmail, maskId, maskName, maskPhone, maskText } from '../pii';

/**
 * What an audit event's `details` may hold: plain JSON, PII masked, secrets removed. Applied by
 * src/audit/log.ts before the details are hashed and stored, so what is hashed is exactly what
 * jsonb gives back (see src/audit/hash.ts):
 *
 *  - keys named like a credential (`accessToken`, `appSecret`, `password`, `apiKey`,
 *    `privateKey`, `signature`, `authorization`, `cookie`, `…Credential(s)`) are dropped, whatever
 *    their value; raw content keys (`body`, `rawBody`, `payload`, `attachments`) too;
 *  - customer PII by key, masked with src/pii.ts: emails, phones, names (`name`, `firstName`,
 *    `customerName`, `username`, …), message texts (`text`, `message` → `[text: N chars]`), customer
 *    IDs (`customerId`, `psid`, `igsid`, `senderId`, `recipientId`, `mid` → last 4 characters);
 *  - in every other string: email addresses are masked, and URL credentials (`access_token=…`),
 *    bearer tokens and Meta-looking access tokens (`EAA…`, `IGQ…`/`IGAA…`) are removed;
 *  - JSON hygiene: undefined/functions/symbols dropped, NaN/±Infinity → null, -0 → 0, integers
 *    beyond ±2^53 → decimal strings (they would not survive as exact numbers; put big ids in
 *    strings in the first place), bigint → string, Date → ISO string, Buffer → `[binary: N bytes]`,
 *    lone surrogates and U+0000 (jsonb rejects both) → U+FFFD, nesting deeper than 8 → `[too deep]`;
 *  - a result larger than 16 KiB of JSON is replaced by `{ "truncated": true, "bytes": N }`.
 */

export const MAX_DETAILS_BYTES = 16 * 1024;
const MAX_DEPTH = 8;
export const REMOVED = '[removed]';

/** Suffixes (`pageAccessToken`, `dataKey`) and, for unambiguous words, anywhere (`x-hub-signature-256`, `appSecretProof`). */
const SECRET_KEY = /(token|credentials?|ciphertext|wrappedkey|datakey|masterkey)$|secret|password|passwd|apikey|privatekey|signature|authorization|cookie/;
const CONTENT_KEYS = new Set(['body', 'rawbody', 'payload', 'attachments']);

type Masker = (value: string) => string;
const PII_KEYS = new Map<string, Masker>([
  ['email', maskEmail],
  ['emailaddress', maskEmail],
  ['phone', maskPhone],
  ['phonenumber', maskPhone],
  ['name', maskName],
  ['firstname', maskName],
  ['lastname', maskName],
  ['fullname', maskName],
  ['displayname', maskName],
  ['customername', maskName],
  ['username', maskName],
  ['text', maskText],
  ['message', maskText],
  ['messagetext', maskText],
  ['customerid', maskId],
  ['psid', maskId],
  ['igsid', maskId],
  ['senderid', maskId],
  ['recipientid', maskId],
  ['mid', maskId],
]);

const EMAIL_IN_TEXT = /[^\s@<>"'(),;:]+@[^\s@<>"'(),;:]+\.[^\s@<>"'(),;:]+/g;
const META_TOKEN_IN_TEXT = /\b(?:EAA|IGQ|IGAA)[A-Za-z0-9_-]{20,}/g;

/** `accessToken`, `access_token`, `access-token` → `accesstoken`. */
const normalizeKey = (key: string) => key.toLowerCase().replace(/[-_\s.]/g, '');

/** Lone surrogates and U+0000 → U+FFFD: PostgreSQL text and jsonb reject U+0000, jsonb and JCS lone surrogates. */
const ILL_FORMED = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g;
export function jsonSafeString(s: string): string {
  return s.replace(ILL_FORMED, '\uFFFD');
}

function scrubString(s: string): string {
  let out = scrubSecretsInText(s);
  if (out.includes('@')) out = out.replace(EMAIL_IN_TEXT, (m) => maskEmail(m));
  if (/EAA|IGQ|IGAA/.test(out)) out = out.replace(META_TOKEN_IN_TEXT, REMOVED);
  return jsonSafeString(out);
}

function jsonNumber(n: number): number | string | null {
  if (!Number.isFinite(n)) return null;
  if (Object.is(n, -0)) return 0;
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) return String(n);
  return n;
}

function clean(value: unknown, depth: number): unknown {
  if (value === null) return null;
  switch (typeof value) {
    case 'string':
      return scrubString(value);
    case 'number':
      return jsonNumber(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[binary: ${value.byteLength} bytes]`;
  if (value instanceof Error) return { type: value.name, message: scrubString(String(value.message)) };
  if (Array.isArray(value)) return value.map((v) => clean(v, depth + 1) ?? null);
  if (value instanceof Map) return clean(Object.fromEntries(value), depth);
  if (value instanceof Set) return clean([...value], depth);
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return clean(toJSON.call(value), depth + 1);
  return cleanObject(value as Record<string, unknown>, depth);
}

function cleanObject(source: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const rawKey of Object.keys(source)) {
    const key = jsonSafeString(rawKey);
    const norm = normalizeKey(key);
    if (SECRET_KEY.test(norm) || CONTENT_KEYS.has(norm)) continue;
    const value = source[rawKey];
    const mask = PII_KEYS.get(norm);
    if (mask) {
      if (value === null || value === undefined) out[key] = null;
      else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint') out[key] = jsonSafeString(mask(String(value)));
      else out[key] = REMOVED; // an object or array under a PII key: nothing in it is kept
      continue;
    }
    const cleaned = clean(value, depth + 1);
    if (cleaned !== undefined) out[key] = cleaned;
  }
  return out;
}

/** Masked, JSON-safe details (a new object; the input is not modified). */
export function sanitizeAuditDetails(details: Record<string, unknown> | undefined | null): Record<string, unknown> {
  if (details === undefined || details === null) return {};
  if (typeof details !== 'object' || Array.isArray(details)) return { value: clean(details, 1) ?? null };
  const cleaned = cleanObject(details, 0);
  const bytes = Buffer.byteLength(JSON.stringify(cleaned), 'utf8');
  return bytes > MAX_DETAILS_BYTES ? { truncated: true, bytes } : cleaned;
}
