import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseUsage } from '../../src/meta/usage-headers';
import { verifySignature } from '../../src/meta/signature';
import { parseWebhookPayload } from '../../src/meta/webhook-events';
import {
  MAX_BODY_BYTES,
  SANDBOX_APP_ID,
  startGraphSandbox,
  type ErrorPreset,
  type GraphSandbox,
} from '../../src/sandbox/graph-sandbox';
import type { EchoEvent } from '../../src/shared/types';

const TOKEN = 'EAAGtestPageToken_DO_NOT_LEAK_9f8e7d';
const PAGE_ID = '104829376511820';
const PSID = '7291845503617724';
const MESSAGE_ID = /^m_[A-Za-z0-9_-]{24,}$/;
const FBTRACE_ID = /^[A-Za-z0-9_-]{10,}$/;

function fingerprint(token: string): string {
  return 'sha256:' + createHash('sha256').update(token).digest('hex').slice(0, 16);
}

interface MetaErrorBody {
  error: { message: string; type: string; code: number; error_subcode?: number; fbtrace_id: string };
}

let sandbox: GraphSandbox;

beforeAll(async () => {
  sandbox = await startGraphSandbox({ port: 0 });
});

afterAll(async () => {
  await sandbox.close();
});

beforeEach(() => {
  sandbox.reset();
});

function textBody(text = 'Hallo!', recipientId = PSID) {
  return { recipient: { id: recipientId }, messaging_type: 'RESPONSE', message: { text } };
}

