import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DecryptionError, gcmOpen, gcmSeal } from '../../src/crypto/aead';
import { hkdfSha256 } from '../../src/crypto/hkdf';
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

describe('HKDF-SHA256 against Wycheproof', () => {
  interface HkdfCase { tcId: number; ikm: string; salt: string; info: string; size: number; okm: string; result: 'valid' | 'invalid' }
  const cases = load<{ testGroups: Array<{ tests: HkdfCase[] }> }>('hkdf_sha256_test.json').testGroups.flatMap((g) => g.tests);

  it.each(cases.filter((t) => t.result === 'valid').map((t) => [t.tcId, t] as const))('valid case %i derives the expected key', (_id, t) => {
    expect(hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size).toString('hex')).toBe(t.okm);
  });

  it.each(cases.filter((t) => t.result === 'invalid').map((t) => [t.tcId, t] as const))('invalid case %i is refused', (_id, t) => {
    expect(() => hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size)).toThrow(RangeError);
  });
});

describe('AEAD parameters are pinned', () => {
  it('refuses other key, nonce and tag sizes', () => {
    const nonce = Buffer.alloc(12);
    expect(() => gcmSeal(Buffer.alloc(16), nonce, Buffer.from('x'), Buffer.alloc(0))).toThrow(/32 bytes/);
    expect(() => gcmSeal(Buffer.alloc(32), Buffer.alloc(16), Buffer.from('x'), Buffer.alloc(0))).toThrow(/nonce/);
    const { ciphertext, tag } = gcmSeal(Buffer.alloc(32), nonce, Buffer.from('x'), Buffer.alloc(0));
    expect(() => gcmOpen(Buffer.alloc(32), nonce, ciphertext, tag.subarray(0, 12), Buffer.alloc(0))).toThrow(DecryptionError);
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
