import pino, { type Logger } from 'pino';
import { maskEmail, maskId, maskName, maskPhone, maskText } from './pii';

/**
 * Redaction is on by default: an access token, a secret, a signature or a customer's words in a
 * log line is an incident. Code logs IDs and outcomes; these paths catch the accidents.
 *
 * Two kinds of field:
 *  - secrets (tokens, keys, passwords, auth/cookie/signature headers) and raw content (request
 *    bodies, event payloads, attachments) are always replaced by `[redacted]`;
 *  - customer PII (emails, phones, names, message texts, customer IDs, message IDs) is replaced by
 *    `[redacted]` too, or, with `pii: 'masked'` (LOG_PII=masked), by a masked form from src/pii.ts;
 *    a conversation's `workflowId` keeps its tenant and channel and loses the customer ID part.
 *
 * A field is found by its key, at the top level (exact spelling) or up to three objects down
 * (`message.text`, `req.headers.authorization`, `ctx.request.headers.cookie`; any case). What this
 * cannot see: values interpolated into the message string, keys nested deeper, and values under
 * keys it does not know (an error message quoting a token is the caller's bug).
 */

export type PiiMode = 'off' | 'masked';

export interface LoggerOptions {
  /** `off` (default): PII removed like secrets. `masked`: PII shown masked; secrets still removed. */
  pii?: PiiMode;
  /** Where lines go (default stdout); tests pass a collector. */
  destination?: pino.DestinationStream;
}

export const REDACTED = '[redacted]';

/** Always removed, in every mode. */
const SECRET_KEYS = [
  'accessToken',
  'access_token',
  'pageAccessToken',
  'page_access_token',
  'refreshToken',
  'refresh_token',
  'token',
  'verifyToken',
  'verify_token',
  'hub.verify_token',
  'secret',
  'appSecret',
  'app_secret',
  'clientSecret',
  'client_secret',
  'password',
  'apiKey',
  'api_key',
  'wrappedKey',
  'wrapped_key',
  'dataKey',
  'masterKey',
  'signature',
  // Temporal task tokens embed the workflow id (which ends in a customer ID).
  'taskToken',
  // Configuration values that are secrets, in case a config object is logged.
  'META_APP_SECRET',
  'INSTAGRAM_APP_SECRET',
  'META_VERIFY_TOKEN',
  'TOKEN_ENCRYPTION_KEY',
  'MASTER_KEYS',
  'DATABASE_URL',
];

/** HTTP headers carrying credentials; always removed. Koa lower-cases them, hand-built objects may not. */
const SECRET_HEADERS = [
  'authorization',
  'Authorization',
  'cookie',
  'Cookie',
  'set-cookie',
  'Set-Cookie',
  'x-hub-signature',
  'x-hub-signature-256',
  'X-Hub-Signature',
  'X-Hub-Signature-256',
];

/** Raw content that may hold anything (customer text, tokens): always removed, never masked. */
const CONTENT_KEYS = ['body', 'rawBody', 'payload', 'attachments', 'dedupeKey', 'dedupe_key'];

/** Nested keys named like a credential are secrets too (`pageToken`, `dbPassword`, `appSecretProof`…). */
const SECRET_SUFFIX = /(token|secret|secretproof|password|passwd|apikey|api_key|privatekey|private_key)$/;

/**
 * Credentials inside strings: URL parameters (Graph accepts `access_token` in the query string)
 * and bearer tokens. Applied to message strings and to every string value up to the depth the
 * censor sees, whatever its key.
 */
