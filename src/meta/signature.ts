import { createHmac, timingSafeEqual } from 'node:crypto';

const PREFIX = 'sha256=';
const HEX_DIGEST_LENGTH = 64;

export function hmacSha256Hex(secret: string | Buffer, payload: Buffer): string {
  return createHmac('sha256', secret).update(payload).digest('hex');
}

/** The header value Meta would send for this body. */
export function signPayload(secret: string, rawBody: Buffer): string {
  return PREFIX + hmacSha256Hex(secret, rawBody);
}

/**
 * Verifies `X-Hub-Signature-256` over the raw bytes as received (Meta signs its escaped-unicode
 * serialization; re-serialized JSON would not match). Several candidate secrets are allowed because
 * Instagram-Login webhooks may be signed with the Instagram app secret (contract §1.2).
 * Returns the index of the matching secret, or -1. Fails closed on any malformed header.
 */
export function verifySignature(header: string | undefined, rawBody: Buffer, secrets: readonly (string | Buffer)[]): number {
  if (!header || !header.startsWith(PREFIX)) return -1;
  const hex = header.slice(PREFIX.length);
  if (hex.length !== HEX_DIGEST_LENGTH || !/^[0-9a-f]+$/i.test(hex)) return -1;
  const given = Buffer.from(hex.toLowerCase(), 'hex');
  let match = -1;
  // Check every secret (no early exit) so timing does not reveal which one matched.
  secrets.forEach((secret, i) => {
    const expected = createHmac('sha256', secret).update(rawBody).digest();
    if (expected.length === given.length && timingSafeEqual(expected, given) && match === -1) match = i;
  });
  return match;
}

/** Constant-time string comparison (for the verify token of the GET handshake). */
export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ab.length !== bb.length) {
    // Still spend comparable time so length is not the only thing learned from a fast "no".
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}
