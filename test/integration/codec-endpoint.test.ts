import { defaultPayloadConverter } from '@temporalio/common';
import { startTestStack, TEST_CODEC_TOKEN, type TestStack } from '../support/stack';
import { errorOf } from '../support/webhooks';

interface WirePayload {
  metadata: Record<string, string>;
  data: string;
}

const toWire = (p: { metadata?: Record<string, Uint8Array> | null; data?: Uint8Array | null }): WirePayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

describe('codec endpoint (Temporal UI remote codec protocol)', () => {
  let stack: TestStack;
  const UI = 'http://localhost:8233';
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${stack.gatewayUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const bearer = { authorization: `Bearer ${TEST_CODEC_TOKEN}` };

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(() => stack.close());

  it('encodes and decodes for an operator with the bearer token', async () => {
    const plain = toWire(defaultPayloadConverter.toPayload({ text: 'Hallo Jürgen' }));
    const encoded = await post('/codec/encode', { payloads: [plain] }, bearer);
    expect(encoded.status).toBe(200);
    const { payloads: enc } = (await encoded.json()) as { payloads: WirePayload[] };
    expect(Buffer.from(enc[0]!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');
    expect(Buffer.from(enc[0]!.data, 'base64').toString('latin1')).not.toContain('Jürgen');

    const decoded = await post('/codec/decode', { payloads: enc }, bearer);
    expect(decoded.status).toBe(200);
    expect(((await decoded.json()) as { payloads: WirePayload[] }).payloads).toEqual([plain]);
  });

  it.each([
    ['no credentials', {}],
    ['a wrong bearer token', { authorization: 'Bearer not-the-token-at-all' }],
    ['a wrong cookie', { cookie: 'sb_codec=forged' }],
  ])('answers 401 for %s', async (_name, headers) => {
    const res = await post('/codec/decode', { payloads: [] }, headers as Record<string, string>);
    expect(res.status).toBe(401);
    expect((await errorOf(res)).code).toBe('unauthenticated');
  });

  it('lets a browser sign in once and then decode with the httpOnly cookie', async () => {
    const wrong = await fetch(`${stack.gatewayUrl}/codec/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=nope' });
    expect(wrong.status).toBe(401);
    const login = await fetch(`${stack.gatewayUrl}/codec/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${encodeURIComponent(TEST_CODEC_TOKEN)}`,
    });
    expect(login.status).toBe(200);
    const setCookie = login.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/sb_codec=[^;]+;.*httponly/i);
    expect(setCookie).toMatch(/samesite=lax/i);
    expect(setCookie).not.toContain(TEST_CODEC_TOKEN);
    const cookie = setCookie.split(';')[0]!;
    const res = await post('/codec/decode', { payloads: [] }, { cookie, origin: UI });
    expect(res.status).toBe(200);
  });

  it('sends CORS headers to the Temporal UI origin only, and answers the preflight', async () => {
    const preflight = await fetch(`${stack.gatewayUrl}/codec/decode`, {
      method: 'OPTIONS',
      headers: { origin: UI, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(UI);
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('x-namespace');

    const evil = await post('/codec/decode', { payloads: [] }, { ...bearer, origin: 'https://evil.example' });
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const alias = await post('/codec/decode', { payloads: [] }, { ...bearer, origin: 'http://127.0.0.1:8233' });
    expect(alias.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8233');
  });

  it('names the problem for a malformed body and refuses payloads it cannot decrypt', async () => {
    const bad = await post('/codec/decode', { nope: true }, bearer);
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).message).toMatch(/payloads/);
    const forged = { metadata: { encoding: Buffer.from('binary/encrypted').toString('base64'), 'encryption-key-id': Buffer.from('mk1').toString('base64') }, data: Buffer.alloc(40, 7).toString('base64') };
    const res = await post('/codec/decode', { payloads: [forged] }, bearer);
    expect(res.status).toBe(422);
    expect((await errorOf(res)).code).toBe('codec_failed');
  });
});
