import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  classifyGraphError,
  DEFAULT_RATE_LIMIT_DELAY_MS,
  FAILURE_TYPES,
  GraphApiError,
  GraphNetworkError,
  type GraphErrorClass,
  type MetaErrorBody,
} from '../../src/meta/graph-errors';
import { regainAccessSeconds } from '../../src/meta/usage-headers';
import { FIXTURES } from '../support/paths';

/** Expected classification (meta-api-contract §4.2). */
interface Expected {
  errorClass: GraphErrorClass;
  retryable: boolean;
  reauth: boolean;
  retryAfterMs?: number;
}

function expectClass(err: GraphApiError | GraphNetworkError, want: Expected): void {
  const got = classifyGraphError(err);
  expect({ errorClass: got.errorClass, retryable: got.retryable, reauth: got.reauth }).toEqual({
    errorClass: want.errorClass,
    retryable: want.retryable,
    reauth: want.reauth,
  });
  expect(got.failureType).toBe(FAILURE_TYPES[want.errorClass]);
  if (want.retryAfterMs !== undefined) expect(got.retryAfterMs).toBe(want.retryAfterMs);
  if (!got.retryable) expect(got.retryAfterMs).toBeUndefined();
}

const fixtureFiles = readdirSync(FIXTURES).filter((f) => /^send-api-error-.*\.json$/.test(f)).sort();
const fixtureBody = (file: string): MetaErrorBody => (JSON.parse(readFileSync(path.join(FIXTURES, file), 'utf8')) as { error: MetaErrorBody }).error;

/** What each Send API error fixture must classify as, keyed by its code. */
const FIXTURE_EXPECTATIONS: Record<string, Expected> = {
  '190': { errorClass: 'auth', retryable: false, reauth: true },
  '613': { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS },
  '10/2018278': { errorClass: 'outside_window', retryable: false, reauth: false },
  '551': { errorClass: 'recipient_unavailable', retryable: false, reauth: false },
};

describe('classifyGraphError on the Send API error fixtures', () => {
  it('has a fixture for every expectation and an expectation for every fixture', () => {
    expect(fixtureFiles).toHaveLength(4);
    const keys = fixtureFiles.map((f) => /^send-api-error-(\d+(?:-\d+)?)-/.exec(f)![1]!.replace('-', '/'));
    expect(keys.sort()).toEqual(Object.keys(FIXTURE_EXPECTATIONS).sort());
  });

  it.each(fixtureFiles)('%s', (file) => {
    const body = fixtureBody(file);
    const key = /^send-api-error-(\d+(?:-\d+)?)-/.exec(file)![1]!.replace('-', '/');
    const err = new GraphApiError(400, body);
    expect(err.code).toBe(body.code);
    expect(err.subcode).toBe(body.error_subcode);
    expect(err.fbtraceId).toBe(body.fbtrace_id);
    expect(err.errorType).toBe('OAuthException');
    expectClass(err, FIXTURE_EXPECTATIONS[key]!);
  });

  it.each(fixtureFiles)("keeps Meta's message text out of the error message (%s)", (file) => {
    const body = fixtureBody(file);
    const err = new GraphApiError(400, body);
    expect(body.message!.length).toBeGreaterThan(10);
    expect(err.message).not.toContain(body.message!);
    // Not even a fragment of it (the text may echo request data).
    for (const word of body.message!.split(/\s+/).filter((w) => w.length > 6)) expect(err.message).not.toContain(word);
    expect(err.message).toContain(String(body.code));
    expect(err.message).toContain('HTTP 400');
    expect(String(err)).not.toContain(body.message!);
    expect(JSON.stringify({ ...err, message: err.message })).not.toContain(body.message!);
  });
});

