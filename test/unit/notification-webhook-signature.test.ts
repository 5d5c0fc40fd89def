import { createHmac } from 'node:crypto';
import { classifyStatus, generateWebhookSecret, isNonPublicAddress, signNotification, verifyNotificationSignature, webhookUrlProblem } from '../../src/notifications/webhook';

/**
 * The tenant webhook's signature (`X-Switchboard-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<raw body>")>`), checked the way a receiver would check it with `verifyNotificationSignature`.
 */

const secret = generateWebhookSecret();
const body = JSON.stringify({ id: '6f1c1f5e-4c44-4f4b-9d7e-9a3b1f0c2d11', type: 'channel.reauth_required', reason: 'GraphAuthExpired (code 190)' });
const now = 1_780_000_000;

it('generates 32-byte base64url secrets, a different one each time', () => {
  expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
  expect(generateWebhookSecret()).not.toBe(secret);
});

it('signs HMAC-SHA256 over "<t>.<raw body>" with the secret string as the key (what a receiver recomputes)', () => {
  const header = signNotification(secret, now, body);
  const expected = createHmac('sha256', secret).update(`${now}.${body}`).digest('hex');
  expect(header).toBe(`t=${now},v1=${expected}`);
});

it('verifies its own signature, from a string or the raw bytes', () => {
  const header = signNotification(secret, now, body);
  expect(verifyNotificationSignature(secret, header, body, { nowS: now + 10 })).toEqual({ ok: true, timestampS: now });
  expect(verifyNotificationSignature(secret, header, Buffer.from(body), { nowS: now - 10 })).toEqual({ ok: true, timestampS: now });
});

it('refuses a tampered body', () => {
  const header = signNotification(secret, now, body);
  const tampered = body.replace('reauth_required', 'token_expiring');
  expect(verifyNotificationSignature(secret, header, tampered, { nowS: now })).toEqual({ ok: false, reason: 'mismatch' });
  expect(verifyNotificationSignature(secret, header, `${body} `, { nowS: now })).toEqual({ ok: false, reason: 'mismatch' });
});

it('refuses the wrong secret', () => {
  const header = signNotification(secret, now, body);
  expect(verifyNotificationSignature(generateWebhookSecret(), header, body, { nowS: now })).toEqual({ ok: false, reason: 'mismatch' });
});

it('refuses a stale timestamp (a replay) and one from the future, inside the tolerance it accepts', () => {
  const header = signNotification(secret, now, body);
  expect(verifyNotificationSignature(secret, header, body, { nowS: now + 301 })).toEqual({ ok: false, reason: 'stale' });
  expect(verifyNotificationSignature(secret, header, body, { nowS: now - 301 })).toEqual({ ok: false, reason: 'stale' });
  expect(verifyNotificationSignature(secret, header, body, { nowS: now + 300 }).ok).toBe(true);
  expect(verifyNotificationSignature(secret, header, body, { nowS: now + 3000, toleranceS: 3600 }).ok).toBe(true);
  // Moving the timestamp forward breaks the signature: it is signed too.
  const moved = header.replace(`t=${now}`, `t=${now + 400}`);
  expect(verifyNotificationSignature(secret, moved, body, { nowS: now + 400 })).toEqual({ ok: false, reason: 'mismatch' });
});

it.each([
  ['missing', undefined],
  ['empty', ''],
  ['no timestamp', `v1=${'a'.repeat(64)}`],
  ['no signature', `t=${now}`],
  ['short signature', `t=${now},v1=abcd`],
  ['non-hex signature', `t=${now},v1=${'z'.repeat(64)}`],
  ['non-numeric timestamp', `t=yesterday,v1=${'a'.repeat(64)}`],
  ['two timestamps', `t=${now},t=${now},v1=${'a'.repeat(64)}`],
  ['no key', `=${now}`],
  ['huge', `t=${now},${'x=1,'.repeat(400)}v1=${'a'.repeat(64)}`],
])('refuses a malformed header (%s)', (_label, header) => {
  expect(verifyNotificationSignature(secret, header, body, { nowS: now })).toEqual({ ok: false, reason: 'malformed' });
});

it('accepts any matching v1 among several and ignores unknown schemes', () => {
  const good = signNotification(secret, now, body).split(',')[1]!;
  expect(verifyNotificationSignature(secret, `t=${now},v0=zzz,v1=${'0'.repeat(64)},${good}`, body, { nowS: now }).ok).toBe(true);
});

describe('where a webhook may go', () => {
  it('allows http and private addresses outside production, refuses other schemes and credentials everywhere', () => {
    expect(webhookUrlProblem('http://127.0.0.1:8080/hook', { production: false })).toBeNull();
    expect(webhookUrlProblem('https://hooks.example.com/sb', { production: false })).toBeNull();
    expect(webhookUrlProblem('ftp://example.com/x', { production: false })).toMatch(/http/);
    expect(webhookUrlProblem('not a url', { production: false })).toMatch(/URL/);
    expect(webhookUrlProblem('https://user:pw@example.com/x', { production: false })).toMatch(/credentials/);
  });

  it('in production: https only, and no loopback, private or link-local host', () => {
    expect(webhookUrlProblem('https://hooks.example.com/sb', { production: true })).toBeNull();
    expect(webhookUrlProblem('http://hooks.example.com/sb', { production: true })).toMatch(/https/);
    for (const host of ['127.0.0.1', 'localhost', '10.1.2.3', '192.168.0.5', '172.20.0.1', '169.254.169.254', '[::1]', '[fd00::1]', '[::ffff:127.0.0.1]']) {
      expect([host, webhookUrlProblem(`https://${host}/x`, { production: true })]).toEqual([host, expect.stringMatching(/public/)]);
    }
  });

  it('knows public from non-public addresses', () => {
    expect(isNonPublicAddress('8.8.8.8')).toBe(false);
    expect(isNonPublicAddress('2606:4700::1111')).toBe(false);
    expect(isNonPublicAddress('100.64.1.1')).toBe(true);
    expect(isNonPublicAddress('fe80::1')).toBe(true);
  });

  it('retries 408, 429 and 5xx; a redirect or another 4xx is final', () => {
    expect(classifyStatus(204)).toEqual({ ok: true, status: 204 });
    expect(classifyStatus(500)).toMatchObject({ ok: false, retryable: true });
    expect(classifyStatus(408)).toMatchObject({ ok: false, retryable: true });
    expect(classifyStatus(429)).toMatchObject({ ok: false, retryable: true });
    expect(classifyStatus(410)).toMatchObject({ ok: false, retryable: false, error: 'HTTP 410' });
    expect(classifyStatus(302)).toMatchObject({ ok: false, retryable: false });
  });
});
