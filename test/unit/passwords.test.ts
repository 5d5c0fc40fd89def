import { checkPasswordPolicy, hashPassword, needsRehash, PasswordPolicyError, SCRYPT_PARAMS, verifyPassword } from '../../src/auth/passwords';

describe('password hashing (scrypt)', () => {
  const password = 'correct horse battery staple';
  let stored: string;

  beforeAll(async () => {
    stored = await hashPassword(password);
  });

  it('writes a self-describing hash with its parameters and a random salt, never the password', async () => {
    expect(stored).toMatch(new RegExp(`^scrypt\\$${SCRYPT_PARAMS.log2N}\\$${SCRYPT_PARAMS.r}\\$${SCRYPT_PARAMS.p}\\$[A-Za-z0-9_-]{22}\\$[A-Za-z0-9_-]{43}$`));
    expect(stored).not.toContain(password);
    const again = await hashPassword(password);
    expect(again).not.toBe(stored);
    expect(await verifyPassword(password, again)).toBe(true);
  });

  it('verifies the right password and refuses a wrong one', async () => {
    expect(await verifyPassword(password, stored)).toBe(true);
    expect(await verifyPassword('correct horse battery stapler', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('normalizes Unicode, so the same password typed as composed or decomposed characters verifies', async () => {
    const composed = 'Grüße aus München!';
    const hash = await hashPassword(composed);
    expect(await verifyPassword(composed.normalize('NFD'), hash)).toBe(true);
  });

  it('refuses a tampered hash (changed digest, salt or parameters) and a malformed one, without throwing', async () => {
    const parts = stored.split('$');
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    expect(await verifyPassword(password, [...parts.slice(0, 5), flip(parts[5]!)].join('$'))).toBe(false);
    expect(await verifyPassword(password, [...parts.slice(0, 4), flip(parts[4]!), parts[5]].join('$'))).toBe(false);
    expect(await verifyPassword(password, ['scrypt', '14', ...parts.slice(2)].join('$'))).toBe(false);
    // Parameters that would burn memory or time are refused before any work.
    expect(await verifyPassword(password, ['scrypt', '30', ...parts.slice(2)].join('$'))).toBe(false);
    expect(await verifyPassword(password, 'plaintext')).toBe(false);
    expect(await verifyPassword(password, '')).toBe(false);
  });

  it('asks for a rehash when the parameters are below today\'s or unreadable', () => {
    expect(needsRehash(stored)).toBe(false);
    const parts = stored.split('$');
    expect(needsRehash(['scrypt', '14', ...parts.slice(2)].join('$'))).toBe(true);
    expect(needsRehash('garbage')).toBe(true);
  });
});

describe('password policy', () => {
  it('needs at least 12 characters and names the length', () => {
    expect(() => checkPasswordPolicy('short-pass1')).toThrow(new PasswordPolicyError('the password must be at least 12 characters long (it has 11)'));
    expect(() => checkPasswordPolicy('twelve-chars')).not.toThrow();
  });

  it('refuses the email address as the password, whatever its case', () => {
    expect(() => checkPasswordPolicy('Anna.Schmidt@Example.com', 'anna.schmidt@example.com')).toThrow('the password must not be the email address');
  });

  it('refuses a password of spaces only', () => {
    expect(() => checkPasswordPolicy(' '.repeat(20))).toThrow('the password must not be only spaces');
  });
});