const SECRET_IN_TEXT =
  /([?&#;](?:access_token|client_secret|appsecret_proof|fb_exchange_token|hub\.verify_token|verify_token|token|password|code)=)[^&#\s"']+|(\bBearer\s+)[^\s"',;]+/gi;

export function scrubSecretsInText(text: string): string {
  if (!text.includes('=') && !/bearer/i.test(text)) return text;
  return text.replace(SECRET_IN_TEXT, (_m, param: string | undefined, bearer: string | undefined) => `${param ?? bearer ?? ''}${REDACTED}`);
}

type Masker = (value: string) => string;

/** Customer PII: removed, or masked in `pii: 'masked'` mode. */
const PII_KEYS: Record<string, Masker> = {
  email: maskEmail,
  emailAddress: maskEmail,
  email_address: maskEmail,
  phone: maskPhone,
  phoneNumber: maskPhone,
  phone_number: maskPhone,
  name: maskName,
  firstName: maskName,
  first_name: maskName,
  lastName: maskName,
  last_name: maskName,
  username: maskName,
  customerName: maskName,
  customer_name: maskName,
  text: maskText,
  // PSID / IGSID: tenant customer data (docs/data-classification.md).
  customerId: maskId,
  customer_id: maskId,
  psid: maskId,
  igsid: maskId,
  // Meta message ID; a postback without one is stored under its dedupe key (PSID + payload).
  mid: maskId,
};

/** `conversation/{tenantId}/{channelId}/{customerId}` (src/temporal/ids.ts): the last part is a PSID/IGSID. */
const CONVERSATION_WORKFLOW_ID = /^(conversation\/[^/]+\/[^/]+\/)(.+)$/;
const WORKFLOW_ID_KEYS = ['workflowId', 'workflow_id'];

/** Meta's `{ sender: { id } }` / `{ recipient: { id } }`: the `id` is a customer's PSID/IGSID. */
const CUSTOMER_ID_PARENTS = new Set(['sender', 'recipient']);

const SECRETS = new Set([...SECRET_KEYS, ...SECRET_HEADERS, ...CONTENT_KEYS].map((k) => k.toLowerCase()));
const MASKERS = new Map(Object.entries(PII_KEYS).map(([k, m]) => [k.toLowerCase(), m]));

function topLevelPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
}

/**
 * Top-level fields by name (exact spelling); nested fields through terminal wildcards, one path
 * per depth, that hand every key at depths 1 to 3 to the censor, which passes through what is not
 * sensitive. Two properties matter:
 *  - each location is matched by exactly one path, because pino runs the censor once per matching
 *    path and a masked value must not be masked again (`[text: 15 chars]`). A literal first
 *    segment (`err`, `sender`, `recipient`) also receives the wildcards, so the few literal paths
 *    below are ones whose censor result is stable when applied twice;
 *  - a literal first segment makes the censor see that key (a wildcard one shows up as a symbol):
 *    `err.name` lets an error's own name through, `sender.id` / `recipient.id` are customer IDs.
 * A wildcard per depth costs a few microseconds a line; a wildcard per key would cost ~100 µs.
 */
function buildPaths(): string[] {
  const topLevel = [...SECRET_KEYS, ...SECRET_HEADERS, ...CONTENT_KEYS, ...Object.keys(PII_KEYS), ...WORKFLOW_ID_KEYS].map(topLevelPath);
  return [...topLevel, 'err.name', 'error.name', 'sender.id', 'recipient.id', '*.*', '*.*.*', '*.*.*.*'];
}

export const REDACT_PATHS: readonly string[] = buildPaths();

/** Nesting the censor sees: keys at depth 0 (top level) to 3 (`ctx.request.headers.cookie`). */
const REDACT_DEPTH = 4;

type Censor = (value: unknown, path: Array<string | symbol>) => unknown;

/** The censor: decides from the field's key (and for `id`, its parent's) what replaces the value. */
export function censorFor(mode: PiiMode): Censor {
  return (value, path) => {
    const last = path[path.length - 1];
    if (typeof last !== 'string') return REDACTED;
    const key = last.toLowerCase();
    if (SECRETS.has(key) || SECRET_SUFFIX.test(key)) return REDACTED;
    if (key === 'workflowid' || key === 'workflow_id') {
      // Keeps the workflow findable in the Temporal UI by tenant and channel; hides the customer.
      const m = typeof value === 'string' ? CONVERSATION_WORKFLOW_ID.exec(value) : null;
      return m ? `${m[1]}${mode === 'masked' ? maskId(m[2]!) : REDACTED}` : value;
    }
    if (key === 'name' && (path[0] === 'err' || path[0] === 'error') && path.slice(1, -1).every((k) => k === 'cause')) return value;
    const parent = path[path.length - 2];
    const mask = key === 'id' ? (typeof parent === 'string' && CUSTOMER_ID_PARENTS.has(parent.toLowerCase()) ? maskId : undefined) : MASKERS.get(key);
    if (!mask) return value;
    if (mode !== 'masked' || value === null || value === undefined) return REDACTED;
    if (typeof value === 'string') return mask(value);
    if (typeof value === 'number' || typeof value === 'bigint') return mask(String(value));
    return REDACTED;
  };
}

/**
 * Runs before redaction (pino `formatters.log` / `formatters.bindings`) over the depths the
 * censor sees. Redaction copies every object on a wildcard path with the original's prototype,
 * which breaks objects with internal state (a copied Buffer throws when serialized), so:
 *  - binary data (Buffer, typed arrays, ArrayBuffer) becomes `[binary: N bytes]`: raw bytes are
 *    never useful in a log line and may be key material;
 *  - objects with `toJSON` (URL, …) are replaced by what JSON.stringify would have written;
 *  - errors, at any depth, become plain objects (`errorToLog`): redaction writes into the objects
 *    it walks, and an error's read-only `name` made pino throw, inside the Temporal worker's
 *    failure path, turning a non-retryable failure into a retryable TypeError;
 *  - strings lose URL credentials and bearer tokens (`scrubSecretsInText`).
 * The caller's objects are never modified (copy on write).
 */
export function normalizeForLog(value: unknown, depth = 0, jsonDone = false, errorToLog: (err: Error) => unknown = errorSerializer(() => false)): unknown {
  if (typeof value === 'string') return scrubSecretsInText(value);
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[binary: ${value.byteLength} bytes]`;
  if (value instanceof Error) return errorToLog(value);
  if (value instanceof Date) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (!jsonDone && typeof toJSON === 'function') return normalizeForLog(toJSON.call(value), depth, true, errorToLog);
  if (depth >= REDACT_DEPTH) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const next = normalizeForLog(item, depth + 1, false, errorToLog);
      if (next !== item) (copy ??= value.slice())[i] = next;
    });
    return copy ?? value;
  }
  let copy: Record<string, unknown> | undefined;
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const item = source[key];
    const next = normalizeForLog(item, depth + 1, false, errorToLog);
    if (next !== item) (copy ??= { ...source })[key] = next;
  }
  return copy ?? value;
}

interface SerializedError {
  type: string;
  name?: string;
  message?: string;
  code?: string | number;
  stack?: string;
  cause?: SerializedError;
}

/**
 * Errors keep type, name, message and code only: no enumerable extras (pg's `detail` quotes row
 * values, HTTP errors carry request config). Stacks only outside production and while the logger
 * is at debug or trace.
 */
export function errorSerializer(includeStack: () => boolean): (err: unknown) => SerializedError | unknown {
  const serialize = (err: unknown, depth: number): SerializedError | unknown => {
    if (err === null || typeof err !== 'object') return err;
    const e = err as Record<string, unknown>;
    const ctor = (err as { constructor?: { name?: unknown } }).constructor?.name;
    const out: SerializedError = {
      type: typeof e.type === 'string' ? e.type : typeof ctor === 'string' && ctor !== 'Object' ? ctor : typeof e.name === 'string' ? e.name : 'Error',
    };
    if (typeof e.name === 'string') out.name = e.name;
    if (typeof e.message === 'string') out.message = e.message;
    if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
    if (typeof e.stack === 'string' && includeStack()) out.stack = e.stack;
    if (e.cause !== undefined && depth < 3) {
      const cause = serialize(e.cause, depth + 1);
      if (cause !== null && typeof cause === 'object') out.cause = cause as SerializedError;
    }
    return out;
  };
  return (err) => serialize(err, 0);
}

export function createLogger(name: string, level: string = process.env.LOG_LEVEL ?? 'info', opts: LoggerOptions = {}): Logger {
  const production = process.env.NODE_ENV === 'production';
  let logger: Logger | undefined;
  const includeStack = () => !production && logger !== undefined && logger.isLevelEnabled('debug');
  const errorToLog = errorSerializer(includeStack);
  // No pino `name` option: it would print a top-level `name`, which is a redacted customer-name
  // field. The process is identified by `service`.
  logger = pino(
    {
      level,
      redact: { paths: [...REDACT_PATHS], censor: censorFor(opts.pii ?? 'off') },
      serializers: { err: errorSerializer(includeStack) },
      formatters: {
        log: (obj) => normalizeForLog(obj, 0, false, errorToLog) as Record<string, unknown>,
        bindings: (bindings) => normalizeForLog(bindings, 0, false, errorToLog) as pino.Bindings,
      },
      // Message strings (`logger.info(\`GET ${url}\`)`) and `%s` arguments get the same scrub.
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a: unknown) => (typeof a === 'string' ? scrubSecretsInText(a) : a));
          method.apply(this, scrubbed as Parameters<pino.LogFn>);
        },
      },
      base: { service: name },
    },
    opts.destination,
  );
  return logger;
}

export type { Logger };