async function postJson(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(sandbox.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** A valid send with the token in the query string. */
function send(path = `/v23.0/${PAGE_ID}/messages`, body: unknown = textBody()): Promise<Response> {
  return postJson(`${path}?access_token=${TOKEN}`, body);
}

async function metaError(res: Response): Promise<MetaErrorBody['error']> {
  const json = (await res.json()) as MetaErrorBody;
  expect(json.error.fbtrace_id).toMatch(FBTRACE_ID);
  return json.error;
}

describe('Send API success', () => {
  it('answers POST /{ver}/{page-id}/messages with recipient_id, message_id and X-App-Usage (token in query)', async () => {
    const res = await send();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(res.headers.get('x-app-usage') ?? 'null')).toEqual({
      call_count: 0,
      total_time: 0,
      total_cputime: 0,
    });
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['message_id', 'recipient_id']);
    expect(body['recipient_id']).toBe(PSID);
    expect(body['message_id']).toMatch(MESSAGE_ID);
  });

  it('answers POST /{ver}/me/messages with the token in an Authorization: Bearer header', async () => {
    const res = await postJson('/v23.0/me/messages', textBody('Entregamos sim!', '1128374650392817'), {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { recipient_id: string; message_id: string };
    expect(body.recipient_id).toBe('1128374650392817');
    expect(body.message_id).toMatch(MESSAGE_ID);
    expect(sandbox.requests()[0]?.tokenHash).toBe(fingerprint(TOKEN));
  });

  it('accepts the unversioned /me/messages and /{id}/messages forms', async () => {
    for (const path of ['/me/messages', `/${PAGE_ID}/messages`]) {
      const res = await send(path);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { message_id: string }).message_id).toMatch(MESSAGE_ID);
    }
    expect(sandbox.requests().map((r) => r.path)).toEqual(['/me/messages', `/${PAGE_ID}/messages`]);
  });

  it('gives every message a distinct message_id', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add(((await (await send()).json()) as { message_id: string }).message_id);
    expect(ids.size).toBe(5);
  });

  it('answers a sender_action with recipient_id only', async () => {
    const res = await send('/v23.0/me/messages', { recipient: { id: PSID }, sender_action: 'typing_on' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ recipient_id: PSID });
  });

  it('accepts attachments', async () => {
    const res = await send(undefined, {
      recipient: { id: PSID },
      message: { attachment: { type: 'image', payload: { url: 'https://example.test/a.png', is_reusable: true } } },
    });
    expect(res.status).toBe(200);
  });

  it('accepts a form-encoded body with JSON-encoded recipient and message, like Meta', async () => {
    const form = new URLSearchParams({
      recipient: JSON.stringify({ id: PSID }),
      message: JSON.stringify({ text: 'form' }),
      messaging_type: 'RESPONSE',
    });
    const res = await fetch(`${sandbox.url}/v23.0/${PAGE_ID}/messages?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { recipient_id: string }).recipient_id).toBe(PSID);
    expect(sandbox.requests()[0]?.body).toEqual({
      recipient: { id: PSID },
      message: { text: 'form' },
      messaging_type: 'RESPONSE',
    });
  });
});

describe('recording and token redaction', () => {
  it('records method, path, query, parsed body, time and status', async () => {
    const before = Date.now();
    await send(`/v23.0/${PAGE_ID}/messages`, textBody('recorded'));
    const [rec] = sandbox.requests();
    expect(rec).toMatchObject({
      method: 'POST',
      path: `/v23.0/${PAGE_ID}/messages`,
      body: textBody('recorded'),
      status: 200,
      tokenHash: fingerprint(TOKEN),
    });
    expect(rec!.receivedAt).toBeGreaterThanOrEqual(before);
    expect(rec!.receivedAt).toBeLessThanOrEqual(Date.now());
  });

  it('never keeps the token in clear, whichever way it was sent', async () => {
    await send();
    await postJson('/v23.0/me/messages', textBody(), { authorization: `Bearer ${TOKEN}` });
    const form = new URLSearchParams({
      access_token: TOKEN,
      recipient: JSON.stringify({ id: PSID }),
      message: JSON.stringify({ text: 'token in body' }),
    });
    await fetch(`${sandbox.url}/me/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    // A failed request must be redacted too.
    await fetch(`${sandbox.url}/me/messages?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"not json ${TOKEN}`,
    });

    const records = sandbox.requests();
    expect(records).toHaveLength(4);
    expect(JSON.stringify(records)).not.toContain(TOKEN);
    expect(records.map((r) => r.tokenHash)).toEqual(Array(4).fill(fingerprint(TOKEN)));
    expect(records[0]!.query).toEqual({ access_token: fingerprint(TOKEN) });
    expect(records[1]!.query).toEqual({});
    expect((records[2]!.body as Record<string, unknown>)['access_token']).toBe(fingerprint(TOKEN));

    const res = await fetch(`${sandbox.url}/_sandbox/requests`);
    expect(res.status).toBe(200);
    const raw = await res.text();
    expect(raw).not.toContain(TOKEN);
    expect(JSON.parse(raw)).toHaveLength(4);
    expect(raw).toContain(fingerprint(TOKEN));
  });

  it('records failed requests with the status that was answered', async () => {
    await postJson('/v23.0/me/messages', textBody());
    await send('/v23.0/me/messages', { recipient: { id: PSID } });
    await send();
    expect(sandbox.requests().map((r) => r.status)).toEqual([400, 400, 200]);
    expect(sandbox.requests()[0]!.tokenHash).toBeUndefined();
  });

  it('filters GET /_sandbox/requests by ?since=', async () => {
    await send();
    await new Promise((r) => setTimeout(r, 20));
    const since = Date.now();
    await send(undefined, textBody('after'));
    const res = await fetch(`${sandbox.url}/_sandbox/requests?since=${since}`);
    const list = (await res.json()) as Array<{ body: { message: { text: string } } }>;
    expect(list).toHaveLength(1);
    expect(list[0]!.body.message.text).toBe('after');

    const bad = await fetch(`${sandbox.url}/_sandbox/requests?since=yesterday`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/since/);
  });

  it('keeps only the newest maxRecords records', async () => {
    const small = await startGraphSandbox({ port: 0, maxRecords: 3 });
    try {
      for (let i = 1; i <= 5; i++) {
        await fetch(`${small.url}/me/messages?access_token=t`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(textBody(`n${i}`)),
        });
      }
      expect(small.requests().map((r) => (r.body as { message: { text: string } }).message.text)).toEqual([
        'n3',
        'n4',
        'n5',
      ]);
    } finally {
      await small.close();
    }
  });

  it('does not record control routes', async () => {
    await fetch(`${sandbox.url}/_sandbox/health`);
    await fetch(`${sandbox.url}/_sandbox/requests`);
    expect(sandbox.requests()).toEqual([]);
  });
});

