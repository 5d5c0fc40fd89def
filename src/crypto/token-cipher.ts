import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for secrets at rest (channel access tokens). A fresh random 96-bit nonce per
 * encryption and a pinned 128-bit tag; the associated data binds the ciphertext to the row and
 * column it belongs to, so a ciphertext copied elsewhere does not decrypt.
 *
 * Stored format (v1): 0x01 ‖ nonce(12) ‖ ciphertext ‖ tag(16).
 */

const FORMAT_V1 = 0x01;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const KEY_BYTES = 32;

export class DecryptionError extends Error {
  constructor(message = 'ciphertext could not be authenticated') {
    super(message);
    this.name = 'DecryptionError';
  }
}

function checkKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error(`AES-256-GCM key must be ${KEY_BYTES} bytes, got ${key.length}`);
}

/** Raw AEAD primitive (exposed for the Wycheproof vectors). */
export function gcmSeal(key: Buffer, nonce: Buffer, plaintext: Buffer, aad: Buffer): { ciphertext: Buffer; tag: Buffer } {
  checkKey(key);
  if (nonce.length !== NONCE_BYTES) throw new Error(`nonce must be ${NONCE_BYTES} bytes`);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

export function gcmOpen(key: Buffer, nonce: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer {
  checkKey(key);
  // Node would accept other nonce and tag sizes; this format never produces them, so refuse them.
  if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw new DecryptionError('unsupported nonce or tag size');
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new DecryptionError();
  }
}

export interface CipherContext {
  table: string;
  column: string;
  rowId: string;
}

function aadFor(ctx: CipherContext): Buffer {
  return Buffer.from(`switchboard:v1:${ctx.table}:${ctx.column}:${ctx.rowId}`, 'utf8');
}

export class TokenCipher {
  private readonly key: Buffer;

  constructor(keyBase64: string) {
    this.key = Buffer.from(keyBase64, 'base64');
    checkKey(this.key);
  }

  encrypt(plaintext: string, ctx: CipherContext): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const { ciphertext, tag } = gcmSeal(this.key, nonce, Buffer.from(plaintext, 'utf8'), aadFor(ctx));
    return Buffer.concat([Buffer.from([FORMAT_V1]), nonce, ciphertext, tag]);
  }

  decrypt(blob: Buffer, ctx: CipherContext): string {
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== FORMAT_V1) {
      throw new DecryptionError('unknown ciphertext format');
    }
    const nonce = blob.subarray(1, 1 + NONCE_BYTES);
    const tag = blob.subarray(blob.length - TAG_BYTES);
    const ciphertext = blob.subarray(1 + NONCE_BYTES, blob.length - TAG_BYTES);
    return gcmOpen(this.key, nonce, ciphertext, tag, aadFor(ctx)).toString('utf8');
  }
}
