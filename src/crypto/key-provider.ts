import { randomBytes } from 'node:crypto';
import { DecryptionError, gcmOpen, gcmSeal, NONCE_BYTES, TAG_BYTES } from './aead';
import { hkdfSha256 } from './hkdf';

/**
 * Master keys sit behind this interface so a KMS or Vault-transit adapter can replace the
 * environment-backed one: the vault only ever asks to wrap, unwrap or derive, never for a key.
 */
export interface KeyProvider {
  /** The version new wraps use (the highest configured). */
  readonly activeVersion: number;
  /** Every version this provider can still unwrap with. */
  readonly versions: readonly number[];
  /** Wraps a data key; the result is opaque to callers (nonce ‖ ciphertext ‖ tag here). */
  wrap(version: number, dataKey: Buffer, aad: Buffer): Promise<Buffer>;
  unwrap(version: number, wrapped: Buffer, aad: Buffer): Promise<Buffer>;
  /** A 256-bit key for one purpose (e.g. the Temporal payload codec), bound to a master version. */
  derivePurposeKey(version: number, purpose: string): Promise<Buffer>;
}

export class UnknownKeyVersionError extends Error {
  constructor(readonly version: number) {
    super(`master key version ${version} is not configured`);
    this.name = 'UnknownKeyVersionError';
  }
}

const KEY_SPEC = /^(\d{1,9}):([A-Za-z0-9+/]+={0,2})$/;

/** Parses `MASTER_KEYS` (`2:base64key,1:base64key`); returns problems instead of throwing. */
export function parseMasterKeys(spec: string): { keys: Map<number, Buffer>; problems: string[] } {
  const keys = new Map<number, Buffer>();
  const problems: string[] = [];
  for (const [i, part] of spec.split(',').map((p) => p.trim()).entries()) {
    const m = KEY_SPEC.exec(part);
    if (!m) {
      problems.push(`entry ${i + 1} must look like <version>:<base64 key>`);
      continue;
    }
    const version = Number(m[1]);
    const key = Buffer.from(m[2]!, 'base64');
    if (version < 1) problems.push(`entry ${i + 1}: version must be ≥ 1`);
    else if (key.length !== 32) problems.push(`version ${version}: key must be 32 bytes, got ${key.length}`);
    else if (keys.has(version)) problems.push(`version ${version} appears twice`);
    else keys.set(version, key);
  }
  if (keys.size === 0 && problems.length === 0) problems.push('at least one key is required');
  return { keys, problems };
}

/** Master keys from configuration (`MASTER_KEYS`), held in this process's memory. */
export class StaticKeyProvider implements KeyProvider {
  readonly activeVersion: number;
  readonly versions: readonly number[];
  private readonly keys: Map<number, Buffer>;

  constructor(keys: Map<number, Buffer>) {
    if (keys.size === 0) throw new Error('StaticKeyProvider needs at least one master key');
    this.keys = new Map(keys);
    this.versions = [...keys.keys()].sort((a, b) => b - a);
    this.activeVersion = this.versions[0]!;
  }

  static fromSpec(spec: string): StaticKeyProvider {
    const { keys, problems } = parseMasterKeys(spec);
    if (problems.length > 0) throw new Error(`MASTER_KEYS: ${problems.join('; ')}`);
    return new StaticKeyProvider(keys);
  }

  private key(version: number): Buffer {
    const key = this.keys.get(version);
    if (!key) throw new UnknownKeyVersionError(version);
    return key;
  }

  async wrap(version: number, dataKey: Buffer, aad: Buffer): Promise<Buffer> {
    const nonce = randomBytes(NONCE_BYTES);
    const { ciphertext, tag } = gcmSeal(this.key(version), nonce, dataKey, aad);
    return Buffer.concat([nonce, ciphertext, tag]);
  }

  async unwrap(version: number, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    if (wrapped.length < NONCE_BYTES + TAG_BYTES) throw new DecryptionError('wrapped key is truncated');
    const nonce = wrapped.subarray(0, NONCE_BYTES);
    const tag = wrapped.subarray(wrapped.length - TAG_BYTES);
    return gcmOpen(this.key(version), nonce, wrapped.subarray(NONCE_BYTES, wrapped.length - TAG_BYTES), tag, aad);
  }

  async derivePurposeKey(version: number, purpose: string): Promise<Buffer> {
    // A fixed salt is fine: the input is a uniformly random 256-bit key (RFC 5869 §3.1).
    return hkdfSha256(this.key(version), Buffer.from('switchboard/purpose-key/v1'), Buffer.from(purpose, 'utf8'), 32);
  }
}