describe('validation errors use the Meta error shape', () => {
  it('rejects a missing token with 400 / OAuthException 2500', async () => {
    const res = await postJson(`/v23.0/${PAGE_ID}/messages`, textBody());
    expect(res.status).toBe(400);
    expect(res.headers.get('x-app-usage')).not.toBeNull();
    const err = await metaError(res);
    expect(err).toMatchObject({
      message: 'An active access token must be used to query information about the current user.',
      type: 'OAuthException',
      code: 2500,
    });
  });

  it('rejects a missing recipient with (#100) naming the parameter', async () => {
    const res = await send(undefined, { message: { text: 'x' } });
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err.code).toBe(100);
    expect(err.type).toBe('OAuthException');
    expect(err.message).toMatch(/^\(#100\) .*recipient/);
  });

  it('rejects a numeric recipient id (IDs must stay strings)', async () => {
    const res = await send(undefined, { recipient: { id: 7291845503617724 }, message: { text: 'x' } });
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err.code).toBe(100);
    expect(err.message).toMatch(/recipient\[id\].*string/);
  });

  it('rejects a body with neither message nor sender_action, and one with both', async () => {
    const neither = await metaError(await send(undefined, { recipient: { id: PSID } }));
    expect(neither.code).toBe(100);
    expect(neither.message).toMatch(/message or sender_action/);

    const both = await metaError(
      await send(undefined, { recipient: { id: PSID }, message: { text: 'x' }, sender_action: 'typing_on' }),
    );
    expect(both.code).toBe(100);
    expect(both.message).toMatch(/Only one of message or sender_action/);
  });

  it('rejects an empty message, over-long text and an unknown sender_action', async () => {
    const empty = await metaError(await send(undefined, { recipient: { id: PSID }, message: {} }));
    expect(empty.message).toMatch(/attachment or text/);
    const long = await metaError(await send(undefined, textBody('x'.repeat(2001))));
    expect(long.message).toMatch(/message\[text\].*2000/);
    const action = await metaError(await send(undefined, { recipient: { id: PSID }, sender_action: 'dance' }));
    expect(action.message).toMatch(/sender_action/);
    expect([empty.code, long.code, action.code]).toEqual([100, 100, 100]);
  });

  it('rejects MESSAGE_TAG without a tag', async () => {
    const err = await metaError(
      await send(undefined, { recipient: { id: PSID }, messaging_type: 'MESSAGE_TAG', message: { text: 'x' } }),
    );
    expect(err.code).toBe(100);
    expect(err.message).toMatch(/tag/);
  });

  it('rejects a non-JSON body with (#100)', async () => {
    const res = await fetch(`${sandbox.url}/v23.0/me/messages?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"recipient": {"id": ',
    });
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err.code).toBe(100);
    expect(err.message).toMatch(/^\(#100\) .*JSON/);
  });

  it('rejects a JSON body sent without a JSON content type', async () => {
    const res = await fetch(`${sandbox.url}/v23.0/me/messages?access_token=${TOKEN}`, {
      method: 'POST',
      body: JSON.stringify(textBody()), // fetch labels a string body text/plain
    });
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err.code).toBe(100);
    expect(err.message).toMatch(/Content-Type/);
  });

  it('answers unknown paths with 2500 "Unknown path components"', async () => {
    const res = await send('/v23.0/me/messagez');
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err).toMatchObject({ code: 2500, type: 'OAuthException', message: 'Unknown path components: /messagez' });
    expect(sandbox.requests()[0]).toMatchObject({ path: '/v23.0/me/messagez', status: 400 });
  });

  it('answers 803 for a node that is not an ID (e.g. an interpolated "undefined")', async () => {
    const err = await metaError(await send('/v23.0/undefined/messages'));
    expect(err.code).toBe(803);
    expect(err.message).toMatch(/undefined/);
  });

  it('answers a wrong method on a known path with code 100 / subcode 33', async () => {
    const res = await fetch(`${sandbox.url}/v23.0/me/messages?access_token=${TOKEN}`);
    expect(res.status).toBe(400);
    const err = await metaError(res);
    expect(err).toMatchObject({ code: 100, error_subcode: 33 });
  });

  it('answers 413 to a body over 1 MiB and records it; exactly 1 MiB is accepted', async () => {
    const base = JSON.stringify({ ...textBody(), padding: '' });
    const pad = (bytes: number) => JSON.stringify({ ...textBody(), padding: 'x'.repeat(bytes - base.length) });
    expect(Buffer.byteLength(pad(MAX_BODY_BYTES))).toBe(MAX_BODY_BYTES);

    const ok = await fetch(`${sandbox.url}/me/messages?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: pad(MAX_BODY_BYTES),
    });
    expect(ok.status).toBe(200);

    const tooBig = await fetch(`${sandbox.url}/me/messages?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: pad(MAX_BODY_BYTES + 1),
    });
    expect(tooBig.status).toBe(413);
    expect((await tooBig.json()) as MetaErrorBody).toHaveProperty('error.fbtrace_id');
    expect(sandbox.requests().map((r) => r.status)).toEqual([200, 413]);
    expect(sandbox.requests()[1]!.body).toBeNull();
  });
});

describe('fault injection', () => {
  const presets: Array<[Exclude<ErrorPreset, 'timeout'>, number, string, number, number | undefined]> = [
    ['token_expired', 400, 'OAuthException', 190, 463],
    ['rate_limit', 400, 'OAuthException', 613, 2534040],
    ['outside_window', 400, 'OAuthException', 10, 2018278],
    ['ig_outside_window', 400, 'IGApiException', 10, 2534022],
    ['user_unavailable', 400, 'OAuthException', 551, 1545041],
    ['permission_denied', 400, 'OAuthException', 10, undefined],
    ['server_error', 500, 'OAuthException', 2, undefined],
  ];

  it.each(presets)('preset %s answers HTTP %i with %s %i/%p', async (preset, status, type, code, subcode) => {
    sandbox.failNext({ count: 1, preset });
    const res = await send();
    expect(res.status).toBe(status);
    const err = await metaError(res);
    expect(err.type).toBe(type);
    expect(err.code).toBe(code);
    expect(err.error_subcode).toBe(subcode);
    expect(err.message.length).toBeGreaterThan(10);
    expect(sandbox.requests()[0]).toMatchObject({ status, tokenHash: fingerprint(TOKEN), body: textBody() });
  });

  it('uses the documented messages for the common presets', async () => {
    const messages: Record<string, RegExp> = {
      token_expired: /^Error validating access token: Session has expired on .+\. The current time is .+\.$/,
      rate_limit: /^Calls to this api have exceeded the rate limit\.$/,
      outside_window: /^\(#10\) This message is sent outside of allowed window\./,
      user_unavailable: /This person isn't available right now\.$/,
      permission_denied: /^\(#10\) Permission denied$/,
      server_error: /^An unexpected error has occurred\. Please retry your request later\.$/,
    };
    for (const [preset, re] of Object.entries(messages)) {
      sandbox.failNext({ count: 1, preset: preset as ErrorPreset });
      expect((await metaError(await send())).message).toMatch(re);
    }
  });

  it('fails exactly `count` matching calls, then succeeds', async () => {
    sandbox.failNext({ count: 2, preset: 'rate_limit' });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await send()).status);
    expect(statuses).toEqual([400, 400, 200, 200]);
  });

  it('consumes queued faults in order', async () => {
    sandbox.failNext({ count: 1, preset: 'server_error' });
    sandbox.failNext({ count: 2, preset: 'token_expired' });
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await metaError(await send())).code);
    expect(codes).toEqual([2, 190, 190]);
    expect((await send()).status).toBe(200);
  });

  it('applies a fault with `match` only to paths containing it', async () => {
    sandbox.failNext({ count: 1, preset: 'ig_outside_window', match: '/me/messages' });
    expect((await send(`/v23.0/${PAGE_ID}/messages`)).status).toBe(200);
    const res = await send('/v23.0/me/messages');
    expect(res.status).toBe(400);
    expect((await metaError(res)).error_subcode).toBe(2534022);
    expect((await send('/v23.0/me/messages')).status).toBe(200);
  });

  it('lets a later unmatched-path fault apply while an earlier `match` fault waits', async () => {
    sandbox.failNext({ count: 1, preset: 'outside_window', match: '/me/' });
    sandbox.failNext({ count: 1, preset: 'user_unavailable' });
    expect((await metaError(await send(`/${PAGE_ID}/messages`))).code).toBe(551);
    expect((await metaError(await send('/me/messages'))).code).toBe(10);
  });

  it('serves a custom error with a custom status', async () => {
    sandbox.failNext({
      count: 1,
      status: 403,
      error: { message: '(#200) no pages_messaging', type: 'OAuthException', code: 200, error_subcode: 2018028 },
    });
    const res = await send();
    expect(res.status).toBe(403);
    expect(await metaError(res)).toMatchObject({ code: 200, error_subcode: 2018028, message: '(#200) no pages_messaging' });
  });

  it('delays a fault answer by delayMs', async () => {
    sandbox.failNext({ count: 1, preset: 'server_error', delayMs: 150 });
    const started = Date.now();
    const res = await send();
    expect(res.status).toBe(500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('timeout: records the request and never answers; the client gives up', async () => {
    sandbox.failNext({ count: 1, preset: 'timeout', delayMs: 5_000 });
    const controller = new AbortController();
    const aborter = setTimeout(() => controller.abort(), 150);
    const started = Date.now();
    try {
      await expect(
        fetch(`${sandbox.url}/v23.0/me/messages?access_token=${TOKEN}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(textBody('ambiguous')),
          signal: controller.signal,
        }),
      ).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      clearTimeout(aborter);
    }
    expect(Date.now() - started).toBeLessThan(4_000);
    const [rec] = sandbox.requests();
    expect(rec).toMatchObject({ path: '/v23.0/me/messages', status: 0, body: textBody('ambiguous') });
    expect((await send()).status).toBe(200);
  });

  it('timeout: drops the connection after delayMs when the client waits', async () => {
    sandbox.failNext({ count: 1, preset: 'timeout', delayMs: 100 });
    const started = Date.now();
    await expect(send()).rejects.toThrow();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(sandbox.requests()).toHaveLength(1);
    expect((await send()).status).toBe(200);
  });

  it('failNext rejects an invalid spec', () => {
    expect(() => sandbox.failNext({ count: 0, preset: 'rate_limit' })).toThrow(/count/);
    expect(() => sandbox.failNext({ count: 1 })).toThrow(/preset.*error/);
    expect(() => sandbox.failNext({ count: 1, preset: 'nope' as ErrorPreset })).toThrow(/preset/);
  });
});

