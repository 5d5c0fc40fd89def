import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Password hashing with Node's built-in scrypt (no native dependency to maintain). A hash is a
 * self-describing string `scrypt$<log2 N>$<r>$<p>$<salt b64url>$<hash b64url>`, so the cost can
 * rise later: `needsRehash` tells the login to re-hash with the current parameters.
 */

export const SCRYPT_PARAMS = { log2N: 15, r: 8, p: 1, keyLength: 32, saltLength: 16 } as const;
export const MIN_PASSWORD_LENGTH = 12;
const MAX_PASSWORD_LENGTH = 1024;

/** scrypt needs 128·N·r bytes; Node's default maxmem (32 MiB) is exactly that at N=2^15, r=8 and refuses it. */
function maxmemFor(log2N: number, r: number): number {
  return 2 * 128 * 2 ** log2N * r;
}

function scrypt(password: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export class PasswordPolicyError extends Error {
  override name = 'PasswordPolicyError';
}

/** Throws PasswordPolicyError naming what is wrong; the password itself never appears in the message. */
export function checkPasswordPolicy(password: string, email?: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new PasswordPolicyError(`the password must be at least ${MIN_PASSWORD_LENGTH} characters long (it has ${password.length})`);
  if (password.length > MAX_PASSWORD_LENGTH) throw new PasswordPolicyError(`the password must be at most ${MAX_PASSWORD_LENGTH} characters long`);
  if (password.trim().length === 0) throw new PasswordPolicyError('the password must not be only spaces');
  if (email !== undefined && password.trim().toLowerCase() === email.trim().toLowerCase()) throw new PasswordPolicyError('the password must not be the email address');
}

interface ParsedHash {
  log2N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

const FORMAT = /^scrypt\$(\d{1,2})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{32,})$/;

function parseHash(stored: string): ParsedHash | undefined {
  const m = FORMAT.exec(stored);
  if (!m) return undefined;
  const [log2N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds keep a tampered row from making a login burn gigabytes or minutes.
  if (log2N < 10 || log2N > 20 || r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  return { log2N, r, p, salt: Buffer.from(m[4]!, 'base64url'), hash: Buffer.from(m[5]!, 'base64url') };
}

export async function hashPassword(password: string): Promise<string> {
  const { log2N, r, p, keyLength, saltLength } = SCRYPT_PARAMS;
  const salt = randomBytes(saltLength);
  const hash = await scrypt(password, salt, keyLength, { N: 2 ** log2N, r, p, maxmem: maxmemFor(log2N, r) });
  return `scrypt$${log2N}$${r}$${p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** Constant-time comparison of the derived key; false (never a throw) for a malformed or tampered hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseHash(stored);
  if (!parsed) return false;
  const derived = await scrypt(password, parsed.salt, parsed.hash.length, { N: 2 ** parsed.log2N, r: parsed.r, p: parsed.p, maxmem: maxmemFor(parsed.log2N, parsed.r) });
  return derived.length === parsed.hash.length && timingSafeEqual(derived, parsed.hash);
}

/** True when the stored hash was made with weaker (or unreadable) parameters than today's. */
export function needsRehash(stored: string): boolean {
  const parsed = parseHash(stored);
  if (!parsed) return true;
  return parsed.log2N < SCRYPT_PARAMS.log2N || parsed.r < SCRYPT_PARAMS.r || parsed.p < SCRYPT_PARAMS.p || parsed.hash.length < SCRYPT_PARAMS.keyLength;
}

/**
 * A hash of a random password, verified against when the email is unknown, so a login for a
 * missing account costs the same time as one for an existing account (no account enumeration).
 */
let dummy: Promise<string> | undefined;
export function dummyPasswordHash(): Promise<string> {
  dummy ??= hashPassword(randomBytes(18).toString('base64url'));
  return dummy;
}
