/**
 * Masking of customer PII for places where a hint helps an operator (the logger's `pii: 'masked'`
 * mode, support tooling) but the value itself must not leave the system. Every function is total:
 * any input (empty, malformed, non-ASCII) gives a masked string, never the raw value and never a
 * throw. A mask never reveals a value completely: parts too short to hide are dropped.
 *
 * Secrets (tokens, keys, signatures) are never masked, only removed: see src/logger.ts.
 */

export const MASK = '***';

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The first user-perceived character (so `É` written as E + combining accent, or a flag emoji, stays whole). */
function firstGrapheme(s: string): string {
  for (const { segment } of graphemes.segment(s)) return segment;
  return '';
}

/**
 * `john.doe@example.com` → `jo***@example.com`: the first two characters of the local part, then
 * the domain. A local part of two characters or fewer shows one fewer than it has (`jo@x.io` →
 * `j***@x.io`, `a@x.io` → `***@x.io`). Without an `@` nothing is shown.
 */
export function maskEmail(email: string): string {
  const value = String(email).trim();
  const at = value.lastIndexOf('@');
  if (at < 0) return MASK;
  const local = Array.from(value.slice(0, at));
  const domain = value.slice(at + 1);
  const keep = Math.min(2, Math.max(0, local.length - 1));
  return `${local.slice(0, keep).join('')}${MASK}@${domain}`;
}

/**
 * `+49 170 1234567` → `+49***4567`: an international prefix as typed (the `+` and the digits right
 * after it, 3 characters at most), then the last 4 digits. Numbers without `+` have no prefix
 * (`0170 1234567` → `***4567`). With fewer than 7 digits after the prefix the tail would reveal
 * most of the number, so it is dropped (`+49***`, `***`).
 */
export function maskPhone(phone: string): string {
  const value = String(phone).trim();
  const prefix = /^\+\d{1,2}/.exec(value)?.[0] ?? '';
  const digits = value.slice(prefix.length).replace(/\D/g, '');
  const tail = digits.length >= 7 ? digits.slice(-4) : '';
  return `${prefix}${MASK}${tail}`;
}

/** `Alice Smith` → `A***`: the first character (grapheme) only, whatever the script. */
export function maskName(name: string): string {
  return `${firstGrapheme(String(name).trim())}${MASK}`;
}

/** A message text becomes its length: `hello` → `[text: 5 chars]` (characters = code points). */
export function maskText(text: string): string {
  return `[text: ${Array.from(String(text)).length} chars]`;
}

/**
 * A customer ID (PSID / IGSID) keeps its last 4 characters, enough to tell two customers apart in
 * one incident: `7234567890123456` → `***3456`. IDs of 6 characters or fewer show nothing.
 */
export function maskId(id: string): string {
  const value = String(id).trim();
  return value.length > 6 ? `${MASK}${value.slice(-4)}` : MASK;
}
