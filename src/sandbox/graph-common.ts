import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { OAuthStore } from './oauth-store';

/**
 * What the sandbox's route modules share (graph-sandbox.ts runs the server; oauth.ts and
 * oauth-dialog.ts add Meta's OAuth side): the Graph error shape, the call a route handler
 * receives and the reply it returns.
 */

/** The `error` object of a Graph error body, minus `fbtrace_id`, which is generated per answer. */
export interface GraphErrorFields {
  message: string;
  type: string;
  code: number;
  error_subcode?: number;
  error_user_title?: string;
  error_user_msg?: string;
  is_transient?: boolean;
}

/** A message the Send API took: what its echo and its record need. */
export interface AcceptedMessage {
  /** The URL's node: an account id or `me`. */
  node: string;
  recipientId: string;
  messageId: string;
  text?: string;
  metadata?: string;
  attachment?: Record<string, unknown>;
}

export interface Reply {
  status: number;
  body?: unknown;
  accepted?: AcceptedMessage;
  /**
   * The call changed the sandbox's state (a code redeemed, a token minted, a subscription made),
   * so a `drop_after_accept` fault performs it and then loses the answer, as with a message.
   */
  committed?: boolean;
}

export interface GraphCall {
  method: string;
  path: string;
  /** Path with any `/vNN.N` prefix removed; routes match against this. */
  graphPath: string;
  /** The `vNN.N` prefix, when the path had one. */
  version?: string;
  params: Record<string, string>;
  query: Record<string, string>;
  token?: string;
  body: Record<string, unknown>;
  /** The sandbox instance's OAuth state (apps, persona, codes, tokens, subscriptions). */
  oauth: OAuthStore;
}

export interface GraphRoute {
  pattern: RegExp;
  /** Whether an access token is required before the handler runs. */
  auth: boolean;
  methods: Partial<Record<string, (call: GraphCall) => Reply>>;
}

/** The app the fixtures' echoes come from (meta-fixtures/README.md); also the sandbox's default Facebook app. */
export const SANDBOX_APP_ID = 618273940215567;

export function fbtraceId(): string {
  return randomBytes(17).toString('base64url');
}

export function tokenFingerprint(token: string): string {
  return 'sha256:' + createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 16);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function metaError(status: number, error: GraphErrorFields): Reply {
  return { status, body: { error: { ...error, fbtrace_id: fbtraceId() } } };
}

export function paramError(message: string, subcode?: number): Reply {
  return metaError(400, {
    message: `(#100) ${message}`,
    type: 'OAuthException',
    code: 100,
    ...(subcode === undefined ? {} : { error_subcode: subcode }),
  });
}

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Meta's format ("Tuesday, 13-Jan-26 09:00:00 PST"), in UTC so the sandbox has no timezone dependency. */
export function metaDate(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${WEEKDAYS[d.getUTCDay()]}, ${p(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${p(d.getUTCFullYear() % 100)} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} UTC`
  );
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
}

export function parseOptions<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid ${what}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export const numericId = z.string().regex(/^\d+$/, 'must be a numeric ID string');

/** Meta's answer for a node that exists nowhere for this token, or a method the path lacks. */
export function unsupportedRequest(method: string, node: string): Reply {
  return metaError(400, {
    message:
      `Unsupported ${method.toLowerCase()} request. Object with ID '${node}' does not exist, ` +
      'cannot be loaded due to missing permissions, or does not support this operation.',
    type: 'GraphMethodException',
    code: 100,
    error_subcode: 33,
  });
}
