import { createHash, generateKeyPairSync } from 'node:crypto';
import { sanitizeAuditDetails, MAX_DETAILS_BYTES, REMOVED } from '../../src/audit/details';
import { canonicalAuditRow, computeAuditHash, jcs, ZERO_HASH, type HashedAuditRow } from '../../src/audit/hash';
import { auditKeyId, AuditKeyring, AuditSigner, parseAuditPublicKey, parseAuditSigningKey, rawPublicKey } from '../../src/audit/keys';
import { AuditEventError, prepareAuditEvent } from '../../src/audit/log';
import { checkpointMessage, signCheckpoint, verifyCheckpointSignature } from '../../src/audit/checkpoints';

/**
 * The audit hash is a format: a row hashed today must verify in every later version, and an
 * auditor recomputes it with other tools. These vectors pin it (the first was cross-checked with
 * `(head -c 32 /dev/zero; printf '%s' '<canonical>') | sha256sum`).
 */

const TENANT = '0b6e7c1a-2f4d-4c8e-9a31-5d2f7e8b9c10';
const GOLDEN_ROW: HashedAuditRow = {
  chainId: TENANT,
  seq: 1,
  tenantId: TENANT,
  occurredAt: '2025-03-14T15:09:26.535Z',
  actorType: 'operator',
  actorId: 'ops@example.com',
  action: 'token.stored',
  resource: 'channel:5f1d3c2b-7a8e-4b9c-8d0e-1f2a3b4c5d6e',
  outcome: 'success',
  reason: null,
  ip: '203.0.113.7',
  userAgent: 'switchboard-cli/0.1',
  requestId: 'req-42',
  details: { keyVersion: 3, z: [1, 2.5, 'é', true, null], a: { b: 1e21, c: -0.000001 }, '€': 'euro', é: 1 },
};
const GOLDEN_CANONICAL =
  '{"action":"token.stored","actorId":"ops@example.com","actorType":"operator","chainId":"0b6e7c1a-2f4d-4c8e-9a31-5d2f7e8b9c10",' +
  '"details":{"a":{"b":1e+21,"c":-0.000001},"keyVersion":3,"z":[1,2.5,"é",true,null],"é":1,"€":"euro"},"ip":"203.0.113.7",' +
  '"occurredAt":"2025-03-14T15:09:26.535Z","outcome":"success","reason":null,"requestId":"req-42",' +
  '"resource":"channel:5f1d3c2b-7a8e-4b9c-8d0e-1f2a3b4c5d6e","seq":1,"tenantId":"0b6e7c1a-2f4d-4c8e-9a31-5d2f7e8b9c10",' +
  '"userAgent":"switchboard-cli/0.1"}';
const GOLDEN_HASH_1 = '986954723197b9f16275dd235b9d1f3866375019b24b9f5f63e95d28c9530791';
const GOLDEN_HASH_2 = '945b89eb9d21e62278e4b4cbbb7107e248d0b8ce781e1d1dce83488f98be4956';

describe('audit hash (format v1)', () => {
  it('canonicalizes a fixed row with RFC 8785 and hashes it to a fixed value', () => {
    expect(canonicalAuditRow(GOLDEN_ROW)).toBe(GOLDEN_CANONICAL);
    const h1 = computeAuditHash(ZERO_HASH, GOLDEN_ROW);
    expect(h1.toString('hex')).toBe(GOLDEN_HASH_1);
    // The same thing by hand: SHA-256(32 zero bytes ‖ UTF-8 canonical JSON).
    expect(createHash('sha256').update(Buffer.alloc(32)).update(GOLDEN_CANONICAL, 'utf8').digest('hex')).toBe(GOLDEN_HASH_1);
    // A second row links to the first.
    const h2 = computeAuditHash(h1, { ...GOLDEN_ROW, seq: 2, action: 'token.decrypted', details: {} });
    expect(h2.toString('hex')).toBe(GOLDEN_HASH_2);
  });

  it('ignores key order and extra properties, and changes with every hashed field', () => {
    const reordered = Object.fromEntries(Object.entries(GOLDEN_ROW).reverse()) as unknown as HashedAuditRow;
    expect(computeAuditHash(ZERO_HASH, { ...reordered, extra: 'ignored' } as HashedAuditRow).toString('hex')).toBe(GOLDEN_HASH_1);
    const changes: Array<Partial<HashedAuditRow>> = [
      { chainId: 'platform' }, { seq: 2 }, { tenantId: null }, { occurredAt: '2025-03-14T15:09:26.536Z' }, { actorType: 'system' },
      { actorId: null }, { action: 'token.refreshed' }, { resource: null }, { outcome: 'failure' }, { reason: 'x' }, { ip: null },
      { userAgent: null }, { requestId: null }, { details: { keyVersion: 4 } },
    ];
    const hashes = new Set(changes.map((c) => computeAuditHash(ZERO_HASH, { ...GOLDEN_ROW, ...c }).toString('hex')));
    expect(hashes.size).toBe(changes.length);
    expect(hashes.has(GOLDEN_HASH_1)).toBe(false);
    // …and with the previous hash.
    expect(computeAuditHash(Buffer.alloc(32, 1), GOLDEN_ROW).toString('hex')).not.toBe(GOLDEN_HASH_1);
  });

  it('refuses values JCS cannot represent', () => {
    expect(() => jcs({ n: NaN })).toThrow();
    expect(() => jcs({ s: '\ud800' })).toThrow();
    expect(() => computeAuditHash(Buffer.alloc(31), GOLDEN_ROW)).toThrow(RangeError);
  });
});

