import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, UnknownCodecKeyError } from '../../src/temporal/payload-codec';

const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');

describe('AesGcmPayloadCodec', () => {
  const mk1 = randomBytes(32);
  const mk2 = randomBytes(32);
  const canary = 'CANARY-Jürgen-+49 170 1234567';

  it('round-trips and leaves no plaintext in the encoded payload', async () => {
    const codec = await AesGcmPayloadCodec.fromKeyProvider(new StaticKeyProvider(new Map([[1, mk1]])));
    const original = defaultPayloadConverter.toPayload({ text: canary, n: 42 });
    const [encoded] = await codec.encode([original]);
    expect(text(encoded!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(encoded!.metadata![KEY_ID_METADATA])).toBe('mk1');
    expect(Buffer.from(encoded!.data!).includes(Buffer.from('CANARY'))).toBe(false);
    const [decoded] = await codec.decode([encoded!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ text: canary, n: 42 });
  });

  it('uses the newest master key for new payloads and still decodes older ones', async () => {
    const old = await AesGcmPayloadCodec.fromKeyProvider(new StaticKeyProvider(new Map([[1, mk1]])));
    const rotated = await AesGcmPayloadCodec.fromKeyProvider(new StaticKeyProvider(new Map([[1, mk1], [2, mk2]])));
    const [fromOld] = await old.encode([defaultPayloadConverter.toPayload('before')]);
    const [fromNew] = await rotated.encode([defaultPayloadConverter.toPayload('after')]);
    expect(text(fromNew!.metadata![KEY_ID_METADATA])).toBe('mk2');
    const decoded = await rotated.decode([fromOld!, fromNew!]);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual(['before', 'after']);
    // A process without master key 2 cannot read what was written under it.
    await expect(old.decode([fromNew!])).rejects.toThrow(UnknownCodecKeyError);
  });

  it('rejects a tampered payload or a relabelled key id, and passes unencrypted payloads through', async () => {
    const codec = await AesGcmPayloadCodec.fromKeyProvider(new StaticKeyProvider(new Map([[1, mk1], [2, mk2]])));
    const [encoded] = await codec.encode([defaultPayloadConverter.toPayload('x')]);
    const tampered = { ...encoded!, data: Buffer.from(encoded!.data!) };
    tampered.data[20] = tampered.data[20]! ^ 1;
    await expect(codec.decode([tampered])).rejects.toThrow();
    const relabelled = { ...encoded!, metadata: { ...encoded!.metadata, [KEY_ID_METADATA]: Buffer.from('mk1') } };
    await expect(codec.decode([relabelled])).rejects.toThrow();
    const plain = defaultPayloadConverter.toPayload('plain');
    expect(await codec.decode([plain])).toEqual([plain]);
  });
});
