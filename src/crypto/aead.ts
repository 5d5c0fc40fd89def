import { createCipheriv, createDecipheriv } from 'node:crypto';

/**
 * The one AES-256-GCM primitive every encrypted format here builds on (vault secrets, wrapped
 * data keys, Temporal payloads): 256-bit key, 96-bit nonce, 128-bit tag, all pinned — Node would
 * otherwise accept shorter tags and other nonce sizes.
 */

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