describe('classifyGraphError, inline cases from §4.2', () => {
  const api = (httpStatus: number, code?: number, subcode?: number, regain?: number) =>
    new GraphApiError(httpStatus, code === undefined ? undefined : { code, ...(subcode !== undefined && { error_subcode: subcode }), message: 'x', type: 'OAuthException' }, { maxPercent: undefined, regainAccessSeconds: regain });

  it.each<[string, GraphApiError, Expected]>([
    ['190/463 token expired', api(400, 190, 463), { errorClass: 'auth', retryable: false, reauth: true }],
    ['190 without subcode', api(400, 190), { errorClass: 'auth', retryable: false, reauth: true }],
    ['190/460 password changed', api(400, 190, 460), { errorClass: 'auth', retryable: false, reauth: true }],
    ['102 API session', api(400, 102), { errorClass: 'auth', retryable: false, reauth: true }],
    ['10/2534022 Instagram outside window (HTTP 403)', api(403, 10, 2534022), { errorClass: 'outside_window', retryable: false, reauth: false }],
    ['10/2018065 outside window, news messaging', api(400, 10, 2018065), { errorClass: 'outside_window', retryable: false, reauth: false }],
    ['4 app rate limit', api(400, 4), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['17 user rate limit', api(400, 17), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['32 page rate limit', api(400, 32), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['613/2534040 custom rate limit', api(400, 613, 2534040), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['80002 Instagram BUC throttle with regain time', api(400, 80002, undefined, 300), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: 300_000 }],
    ['80006 Messenger BUC throttle without regain time', api(400, 80006), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['613/2018338 tag-abuse warning', api(400, 613, 2018338), { errorClass: 'policy', retryable: false, reauth: false }],
    ['10/1893063 page restricted', api(400, 10, 1893063), { errorClass: 'policy', retryable: false, reauth: false }],
    ['100/2534029 business blocked from IG messaging', api(400, 100, 2534029), { errorClass: 'policy', retryable: false, reauth: false }],
    ['1 unknown error', api(500, 1), { errorClass: 'transient', retryable: true, reauth: false }],
    ['1/99 unknown error', api(400, 1, 99), { errorClass: 'transient', retryable: true, reauth: false }],
    ['2 service error', api(503, 2), { errorClass: 'transient', retryable: true, reauth: false }],
    ['1200 temporary send failure', api(400, 1200), { errorClass: 'transient', retryable: true, reauth: false }],
    ['100 invalid parameter', api(400, 100), { errorClass: 'bad_request', retryable: false, reauth: false }],
    ['100/2534014 IG user id instead of IGSID', api(400, 100, 2534014), { errorClass: 'bad_request', retryable: false, reauth: false }],
    ['200 not approved (app review)', api(403, 200), { errorClass: 'permission', retryable: false, reauth: false }],
    ['200/2018028 pages_messaging not approved', api(400, 200, 2018028), { errorClass: 'permission', retryable: false, reauth: false }],
    ['200/2534041 IG API access to messages disabled', api(400, 200, 2534041), { errorClass: 'permission', retryable: false, reauth: false }],
    ['10 without subcode: permission not granted', api(400, 10), { errorClass: 'permission', retryable: false, reauth: true }],
    ['10/2534077 IG ↔ Page link unverifiable', api(400, 10, 2534077), { errorClass: 'permission', retryable: false, reauth: true }],
    ['100/2534013 Page not linked to IG', api(400, 100, 2534013), { errorClass: 'permission', retryable: false, reauth: true }],
    ['551 blocked', api(400, 551), { errorClass: 'recipient_unavailable', retryable: false, reauth: false }],
    ['551/1545041 not available', api(400, 551, 1545041), { errorClass: 'recipient_unavailable', retryable: false, reauth: false }],
    ['200/1545041 not available', api(400, 200, 1545041), { errorClass: 'recipient_unavailable', retryable: false, reauth: false }],
    ['10/2018108 cannot receive messages', api(400, 10, 2018108), { errorClass: 'recipient_unavailable', retryable: false, reauth: false }],
    ['HTTP 500 without a body', api(500), { errorClass: 'transient', retryable: true, reauth: false }],
    ['HTTP 502 without a body', api(502), { errorClass: 'transient', retryable: true, reauth: false }],
    ['HTTP 429 without a body', api(429), { errorClass: 'rate_limited', retryable: true, reauth: false, retryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS }],
    ['HTTP 400 without a body', api(400), { errorClass: 'bad_request', retryable: false, reauth: false }],
  ])('%s', (_name, err, want) => {
    expectClass(err, want);
  });

  it('classifies a network failure as transient, ambiguous or not', () => {
    expectClass(new GraphNetworkError('Graph API request failed: TimeoutError', true), { errorClass: 'transient', retryable: true, reauth: false });
    expectClass(new GraphNetworkError('Graph API request failed: TypeError (ECONNREFUSED)', false), { errorClass: 'transient', retryable: true, reauth: false });
  });

  it('classifies on code and subcode, never on the HTTP status or message', () => {
    const a = classifyGraphError(new GraphApiError(400, { code: 190, error_subcode: 463, message: 'rate limit reached, retry later' }));
    const b = classifyGraphError(new GraphApiError(403, { code: 190, error_subcode: 463, message: 'something else entirely' }));
    expect(a).toEqual(b);
    expect(a.errorClass).toBe('auth');
    // A 500 that carries a permanent code is not retried.
    expect(classifyGraphError(new GraphApiError(500, { code: 100 })).retryable).toBe(false);
  });

  it("never puts Meta's message text into the error message", () => {
    const secretish = 'Error validating access token for user 7291845503617724 with token EAAB-not-a-real-token';
    const err = new GraphApiError(400, { message: secretish, code: 190, error_subcode: 467, type: 'OAuthException', fbtrace_id: 'AbC123' });
    expect(err.message).toBe('Graph API error: HTTP 400, code 190/467');
    expect(err.message).not.toContain('7291845503617724');
    expect(err.message).not.toContain('EAAB');
    expect(err.name).toBe('GraphApiError');
    expect(err.fbtraceId).toBe('AbC123');
    expect(new GraphApiError(502, undefined).message).toBe('Graph API error: HTTP 502, code none');
  });
});

describe('regainAccessSeconds (X-Business-Use-Case-Usage)', () => {
  it('reads estimated_time_to_regain_access (minutes) as seconds, taking the largest', () => {
    const header = JSON.stringify({
      '104829376511820': [
        { type: 'messenger', call_count: 100, total_cputime: 12, total_time: 30, estimated_time_to_regain_access: 5 },
        { type: 'pages', call_count: 40, total_cputime: 4, total_time: 10, estimated_time_to_regain_access: 0 },
      ],
      '17841469920315587': [{ type: 'instagram', call_count: 95, total_cputime: 8, total_time: 9, estimated_time_to_regain_access: 12 }],
    });
    expect(regainAccessSeconds(header)).toBe(12 * 60);
  });

  it('is undefined when there is nothing to wait for or nothing to read', () => {
    expect(regainAccessSeconds(null)).toBeUndefined();
    expect(regainAccessSeconds('')).toBeUndefined();
    expect(regainAccessSeconds(JSON.stringify({ '104829376511820': [{ type: 'messenger', call_count: 28, estimated_time_to_regain_access: 0 }] }))).toBeUndefined();
    expect(regainAccessSeconds(JSON.stringify({ '104829376511820': [{ type: 'messenger', call_count: 28 }] }))).toBeUndefined();
    expect(regainAccessSeconds('{}')).toBeUndefined();
    expect(regainAccessSeconds('not json')).toBeUndefined();
    expect(regainAccessSeconds('null')).toBeUndefined();
  });

  it('feeds the rate-limit delay of a throttled send', () => {
    const seconds = regainAccessSeconds(JSON.stringify({ '17841469920315587': [{ type: 'instagram', estimated_time_to_regain_access: 2 }] }));
    expect(seconds).toBe(120);
    const err = new GraphApiError(400, { code: 80002, message: 'too many calls' }, { maxPercent: 100, regainAccessSeconds: seconds });
    expect(err.regainAccessSeconds).toBe(120);
    expect(err.usage).toEqual({ maxPercent: 100, regainAccessSeconds: 120 });
    const c = classifyGraphError(err);
    expect(c).toMatchObject({ errorClass: 'rate_limited', retryable: true, retryAfterMs: 120_000 });
  });
});