describe('audit event details: masked, JSON-safe', () => {
  it('drops secrets and raw content by key, masks PII by key and emails in text', () => {
    const details = sanitizeAuditDetails({
      accessToken: 'EAABsecret',
      page_access_token: 'x',
      appSecretProof: 'y',
      'x-hub-signature-256': 'sha256=…',
      Authorization: 'Bearer abc',
      password: 'p',
      privateKey: 'k',
      body: '{"raw":true}',
      email: 'john.doe@example.com',
      phone: '+49 170 1234567',
      customerName: 'Alice Smith',
      text: 'hello there',
      psid: '7234567890123456',
      note: 'contact jane.roe@example.org about https://x/?access_token=EAAB123&y=1, Bearer tok123',
      leaked: 'EAABwzLixnjYBAO1234567890abcdefghij',
      nested: { refresh_token: 'r', name: 'Bob', ok: 1, deeper: [{ email: 'a.b@c.io' }] },
      tokenExpiresAt: '2025-01-01T00:00:00.000Z',
      keyVersion: 3,
      profile: { first: 'x' },
    });
    expect(details).toEqual({
      email: 'jo***@example.com',
      phone: '+49***4567',
      customerName: 'A***',
      text: '[text: 11 chars]',
      psid: '***3456',
      note: `contact ja***@example.org about https://x/?access_token=[redacted]&y=1, Bearer [redacted]`,
      leaked: REMOVED,
      nested: { name: 'B***', ok: 1, deeper: [{ email: 'a.***@c.io' }] },
      tokenExpiresAt: '2025-01-01T00:00:00.000Z',
      keyVersion: 3,
      profile: { first: 'x' },
    });
  });

  it('makes any input plain JSON that survives jsonb and JCS unchanged', () => {
    const d = sanitizeAuditDetails({
      nan: NaN,
      inf: -Infinity,
      negZero: -0,
      big: 2 ** 60,
      bigint: 12345678901234567890n,
      when: new Date('2025-01-02T03:04:05.678Z'),
      bytes: Buffer.from('abc'),
      undef: undefined,
      fn: () => 1,
      lone: 'a\ud800b',
      nul: 'a\u0000b',
      ['k\u0000']: 1,
      arr: [undefined, 1],
      map: new Map([['a', 1]]),
      set: new Set([1, 2]),
      url: new URL('https://example.com/a'),
    });
    expect(d).toEqual({
      nan: null,
      inf: null,
      negZero: 0,
      big: String(2 ** 60), // the double's shortest spelling, as JSON would write it
      bigint: '12345678901234567890',
      when: '2025-01-02T03:04:05.678Z',
      bytes: '[binary: 3 bytes]',
      lone: 'a\ufffdb',
      nul: 'a\ufffdb',
      'k\ufffd': 1,
      arr: [null, 1],
      map: { a: 1 },
      set: [1, 2],
      url: 'https://example.com/a',
    });
    expect(Object.is(d.negZero, 0)).toBe(true);
    expect(() => jcs(d)).not.toThrow();
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
  });

  it('bounds depth and size', () => {
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < 20; i++) deep = { d: deep };
    expect(JSON.stringify(sanitizeAuditDetails(deep))).toContain('[too deep]');
    const huge = sanitizeAuditDetails({ s: 'x'.repeat(MAX_DETAILS_BYTES + 1) });
    expect(huge).toEqual({ truncated: true, bytes: expect.any(Number) });
  });
});