describe('control routes', () => {
  async function postFault(body: unknown): Promise<Response> {
    return fetch(`${sandbox.url}/_sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  it('GET /_sandbox/health', async () => {
    const res = await fetch(`${sandbox.url}/_sandbox/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it('POST /_sandbox/faults queues a fault (204) that the next call consumes', async () => {
    const res = await postFault({ count: 1, preset: 'outside_window' });
    expect(res.status).toBe(204);
    const err = await metaError(await send());
    expect(err).toMatchObject({ code: 10, error_subcode: 2018278 });
    expect((await send()).status).toBe(200);
  });

  it('POST /_sandbox/faults rejects bad specs with 400 naming the problem', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ count: 0, preset: 'rate_limit' }, /count/],
      [{ count: 1, preset: 'made_up' }, /preset/],
      [{ count: 1 }, /exactly one of "preset" or "error"/],
      [{ count: 1, preset: 'rate_limit', error: { message: 'm', type: 't', code: 1 } }, /exactly one/],
      [{ count: 1, error: { message: 'm', type: 't' } }, /error\.code/],
      [{ count: 1, preset: 'rate_limit', status: 99 }, /status/],
      [{ counts: 1, preset: 'rate_limit' }, /counts/],
      ['{"count": 1,', /JSON/],
    ];
    for (const [body, re] of cases) {
      const res = await postFault(body);
      expect(res.status).toBe(400);
      const json = (await res.json()) as { error: string };
      expect(typeof json.error).toBe('string');
      expect(json.error).toMatch(re);
    }
    expect((await send()).status).toBe(200); // nothing was queued
  });

  it('DELETE /_sandbox/faults clears queued faults', async () => {
    sandbox.failNext({ count: 5, preset: 'rate_limit' });
    const res = await fetch(`${sandbox.url}/_sandbox/faults`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect((await send()).status).toBe(200);
  });

  it('DELETE /_sandbox/requests clears the records', async () => {
    await send();
    expect(sandbox.requests()).toHaveLength(1);
    const res = await fetch(`${sandbox.url}/_sandbox/requests`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(sandbox.requests()).toEqual([]);
    expect(await (await fetch(`${sandbox.url}/_sandbox/requests`)).json()).toEqual([]);
  });

  it('reset() clears records and faults', async () => {
    await send();
    sandbox.failNext({ count: 3, preset: 'server_error' });
    sandbox.reset();
    expect(sandbox.requests()).toEqual([]);
    expect((await send()).status).toBe(200);
  });

  it('answers unknown control routes with 404 and wrong methods with 405', async () => {
    expect((await fetch(`${sandbox.url}/_sandbox/nope`)).status).toBe(404);
    expect((await fetch(`${sandbox.url}/_sandbox/health`, { method: 'DELETE' })).status).toBe(405);
  });
});

