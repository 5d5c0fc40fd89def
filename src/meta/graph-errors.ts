import type { UsageReport } from './usage-headers';

/**
 * Graph API errors, typed and classified once (meta-api-contract §4.2). Classification uses
 * `code` / `error_subcode` only: message texts change and HTTP statuses vary (400 vs 403).
 */

export interface MetaErrorBody {
  message?: string;
  type?: string;
  code?: number;
  error_subcode?: number;
  fbtrace_id?: string;
}

export class GraphApiError extends Error {
  readonly code: number | undefined;
  readonly subcode: number | undefined;
  readonly fbtraceId: string | undefined;
  readonly errorType: string | undefined;
  /** Seconds until Meta lets us call again, from the BUC usage header, when it said so. */
  readonly regainAccessSeconds: number | undefined;

  constructor(
    readonly httpStatus: number,
    body: MetaErrorBody | undefined,
    /** The usage headers of the error answer: throttling answers say how long to stay away. */
    readonly usage: UsageReport = { maxPercent: undefined, regainAccessSeconds: undefined },
  ) {
    // Meta's message can echo request details; keep it out of our message, keep the codes.
    super(`Graph API error: HTTP ${httpStatus}, code ${body?.code ?? 'none'}${body?.error_subcode ? `/${body.error_subcode}` : ''}`);
    this.name = 'GraphApiError';
    this.code = body?.code;
    this.subcode = body?.error_subcode;
    this.fbtraceId = body?.fbtrace_id;
    this.errorType = body?.type;
    this.regainAccessSeconds = usage.regainAccessSeconds;
  }
}

/** The request failed below HTTP. `ambiguous` when it may have reached Meta (timeout, reset). */
export class GraphNetworkError extends Error {
  constructor(message: string, readonly ambiguous: boolean) {
    super(message);
    this.name = 'GraphNetworkError';
  }
}

export type GraphErrorClass =
  | 'auth'
  | 'rate_limited'
  | 'transient'
  | 'outside_window'
  | 'recipient_unavailable'
  | 'permission'
  | 'policy'
  | 'bad_request';

/** Names double as Temporal `ApplicationFailure` types. */
export const FAILURE_TYPES: Record<GraphErrorClass, string> = {
  auth: 'GraphAuthExpired',
  rate_limited: 'GraphRateLimited',
  transient: 'GraphTransient',
  outside_window: 'OutsideMessagingWindow',
  recipient_unavailable: 'RecipientUnavailable',
  permission: 'GraphPermissionDenied',
  policy: 'GraphPolicyBlocked',
  bad_request: 'GraphBadRequest',
};

export interface GraphErrorClassification {
  errorClass: GraphErrorClass;
  failureType: string;
  retryable: boolean;
  /** The channel's token or grant is unusable: mark it `reauth_required`. */
  reauth: boolean;
  /** For throttling: wait at least this long before the next attempt. */
  retryAfterMs?: number;
}

export const DEFAULT_RATE_LIMIT_DELAY_MS = 10_000;

const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 80001, 80002, 80006]);
const TRANSIENT_CODES = new Set([1, 2, 1200]);
const WINDOW_SUBCODES = new Set([2018278, 2534022, 2018065]);
const REAUTH_PERMISSION_SUBCODES = new Set([2534077, 2534013]);

function classify(errorClass: GraphErrorClass, extra: { reauth?: boolean; retryAfterMs?: number } = {}): GraphErrorClassification {
  const retryable = errorClass === 'rate_limited' || errorClass === 'transient';
  return { errorClass, failureType: FAILURE_TYPES[errorClass], retryable, reauth: extra.reauth ?? false, ...(extra.retryAfterMs !== undefined && { retryAfterMs: extra.retryAfterMs }) };
}

export function classifyGraphError(err: GraphApiError | GraphNetworkError): GraphErrorClassification {
  if (err instanceof GraphNetworkError) return classify('transient');
  const { code, subcode, httpStatus } = err;

  if (code === 190 || code === 102) return classify('auth', { reauth: true });
  if (code !== undefined && RATE_LIMIT_CODES.has(code)) {
    if (code === 613 && subcode === 2018338) return classify('policy'); // tag-abuse warning: stop, never retry
    const retryAfterMs = err.regainAccessSeconds ? err.regainAccessSeconds * 1000 : DEFAULT_RATE_LIMIT_DELAY_MS;
    return classify('rate_limited', { retryAfterMs });
  }
  if (subcode !== undefined && WINDOW_SUBCODES.has(subcode)) return classify('outside_window');
  if (code === 551 || subcode === 1545041 || (code === 10 && subcode === 2018108)) return classify('recipient_unavailable');
  if ((code === 10 && subcode === 1893063) || (code === 100 && subcode === 2534029)) return classify('policy');
  if (code === 10 || code === 200 || (subcode !== undefined && REAUTH_PERMISSION_SUBCODES.has(subcode))) {
    // A missing grant or a broken IG↔Page link needs the client to reconnect; App Review gaps don't.
    const reauth = (code === 10 && subcode === undefined) || (subcode !== undefined && REAUTH_PERMISSION_SUBCODES.has(subcode));
    return classify('permission', { reauth });
  }
  if (code === 100 || code === 9000001) return classify('bad_request'); // 9000001: message deleted
  if (code !== undefined && TRANSIENT_CODES.has(code)) return classify('transient');
  if (httpStatus === 429) return classify('rate_limited', { retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS });
  if (httpStatus >= 500) return classify('transient');
  // Unknown codes (e.g. 1/99) get the transient treatment; the activity's retry policy caps attempts.
  if (code !== undefined) return classify('transient');
  return classify('bad_request');
}