describe('prepareAuditEvent', () => {
  const base = { tenantId: TENANT.toUpperCase(), actor: { type: 'system' as const }, action: 'token.stored' as const, outcome: 'success' as const };

  it('normalizes the tenant id, the time and optional fields into what is hashed', () => {
    const { row, idempotencyKey } = prepareAuditEvent({ ...base, occurredAt: new Date('2025-01-01T00:00:00.123Z'), reason: 'x'.repeat(600), userAgent: 'curl\u0000' }, 'k1');
    expect(row).toMatchObject({ chainId: TENANT, tenantId: TENANT, occurredAt: '2025-01-01T00:00:00.123Z', actorId: null, resource: null, userAgent: 'curl\ufffd', details: {} });
    expect(row.reason).toHaveLength(500);
    expect(idempotencyKey).toBe('k1');
    expect(prepareAuditEvent({ ...base, tenantId: null }).row.chainId).toBe('platform');
    // Dates arrive as strings through Temporal payloads.
    expect(prepareAuditEvent({ ...base, occurredAt: '2025-01-01T00:00:00.5Z' as unknown as Date }).row.occurredAt).toBe('2025-01-01T00:00:00.500Z');
  });

  it.each([
    [{ tenantId: 'acme' }, /tenantId/],
    [{ actor: { type: 'root' } }, /actor.type/],
    [{ action: 'TokenStored' }, /action/],
    [{ action: 'token' }, /action/],
    [{ outcome: 'ok' }, /outcome/],
    [{ occurredAt: new Date('nope') }, /occurredAt/],
    [{ occurredAt: new Date('1960-01-01') }, /occurredAt/],
    [{ resource: 42 }, /resource/],
  ])('rejects %j', (patch, message) => {
    expect(() => prepareAuditEvent({ ...base, ...(patch as object) } as never)).toThrow(AuditEventError);
    expect(() => prepareAuditEvent({ ...base, ...(patch as object) } as never)).toThrow(message);
  });
});

describe('checkpoint keys and signatures', () => {
  it('accepts a 32-byte seed, PKCS#8 DER and PEM for the same key, with one key id', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const seed = der.subarray(der.length - 32);
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const ids = [seed.toString('base64'), der.toString('base64'), pem, pem.replace(/\n/g, '\\n')].map((s) => AuditSigner.fromSpec(s).keyId);
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toMatch(/^ed25519:[0-9a-f]{16}$/);
    const raw = rawPublicKey(privateKey);
    expect(auditKeyId(parseAuditPublicKey(raw.toString('base64')))).toBe(ids[0]);
  });

  it('rejects keys that are not Ed25519 or not keys', () => {
    expect(() => parseAuditSigningKey('not base64!')).toThrow(/base64/);
    expect(() => parseAuditSigningKey(Buffer.alloc(16).toString('base64'))).toThrow(/16 bytes/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'der', type: 'pkcs8' });
    expect(() => parseAuditSigningKey(rsa.toString('base64'))).toThrow();
    expect(() => parseAuditPublicKey(Buffer.alloc(31).toString('base64'))).toThrow(/31 bytes/);
  });

  it('signs the canonical checkpoint; another key, or any changed field, fails verification', () => {
    const signer = AuditSigner.fromSpec(Buffer.alloc(32, 7).toString('base64'));
    const other = AuditSigner.fromSpec(Buffer.alloc(32, 8).toString('base64'));
    const cp = signCheckpoint(signer, { chainId: TENANT, lastSeq: 10, lastId: 99, lastHash: GOLDEN_HASH_1, count: 10, createdAt: '2025-01-01T00:00:00.000Z' });
    expect(checkpointMessage(cp).toString()).toBe(
      `{"chainId":"${TENANT}","count":10,"createdAt":"2025-01-01T00:00:00.000Z","format":"switchboard-audit-checkpoint/v1","keyId":"${signer.keyId}","lastHash":"${GOLDEN_HASH_1}","lastId":99,"lastSeq":10}`,
    );
    const ring = new AuditKeyring([signer.publicKey]);
    expect(verifyCheckpointSignature(ring, cp)).toBe(true);
    expect(verifyCheckpointSignature(new AuditKeyring([other.publicKey]), cp)).toBe(false);
    // The other key, claiming the first key's id, cannot sign for it.
    const forged = { ...signCheckpoint(other, { ...cp }), keyId: signer.keyId };
    expect(verifyCheckpointSignature(ring, forged)).toBe(false);
    for (const patch of [{ lastSeq: 11 }, { lastHash: GOLDEN_HASH_2 }, { count: 9 }, { lastId: 98 }, { chainId: 'platform' }, { createdAt: '2025-01-01T00:00:00.001Z' }]) {
      expect(verifyCheckpointSignature(ring, { ...cp, ...patch })).toBe(false);
    }
  });
});