describe('lifecycle and latency', () => {
  it('applies latencyMs to Graph answers but not to control routes', async () => {
    const slow = await startGraphSandbox({ port: 0, latencyMs: 200 });
    try {
      let started = Date.now();
      const res = await fetch(`${slow.url}/me/messages?access_token=t`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(textBody()),
      });
      expect(res.status).toBe(200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);

      started = Date.now();
      expect((await fetch(`${slow.url}/_sandbox/health`)).status).toBe(200);
      expect(Date.now() - started).toBeLessThan(190);
    } finally {
      await slow.close();
    }
  });

  it('close() ends keep-alive and held connections promptly and is idempotent', async () => {
    const other = await startGraphSandbox({ port: 0 });
    // A keep-alive connection left idle in fetch's pool, plus a request held by a timeout fault.
    await fetch(`${other.url}/_sandbox/health`);
    other.failNext({ count: 1, preset: 'timeout', delayMs: 30_000 });
    const held = fetch(`${other.url}/me/messages?access_token=t`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(textBody()),
    }).catch((err: unknown) => err);
    await waitFor(() => other.requests().length === 1);

    const started = Date.now();
    await other.close();
    await other.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    // fetch's TypeError comes from Node's realm, not jest's, so instanceof Error would fail here.
    expect(await held).toHaveProperty('message', 'fetch failed');
    await expect(fetch(`${other.url}/_sandbox/health`)).rejects.toThrow();
  });
});

