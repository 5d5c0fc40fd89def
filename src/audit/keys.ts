import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Ed25519 keys of the audit checkpoints. The private key comes from the configuration
 * (`AUDIT_SIGNING_KEY`), never from the database: someone who can rewrite the database cannot sign
 * a checkpoint. Accepted spellings:
 *  - base64 of the 32-byte private key seed (`openssl rand -base64 32`);
 *  - base64 of a PKCS#8 DER private key (`openssl genpkey -algorithm ed25519 -outform DER | base64 -w0`);
 *  - a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, newlines may be written as `\n`).
 * Public keys (`AUDIT_PREVIOUS_PUBLIC_KEYS`, comma-separated, to verify checkpoints signed before
 * a key rotation): base64 of the raw 32-byte key or of an SPKI DER, or an SPKI PEM.
 *
 * Key id: `ed25519:` + the first 16 hex digits of SHA-256(raw 32-byte public key). It is in every
 * checkpoint, and it is what an auditor compares with the fingerprint published out of band.
 */

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** SPKI DER prefix of an Ed25519 public key; the 32-byte key follows. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function decodeBase64(spec: string): Buffer | null {
  const s = spec.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) return null;
  return Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64');
}

function pem(spec: string): string | null {
  const s = spec.trim().replace(/\\n/g, '\n');
  return s.startsWith('-----BEGIN ') ? s : null;
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${what} is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not Ed25519`);
  return key;
}

/** Parses a private signing key; throws a message fit for a config error (never quoting the key). */
export function parseAuditSigningKey(spec: string): KeyObject {
  const asPem = pem(spec);
  try {
    if (asPem) return requireEd25519(createPrivateKey({ key: asPem, format: 'pem' }), 'the PEM key');
  } catch (err) {
    throw new Error(`not a usable PEM private key (${(err as Error).message.split('\n')[0]})`);
  }
  const der = decodeBase64(spec);
  if (!der) throw new Error('must be base64 (a 32-byte Ed25519 seed or a PKCS#8 DER key) or a PEM private key');
  if (der.length === 32) return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, der]), format: 'der', type: 'pkcs8' });
  try {
    return requireEd25519(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), 'the PKCS#8 key');
  } catch {
    throw new Error(`must decode to a 32-byte Ed25519 seed or a PKCS#8 Ed25519 key (got ${der.length} bytes that are neither)`);
  }
}

export function parseAuditPublicKey(spec: string): KeyObject {
  const asPem = pem(spec);
  try {
    if (asPem) return requireEd25519(createPublicKey({ key: asPem, format: 'pem' }), 'the PEM key');
  } catch (err) {
    throw new Error(`not a usable PEM public key (${(err as Error).message.split('\n')[0]})`);
  }
  const der = decodeBase64(spec);
  if (!der) throw new Error('must be base64 (a raw 32-byte Ed25519 public key or an SPKI DER) or a PEM public key');
  try {
    const key = der.length === 32 ? Buffer.concat([SPKI_ED25519_PREFIX, der]) : der;
    return requireEd25519(createPublicKey({ key, format: 'der', type: 'spki' }), 'the SPKI key');
  } catch {
    throw new Error(`must decode to a 32-byte Ed25519 public key or an SPKI DER (got ${der.length} bytes that are neither)`);
  }
}

/** Comma-separated public keys (PEM ones may not contain commas anyway). */
export function parseAuditPublicKeys(spec: string): KeyObject[] {
  return spec.split(',').map((s) => s.trim()).filter(Boolean).map(parseAuditPublicKey);
}

export function rawPublicKey(key: KeyObject): Buffer {
  const spki = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32);
}

export function auditKeyId(publicKey: KeyObject): string {
  return `ed25519:${createHash('sha256').update(rawPublicKey(publicKey)).digest('hex').slice(0, 16)}`;
}

export class AuditSigner {
  readonly publicKey: KeyObject;
  readonly keyId: string;

  constructor(private readonly privateKey: KeyObject) {
    requireEd25519(privateKey, 'the audit signing key');
    this.publicKey = createPublicKey(privateKey);
    this.keyId = auditKeyId(this.publicKey);
  }

  static fromSpec(spec: string): AuditSigner {
    return new AuditSigner(parseAuditSigningKey(spec));
  }

  sign(message: Buffer): Buffer {
    return sign(null, message, this.privateKey);
  }
}

/** The public keys checkpoints are verified with: the current signing key's and earlier ones. */
export class AuditKeyring {
  private readonly keys = new Map<string, KeyObject>();

  constructor(publicKeys: Iterable<KeyObject>) {
    for (const key of publicKeys) this.keys.set(auditKeyId(key), key);
  }

  static from(opts: { signer?: AuditSigner | null; previousPublicKeys?: string }): AuditKeyring {
    return new AuditKeyring([...(opts.signer ? [opts.signer.publicKey] : []), ...parseAuditPublicKeys(opts.previousPublicKeys ?? '')]);
  }

  get size(): number {
    return this.keys.size;
  }

  ids(): string[] {
    return [...this.keys.keys()];
  }

  has(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  /** Raw 32-byte public keys, base64, by key id (what an export hands an auditor). */
  publicKeys(): Array<{ keyId: string; publicKey: string }> {
    return [...this.keys.entries()].map(([keyId, key]) => ({ keyId, publicKey: rawPublicKey(key).toString('base64') }));
  }

  verify(keyId: string, message: Buffer, signature: Buffer): boolean {
    const key = this.keys.get(keyId);
    if (!key || signature.length !== 64) return false;
    try {
      return verify(null, message, key, signature);
    } catch {
      return false;
    }
  }
}
