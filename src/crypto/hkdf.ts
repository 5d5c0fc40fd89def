import { hkdfSync } from 'node:crypto';

/** Largest output RFC 5869 allows for SHA-256 (255 blocks). */
export const HKDF_SHA256_MAX_LENGTH = 255 * 32;

/**
 * HKDF-SHA256 (RFC 5869). Only for deriving purpose keys from high-entropy material such as a
 * master key: never for passwords (it has no work factor, and needs none for random keys).
 */
export function hkdfSha256(ikm: Buffer, salt: Buffer, info: Buffer, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > HKDF_SHA256_MAX_LENGTH) {
    throw new RangeError(`HKDF-SHA256 output length must be 1..${HKDF_SHA256_MAX_LENGTH}, got ${length}`);
  }
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}