describe('drop_after_accept: the ambiguous send that reached the customer', () => {
  it('accepts the message (recorded with its message_id) and drops the socket without an answer', async () => {
    sandbox.failNext({ count: 1, preset: 'drop_after_accept' });
    const err = (await send(undefined, textBody('did it arrive?')).catch((e: unknown) => e)) as { message: string; cause?: { code?: string } };
    // A reset, not a refusal: the client cannot tell whether Meta took it.
    expect(err.message).toBe('fetch failed');
    expect(err.cause?.code).not.toBe('ECONNREFUSED');
    const [rec] = sandbox.requests();
    expect(rec).toMatchObject({ status: 0, body: textBody('did it arrive?') });
    expect(rec!.messageId).toMatch(MESSAGE_ID);
    // The fault is used up: the next call is answered.
    expect((await send()).status).toBe(200);
  });

  it('holds the accepted request for delayMs before dropping it', async () => {
    sandbox.failNext({ count: 1, preset: 'drop_after_accept', delayMs: 150 });
    const started = Date.now();
    await expect(send()).rejects.toThrow();
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(sandbox.requests()[0]!.messageId).toMatch(MESSAGE_ID);
  });

  it('answers a request the Send API would refuse with its error, as Meta would', async () => {
    sandbox.failNext({ count: 1, preset: 'drop_after_accept' });
    const res = await send(undefined, { recipient: { id: PSID }, messaging_type: 'RESPONSE', message: {} });
    expect(res.status).toBe(400);
    expect(sandbox.requests()[0]).not.toHaveProperty('messageId');
  });

  it('differs from timeout, which is never accepted', async () => {
    sandbox.failNext({ count: 1, preset: 'timeout', delayMs: 50 });
    await expect(send()).rejects.toThrow();
    expect(sandbox.requests()[0]).toMatchObject({ status: 0 });
    expect(sandbox.requests()[0]).not.toHaveProperty('messageId');
  });
});

interface Received {
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
}

