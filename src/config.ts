import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseAuditPublicKeys, parseAuditSigningKey } from './audit/keys';
import { parseMasterKeys } from './crypto/key-provider';

/**
 * The one place the environment is read. Every process (gateway, worker, CLI) parses the same
 * schema once at start; every bad or missing variable is reported together so an operator fixes
 * them in one go instead of one restart per variable.
 */

const masterKeys = z.string().superRefine((spec, ctx) => {
  for (const problem of parseMasterKeys(spec).problems) ctx.addIssue({ code: 'custom', message: problem });
});

const auditSigningKey = z.string().superRefine((spec, ctx) => {
  try {
    parseAuditSigningKey(spec);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const auditPublicKeys = z.string().superRefine((spec, ctx) => {
  try {
    parseAuditPublicKeys(spec);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().positive();

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Customer PII in logs: `off` removes it like a secret; `masked` shows a hint (`jo***@example.com`,
   * `A***`, `[text: 12 chars]`) for debugging. Tokens, secrets and signatures are removed either way.
   */
  LOG_PII: z.enum(['off', 'masked']).default('off'),

  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),

  TEMPORAL_ADDRESS: z.string().min(1).default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('switchboard'),
  /** The gateway must answer Meta well inside 5 s; a Temporal call slower than this is a 503. */
  TEMPORAL_RPC_TIMEOUT_MS: positiveMs.default(3000),
  TEMPORAL_UI_URL: z.url().default('http://localhost:8233'),

  META_APP_SECRET: z.string().min(8),
  /** Instagram-Login webhooks may be signed with the Instagram app secret (contract §1.2, [U]). */
  INSTAGRAM_APP_SECRET: z.string().min(8).optional(),
  META_VERIFY_TOKEN: z.string().min(8),

  GRAPH_API_BASE: z.url().default('https://graph.facebook.com'),
  INSTAGRAM_API_BASE: z.url().default('https://graph.instagram.com'),
  GRAPH_API_VERSION: z.string().regex(/^v\d+\.\d+$/, 'must look like v23.0').default('v23.0'),
  GRAPH_API_TIMEOUT_MS: positiveMs.default(10_000),

  /**
   * Versioned master keys, `2:<base64 32 bytes>,1:<base64 32 bytes>`; the highest version wraps
   * new data keys, older ones stay until the key rotation has rewrapped everything under them.
   */
  MASTER_KEYS: masterKeys,
  /** Unwrapped tenant data keys stay in memory at most this long (bounds crypto-shred latency too). */
  DATA_KEY_CACHE_TTL_MS: positiveMs.default(5 * 60_000),
  /** Bearer token operators (and the Temporal UI, via /codec/login) use for the codec endpoint; unset = endpoint refuses all. */
  CODEC_AUTH_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /**
   * DEPRECATED static platform-operator credential (`Authorization: Bearer …`), from before users
   * and roles: it acts as an operator (audited as `admin-token`). Prefer operator accounts and
   * platform API keys (`api-keys:create --tenant platform`); unset = refused.
   */
  ADMIN_API_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** A browser session ends after this long without a request… */
  SESSION_IDLE_TIMEOUT_MS: positiveMs.default(12 * 3_600_000),
  /** …and this long after sign-in, whatever happens. */
  SESSION_MAX_AGE_MS: positiveMs.default(7 * 86_400_000),
  /** Failed sign-ins allowed per account and per client IP within the window, then 429. */
  LOGIN_MAX_FAILURES_PER_ACCOUNT: z.coerce.number().int().min(1).max(1000).default(5),
  LOGIN_MAX_FAILURES_PER_IP: z.coerce.number().int().min(1).max(100_000).default(30),
  LOGIN_THROTTLE_WINDOW_MS: positiveMs.default(15 * 60_000),
  /** Browser origins allowed to call the codec endpoint (the Temporal UI). Default: TEMPORAL_UI_URL's origin. */
  CODEC_CORS_ORIGINS: z
    .string()
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(z.array(z.url()))
    .optional(),

  GATEWAY_HOST: z.string().default('0.0.0.0'),
  GATEWAY_PORT: port.default(3000),
  GRAPH_SANDBOX_PORT: port.default(3900),

  /**
   * Onboarding (issue 7, docs/onboarding.md): the Meta app and Instagram app ids shown in the
   * OAuth dialogs (unset = that login flow is not offered), the ONE exact redirect URI registered
   * with both apps, and where the dialogs and token endpoints live (Meta's hosts; the sandbox in
   * tests and the dev stack). The app secrets above also sign `appsecret_proof`.
   */
  META_APP_ID: z.string().regex(/^\d{1,32}$/, 'must be the numeric Meta app id').optional(),
  INSTAGRAM_APP_ID: z.string().regex(/^\d{1,32}$/, 'must be the numeric Instagram app id').optional(),
  /** Facebook Login for Business configuration (`config_id`); unset = the classic `scope` dialog. */
  FACEBOOK_LOGIN_CONFIG_ID: z.string().regex(/^\d{1,32}$/, 'must be a numeric configuration id').optional(),
  OAUTH_REDIRECT_URI: z.url().default('http://localhost:3000/portal/oauth/callback'),
  FACEBOOK_DIALOG_BASE: z.url().default('https://www.facebook.com'),
  INSTAGRAM_DIALOG_BASE: z.url().default('https://www.instagram.com'),
  /** The Instagram Login code exchange host (`POST /oauth/access_token`). */
  INSTAGRAM_OAUTH_BASE: z.url().default('https://api.instagram.com'),
  /** How long an onboarding waits for the client's OAuth step (then it compensates and is abandoned). */
  ONBOARDING_OAUTH_TIMEOUT_MS: positiveMs.default(7 * 86_400_000),

  /**
   * Token lifecycle (docs/token-lifecycle.md). The TokenRotation schedule's cron (UTC), how many
   * channels it checks at once, and the Graph calls per minute it may make across every worker.
   */
  TOKEN_ROTATION_CRON: z.string().regex(/^(\S+\s+){4}\S+$/, 'must be a five-field cron expression').default('23 2 * * *'),
  TOKEN_ROTATION_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(20),
  TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(3000),
  /** An Instagram Login token is refreshed once it expires within this many days (and is at least 24 h old). */
  TOKEN_REFRESH_WINDOW_DAYS: z.coerce.number().int().min(1).max(59).default(10),
  /** The tenant is told when a token expires within this many days. */
  TOKEN_EXPIRY_WARNING_DAYS: z.coerce.number().int().min(1).max(59).default(7),
  /** Outgoing mail for tenant notifications: `smtp://` or `smtps://` (user:password@host:port). Unset: notifications are not e-mailed (dashboard and webhook only). */
  SMTP_URL: z.url({ protocol: /^smtps?$/ }).optional(),
  NOTIFY_EMAIL_FROM: z.string().min(3).default('Switchboard <notifications@switchboard.local>'),
  /** Where the portal and dashboard are reached, for links in e-mails. */
  PUBLIC_BASE_URL: z.url().default('http://localhost:3000'),
  /** The DataKeyRotation schedule's cron (UTC) and its policy: a tenant data key older than this, or used this often, is replaced. */
  DATA_KEY_ROTATION_CRON: z.string().regex(/^(\S+\s+){4}\S+$/, 'must be a five-field cron expression').default('41 3 * * *'),
  DATA_KEY_MAX_AGE_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  DATA_KEY_MAX_ENCRYPTIONS: z.coerce.number().int().min(1).max(2 ** 32).default(2 ** 30),

  /** A conversation run with no event for this long completes; the next message starts a new run. */
  CONVERSATION_IDLE_TIMEOUT_MS: positiveMs.default(30 * 60_000),

  /**
   * Audit trail (docs/security.md, "Audit trail"): the Ed25519 key that signs checkpoints of the
   * hash chains — base64 of a 32-byte seed or of a PKCS#8 DER, or a PEM; never stored in the
   * database. Required in production (with AUDIT_CHECKPOINT_DIR); elsewhere unset means no
   * checkpoints (a truncated tail of the log would go unnoticed).
   */
  AUDIT_SIGNING_KEY: auditSigningKey.optional(),
  /** Public keys of earlier signing keys (comma-separated), so checkpoints they signed still verify. */
  AUDIT_PREVIOUS_PUBLIC_KEYS: auditPublicKeys.optional(),
  /** Where each chain's checkpoints are also appended (`<dir>/<chainId>.jsonl`): outside the database, shared by every worker. */
  AUDIT_CHECKPOINT_DIR: z.string().min(1).optional(),
  /** A chain gets a checkpoint after this many events… */
  AUDIT_CHECKPOINT_EVERY_EVENTS: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  /** …or this long after its last checkpoint, if it has new events. */
  AUDIT_CHECKPOINT_EVERY_MS: positiveMs.default(5 * 60_000),
});

/** Optional in development and tests, required with NODE_ENV=production. */
const REQUIRED_IN_PRODUCTION = ['AUDIT_SIGNING_KEY', 'AUDIT_CHECKPOINT_DIR'] as const;

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses an environment; throws one ConfigError naming every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = configSchema.safeParse(cleaned);
  // Checked beside the schema so they are reported together with every other problem.
  const production = cleaned.NODE_ENV === 'production';
  const missing = production ? REQUIRED_IN_PRODUCTION.filter((name) => cleaned[name] === undefined).map((name) => `${name}: is required in production`) : [];
  if (result.success && missing.length === 0) return result.data;
  const problems = (result.success ? [] : result.error.issues).map((issue) => {
    const name = issue.path.join('.') || '(environment)';
    const message = issue.code === 'invalid_type' && cleaned[name] === undefined ? 'is required' : issue.message;
    return `${name}: ${message}`;
  });
  throw new ConfigError([...problems, ...missing]);
}

/**
 * `npm start` writes the embedded stack's settings to `.data/dev.env`, so the CLI and the
 * benchmark reach the same database without exporting anything. Real variables win.
 */
export function devEnvFile(root = process.cwd()): string {
  return path.join(root, '.data', 'dev.env');
}

export function readEnvFile(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

let cached: Config | undefined;

/** The process-wide configuration, parsed once. */
export function loadConfig(): Config {
  cached ??= parseConfig({ ...readEnvFile(devEnvFile()), ...process.env });
  return cached;
}
