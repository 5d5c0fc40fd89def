import { randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { gcmOpen, gcmSeal, NONCE_BYTES, TAG_BYTES } from '../crypto/aead';
import type { KeyProvider } from '../crypto/key-provider';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const CODEC_PURPOSE = 'temporal-payload-codec/v1';

const utf8 = (s: string) => new TextEncoder().encode(s);
const fromUtf8 = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

export class UnknownCodecKeyError extends Error {
  constructor(keyId: string | undefined) {
    super(`payload was encrypted with key "${keyId ?? '(none)'}", which this process does not have`);
    this.name = 'UnknownCodecKeyError';
  }
}

/**
 * Encrypts every Temporal payload (inputs, results, signals, queries, memo, failure details) with
 * AES-256-GCM, so Temporal's database holds ciphertext only. Keys are derived per master key
 * version with HKDF; the key id travels in the payload metadata, so payloads written under an
 * older master version keep decoding after a rotation while new ones use the newest.
 */
export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(
    private readonly keys: ReadonlyMap<string, Buffer>,
    private readonly activeKeyId: string,
  ) {
    if (!keys.has(activeKeyId)) throw new Error(`active codec key ${activeKeyId} is missing`);
  }

  static async fromKeyProvider(provider: KeyProvider): Promise<AesGcmPayloadCodec> {
    const keys = new Map<string, Buffer>();
    for (const version of provider.versions) keys.set(`mk${version}`, await provider.derivePurposeKey(version, CODEC_PURPOSE));
    return new AesGcmPayloadCodec(keys, `mk${provider.activeVersion}`);
  }

  private static aad(keyId: string): Buffer {
    return Buffer.from(`sb-payload-v1\x1f${keyId}`, 'utf8');
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.activeKeyId)!;
    return payloads.map((payload) => {
      const plaintext = Buffer.from(temporal.api.common.v1.Payload.encode(payload).finish());
      const nonce = randomBytes(NONCE_BYTES);
      const { ciphertext, tag } = gcmSeal(key, nonce, plaintext, AesGcmPayloadCodec.aad(this.activeKeyId));
      return {
        metadata: { [METADATA_ENCODING_KEY]: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(this.activeKeyId) },
        data: Buffer.concat([nonce, ciphertext, tag]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (fromUtf8(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
      const keyId = fromUtf8(payload.metadata?.[KEY_ID_METADATA]);
      const key = keyId ? this.keys.get(keyId) : undefined;
      if (!key || !keyId) throw new UnknownCodecKeyError(keyId);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      const nonce = data.subarray(0, NONCE_BYTES);
      const tag = data.subarray(data.length - TAG_BYTES);
      const plaintext = gcmOpen(key, nonce, data.subarray(NONCE_BYTES, data.length - TAG_BYTES), tag, AesGcmPayloadCodec.aad(keyId));
      return temporal.api.common.v1.Payload.decode(plaintext) as Payload;
    });
  }
}

/**
 * The data converter every client and worker uses: encrypted payloads, and failure messages and
 * stack traces moved into an (encrypted) payload instead of plain history fields.
 */
export async function createDataConverter(keys: KeyProvider | PayloadCodec): Promise<DataConverter> {
  const codec = 'encode' in keys ? keys : await AesGcmPayloadCodec.fromKeyProvider(keys);
  return {
    payloadCodecs: [codec],
    failureConverterPath: require.resolve('./failure-converter'),
  };
}