/** A stand-in for the gateway's webhook route: records what it receives, answers 200. */
async function startWebhookReceiver(status = 200): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, raw: Buffer.concat(chunks) });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/meta`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('echoes', () => {
  const APP_SECRET = 'sandbox-echo-secret';
  const IG_ID = '17841469920315587';
  const IGSID = '1128374650392817';
  let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;

  beforeEach(async () => {
    receiver = await startWebhookReceiver();
  });
  afterEach(async () => {
    sandbox.setEcho(null);
    await receiver.close();
  });

  function verifiedEcho(r: Received): { object: string; echo: EchoEvent } {
    expect(r.headers['content-type']).toBe('application/json');
    expect(verifySignature(r.headers['x-hub-signature-256'] as string, r.raw, [APP_SECRET])).toBe(0);
    expect(verifySignature(r.headers['x-hub-signature-256'] as string, r.raw, ['another-secret'])).toBe(-1);
    const parsed = parseWebhookPayload(JSON.parse(r.raw.toString('utf8')));
    expect(parsed.unsupported).toEqual([]);
    expect(parsed.events).toHaveLength(1);
    expect(parsed.events[0]!.kind).toBe('echo');
    return { object: parsed.object, echo: parsed.events[0] as EchoEvent };
  }

  it('delivers a signed message_echoes event for each accepted message, in the shape our parser reads', async () => {
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET });
    const before = Date.now();
    const res = await send(undefined, {
      recipient: { id: PSID },
      messaging_type: 'RESPONSE',
      message: { text: 'Ja, Größe M ist noch da 👍', metadata: 'sb:out:5f0c7d52-3f6e-4a34-9d1e-2b7c1a9e8f00' },
    });
    const { message_id } = (await res.json()) as { message_id: string };
    await sandbox.echoesSettled();

    expect(receiver.received).toHaveLength(1);
    // Meta escapes non-ASCII; the signature is over exactly these bytes.
    expect(receiver.received[0]!.raw.toString('utf8')).toContain('Gr\\u00f6\\u00dfe');
    const { object, echo } = verifiedEcho(receiver.received[0]!);
    expect(object).toBe('page');
    expect(echo).toMatchObject({
      kind: 'echo',
      platform: 'messenger',
      accountId: PAGE_ID,
      customerId: PSID,
      mid: message_id,
      text: 'Ja, Größe M ist noch da 👍',
      metadata: 'sb:out:5f0c7d52-3f6e-4a34-9d1e-2b7c1a9e8f00',
      appId: String(SANDBOX_APP_ID),
    });
    expect(echo.timestamp).toBeGreaterThanOrEqual(before);
    expect(sandbox.echoes()).toEqual([expect.objectContaining({ mid: message_id, object: 'page', accountId: PAGE_ID, status: 200 })]);
  });

  it('echoes a dropped-but-accepted send too (drop_after_accept), and never a refused one', async () => {
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET });
    sandbox.failNext({ count: 1, preset: 'drop_after_accept' });
    await expect(send(undefined, { recipient: { id: PSID }, messaging_type: 'RESPONSE', message: { text: 'lost answer', metadata: 'sb:out:x' } })).rejects.toThrow();
    sandbox.failNext({ count: 1, preset: 'rate_limit' });
    expect((await send()).status).toBe(400);
    sandbox.failNext({ count: 1, preset: 'timeout', delayMs: 20 });
    await expect(send()).rejects.toThrow();
    expect((await send(undefined, { recipient: { id: PSID }, sender_action: 'typing_on' })).status).toBe(200);
    await sandbox.echoesSettled();

    expect(receiver.received).toHaveLength(1);
    const { echo } = verifiedEcho(receiver.received[0]!);
    expect(echo.mid).toBe(sandbox.requests()[0]!.messageId);
    expect(echo).toMatchObject({ text: 'lost answer', metadata: 'sb:out:x' });
  });

  it('uses object instagram for Instagram accounts, and resolves /me through the configured token', async () => {
    const igToken = 'IGAAtestInstagramToken';
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET, accounts: [{ id: IG_ID, accessToken: igToken }] });
    const res = await postJson('/v23.0/me/messages', { recipient: { id: IGSID }, message: { text: 'Entregamos sim!' } }, { authorization: `Bearer ${igToken}` });
    expect(res.status).toBe(200);
    await sandbox.echoesSettled();
    const { object, echo } = verifiedEcho(receiver.received[0]!);
    expect(object).toBe('instagram');
    expect(echo).toMatchObject({ platform: 'instagram', accountId: IG_ID, customerId: IGSID, text: 'Entregamos sim!' });
    // The token is only kept as a fingerprint, and the secret is never shown.
    const view = await (await fetch(`${sandbox.url}/_sandbox/echo`)).text();
    expect(view).not.toContain(igToken);
    expect(view).not.toContain(APP_SECRET);
    expect(view).toContain(fingerprint(igToken));
  });

  it('uses the configured object for an account given by id (Messenger API for Instagram)', async () => {
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET, accounts: [{ id: IG_ID, object: 'instagram' }] });
    await send(`/v23.0/${IG_ID}/messages`, textBody('via the Page token', IGSID));
    await sandbox.echoesSettled();
    expect(verifiedEcho(receiver.received[0]!).object).toBe('instagram');
  });

  it('skips an echo it cannot address (/me with an unknown token) and records why', async () => {
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET });
    expect((await send('/v23.0/me/messages')).status).toBe(200);
    await sandbox.echoesSettled();
    expect(receiver.received).toEqual([]);
    expect(sandbox.echoes()).toEqual([expect.objectContaining({ accountId: undefined, error: expect.stringMatching(/\/me/) })]);
  });

  it('delivers after delayMs', async () => {
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET, delayMs: 150 });
    const started = Date.now();
    await send();
    expect(receiver.received).toHaveLength(0);
    await sandbox.echoesSettled();
    expect(receiver.received).toHaveLength(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('never crashes when the webhook is down or refuses: the failure is recorded, sends go on', async () => {
    const gone = await startWebhookReceiver();
    await gone.close(); // a port nobody listens on any more
    sandbox.setEcho({ webhookUrl: gone.url, appSecret: APP_SECRET });
    expect((await send()).status).toBe(200);
    await sandbox.echoesSettled();
    expect(sandbox.echoes()[0]).toMatchObject({ error: expect.stringContaining('ECONNREFUSED') });

    const refusing = await startWebhookReceiver(503);
    try {
      sandbox.setEcho({ webhookUrl: refusing.url, appSecret: APP_SECRET });
      expect((await send()).status).toBe(200);
      await sandbox.echoesSettled();
      expect(sandbox.echoes()[1]).toMatchObject({ status: 503 });
      expect(refusing.received).toHaveLength(1);
    } finally {
      await refusing.close();
    }
  });

  it('is switched on and off at runtime through POST/DELETE /_sandbox/echo, with bad options refused', async () => {
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ webhookUrl: receiver.url, appSecret: APP_SECRET })).status).toBe(204);
    await send();
    await sandbox.echoesSettled();
    expect(receiver.received).toHaveLength(1);

    expect((await fetch(`${sandbox.url}/_sandbox/echo`, { method: 'DELETE' })).status).toBe(204);
    await send();
    await sandbox.echoesSettled();
    expect(receiver.received).toHaveLength(1);
    expect(((await (await fetch(`${sandbox.url}/_sandbox/echo`)).json()) as { echo: unknown }).echo).toBeNull();

    for (const [body, re] of [
      [{ webhookUrl: 'ftp://x/y', appSecret: 's' }, /webhookUrl/],
      [{ webhookUrl: receiver.url }, /appSecret/],
      [{ webhookUrl: receiver.url, appSecret: 's', delay: 5 }, /delay/],
      [{ webhookUrl: receiver.url, appSecret: 's', accounts: [{ id: 'me' }] }, /accounts\.0\.id/],
    ] as const) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(re);
    }
    expect(() => sandbox.setEcho({ webhookUrl: 'not a url', appSecret: 's' })).toThrow(/webhookUrl/);
  });

  it('starts with echoes from the options, and reset() restores them', async () => {
    const other = await startGraphSandbox({ port: 0, echo: { webhookUrl: receiver.url, appSecret: APP_SECRET } });
    try {
      other.setEcho(null);
      other.reset();
      await fetch(`${other.url}/v23.0/${PAGE_ID}/messages?access_token=t`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(textBody()) });
      await other.echoesSettled();
      expect(receiver.received).toHaveLength(1);
      verifiedEcho(receiver.received[0]!);
    } finally {
      await other.close();
    }
  });
});

describe('usage headers', () => {
  const BUC = { [PAGE_ID]: [{ type: 'messenger', call_count: 96, total_cputime: 20, total_time: 30, estimated_time_to_regain_access: 2 }] };

  it('answers with zeros by default and without a BUC header', async () => {
    const res = await send();
    expect(res.headers.get('x-business-use-case-usage')).toBeNull();
    expect(parseUsage(res.headers)).toEqual({ maxPercent: 0, regainAccessSeconds: undefined });
  });

  it('carries the usage set with setUsage on successes and errors alike', async () => {
    sandbox.setUsage({ appUsage: { call_count: 80 }, businessUseCaseUsage: BUC });
    const ok = await send();
    expect(JSON.parse(ok.headers.get('x-app-usage')!)).toEqual({ call_count: 80, total_time: 0, total_cputime: 0 });
    expect(JSON.parse(ok.headers.get('x-business-use-case-usage')!)).toEqual(BUC);
    expect(parseUsage(ok.headers)).toEqual({ maxPercent: 96, regainAccessSeconds: 120 });

    sandbox.failNext({ count: 1, preset: 'rate_limit' });
    const throttled = await send();
    expect(throttled.status).toBe(400);
    expect(parseUsage(throttled.headers)).toEqual({ maxPercent: 96, regainAccessSeconds: 120 });
  });

  it('is set, read and cleared through /_sandbox/usage, with bad input refused', async () => {
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/usage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ businessUseCaseUsage: BUC })).status).toBe(204);
    expect(await (await fetch(`${sandbox.url}/_sandbox/usage`)).json()).toEqual({ businessUseCaseUsage: BUC });
    expect(parseUsage((await send()).headers).regainAccessSeconds).toBe(120);

    for (const [body, re] of [
      [{ appUsage: { call_count: -1 } }, /appUsage\.call_count/],
      [{ appUsage: { calls: 1 } }, /calls/],
      [{ businessUseCaseUsage: { [PAGE_ID]: [{ type: 'messenger', call_count: 1 }] } }, /total_time/],
      [{ businessUseCaseUsage: { page: [] } }, /businessUseCaseUsage/],
    ] as const) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(re);
    }
    expect(() => sandbox.setUsage({ appUsage: { call_count: Number.NaN } })).toThrow(/call_count/);

    expect((await fetch(`${sandbox.url}/_sandbox/usage`, { method: 'DELETE' })).status).toBe(204);
    expect((await send()).headers.get('x-business-use-case-usage')).toBeNull();
  });

  it('starts with the usage from the options, and reset() restores it', async () => {
    const other = await startGraphSandbox({ port: 0, usage: { appUsage: { total_time: 90, call_count: 1, total_cputime: 1 } } });
    try {
      other.setUsage({});
      other.reset();
      const res = await fetch(`${other.url}/me/messages?access_token=t`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(textBody()) });
      expect(parseUsage(res.headers).maxPercent).toBe(90);
    } finally {
      await other.close();
    }
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
