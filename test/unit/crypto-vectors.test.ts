import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DecryptionError, TokenCipher, gcmOpen, gcmSeal } from '../../src/crypto/token-cipher';
import { hmacSha256Hex, signPayload, verifySignature } from '../../src/meta/signature';
import { WYCHEPROOF } from '../support/paths';

interface AeadCase { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: 'valid' | 'invalid' | 'acceptable' }
interface AeadGroup { keySize: number; ivSize: number; tagSize: number; tests: AeadCase[] }
interface MacCase { tcId: number; key: string; msg: string; tag: string; result: 'valid' | 'invalid' }
interface MacGroup { keySize: number; tagSize: number; tests: MacCase[] }

const load = <T>(file: string): T => JSON.parse(readFileSync(path.join(WYCHEPROOF, file), 'utf8')) as T;
const hex = (s: string) => Buffer.from(s, 'hex');

describe('AES-256-GCM against Wycheproof', () => {
  const groups = load<{ testGroups: AeadGroup[] }>('aes_gcm_test.json').testGroups;
  const ours = groups.filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128);
  const ourCases = ours.flatMap((g) => g.tests);
  const allInvalid = groups.flatMap((g) => g.tests.filter((t) => t.result === 'invalid'));

  it('has the cases this format uses', () => {
    expect(ourCases.filter((t) => t.result === 'valid').length).toBeGreaterThan(20);
    expect(allInvalid.length).toBeGreaterThan(20);
  });

  it.each(ourCases.filter((t) => t.result === 'valid').map((t) => [t.tcId, t] as const))('valid case %i round-trips', (_id, t) => {
    const sealed = gcmSeal(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad));
    expect(sealed.ciphertext.toString('hex')).toBe(t.ct);
    expect(sealed.tag.toString('hex')).toBe(t.tag);
    expect(gcmOpen(hex(t.key), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad)).toString('hex')).toBe(t.msg);
  });

  it.each(allInvalid.map((t) => [t.tcId, t] as const))('invalid case %i is rejected', (_id, t) => {
    expect(() => gcmOpen(hex(t.key), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad))).toThrow();
  });
});

describe('TokenCipher', () => {
  const key = Buffer.alloc(32, 7).toString('base64');
  const ctx = { table: 'channels', column: 'access_token', rowId: 'ch_1' };

  it('uses a fresh nonce per encryption and decrypts its own output', () => {
    const cipher = new TokenCipher(key);
    const a = cipher.encrypt('EAAB-token', ctx);
    const b = cipher.encrypt('EAAB-token', ctx);
    expect(a.equals(b)).toBe(false);
    expect(cipher.decrypt(a, ctx)).toBe('EAAB-token');
  });

  it('refuses a ciphertext moved to another row or column, or tampered with', () => {
    const cipher = new TokenCipher(key);
    const blob = cipher.encrypt('EAAB-token', ctx);
    expect(() => cipher.decrypt(blob, { ...ctx, rowId: 'ch_2' })).toThrow(DecryptionError);
    expect(() => cipher.decrypt(blob, { ...ctx, column: 'other' })).toThrow(DecryptionError);
    const flipped = Buffer.from(blob);
    flipped[flipped.length - 1]! ^= 1;
    expect(() => cipher.decrypt(flipped, ctx)).toThrow(DecryptionError);
    expect(() => new TokenCipher(Buffer.alloc(16).toString('base64'))).toThrow(/32 bytes/);
  });
});

describe('HMAC-SHA256 against Wycheproof', () => {
  const groups = load<{ testGroups: MacGroup[] }>('hmac_sha256_test.json').testGroups;
  const cases = groups.flatMap((g) => g.tests.map((t) => ({ ...t, tagBytes: g.tagSize / 8 })));

  it.each(cases.map((t) => [t.tcId, t.tagBytes, t] as const))('case %i (tag %i bytes)', (_id, tagBytes, t) => {
    const computed = hmacSha256Hex(hex(t.key), hex(t.msg)).slice(0, tagBytes * 2);
    expect(computed === t.tag).toBe(t.result === 'valid');
  });

  it.each(cases.filter((t) => t.tagBytes === 32).map((t) => [t.tcId, t] as const))('verifySignature agrees on full-length case %i', (_id, t) => {
    const verdict = verifySignature(`sha256=${t.tag}`, hex(t.msg), [hex(t.key)]);
    expect(verdict === 0).toBe(t.result === 'valid');
  });
});

describe('verifySignature', () => {
  const body = Buffer.from('{"object":"page","entry":[]}');
  const secret = 'test_app_secret_not_real';

  it('accepts the right signature and names which secret matched', () => {
    expect(verifySignature(signPayload(secret, body), body, ['other-secret-x', secret])).toBe(1);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['sha1 prefix', 'sha1=' + 'a'.repeat(40)],
    ['too short', 'sha256=abcd'],
    ['not hex', 'sha256=' + 'z'.repeat(64)],
    ['wrong digest', 'sha256=' + '0'.repeat(64)],
  ])('rejects a %s header', (_name, header) => {
    expect(verifySignature(header, body, [secret])).toBe(-1);
  });
});
