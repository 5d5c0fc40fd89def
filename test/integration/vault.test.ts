import { randomBytes } from 'node:crypto';
import { DecryptionError } from '../../src/crypto/aead';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { DataKeyMissingError, SecretVault, secretKeyVersion, type SecretLocation } from '../../src/crypto/vault';
import { withTenant } from '../../src/db/tenant-scope';
import { createTenant } from '../../src/db/tenants';
import { createTestDatabase, type TestDatabase } from '../support/stack';

const key = () => randomBytes(32);

describe('SecretVault (envelope encryption, real PostgreSQL)', () => {
  let db: TestDatabase;
  const mk1 = key();
  const mk2 = key();
  const provider1 = new StaticKeyProvider(new Map([[1, mk1]]));
  const provider12 = new StaticKeyProvider(new Map([[1, mk1], [2, mk2]]));
  let tenantA: string;
  let tenantB: string;
  const loc = (tenantId: string, rowId = 'row-1'): SecretLocation => ({ tenantId, table: 'channels', column: 'access_token', rowId });

  beforeAll(async () => {
    db = await createTestDatabase();
    tenantA = (await createTenant(db.pool, 'A')).id;
    tenantB = (await createTenant(db.pool, 'B')).id;
  });
  afterAll(() => db.drop());

  it('encrypts with a fresh nonce under a per-tenant data key and decrypts', async () => {
    const vault = new SecretVault(db.pool, provider1);
    const a = await vault.encrypt(loc(tenantA), 'EAAB-secret');
    const b = await vault.encrypt(loc(tenantA), 'EAAB-secret');
    expect(a.blob.equals(b.blob)).toBe(false);
    expect(a.keyVersion).toBe(1);
    expect(secretKeyVersion(a.blob)).toBe(1);
    expect(await vault.decrypt(loc(tenantA), a.blob)).toBe('EAAB-secret');
    // A cold vault (another process) unwraps the data key from the database.
    expect(await new SecretVault(db.pool, provider1).decrypt(loc(tenantA), b.blob)).toBe('EAAB-secret');
    const { rows } = await db.ownerPool.query('SELECT tenant_id, version, master_key_version, encryptions FROM tenant_data_keys WHERE tenant_id = $1', [tenantA]);
    expect(rows).toEqual([{ tenant_id: tenantA, version: 1, master_key_version: 1, encryptions: '2' }]);
  });

  it('fails when any bound component changes: tenant, table, column, row, key version, or a byte', async () => {
    const vault = new SecretVault(db.pool, provider1);
    await vault.encrypt(loc(tenantB), 'warm-up'); // tenant B has a data key too
    const { blob } = await vault.encrypt(loc(tenantA, 'row-7'), 'EAAB-secret');
    const variants: SecretLocation[] = [
      loc(tenantB, 'row-7'),
      { ...loc(tenantA, 'row-7'), table: 'other' },
      { ...loc(tenantA, 'row-7'), column: 'refresh_token' },
      loc(tenantA, 'row-8'),
    ];
    for (const other of variants) await expect(vault.decrypt(other, blob)).rejects.toThrow(DecryptionError);
    const relabelled = Buffer.from(blob);
    relabelled.writeUInt32BE(2, 1);
    await expect(vault.decrypt(loc(tenantA, 'row-7'), relabelled)).rejects.toThrow(DecryptionError);
    for (let i = 5; i < blob.length; i += 7) {
      const flipped = Buffer.from(blob);
      flipped[i] = flipped[i]! ^ 0x80;
      await expect(vault.decrypt(loc(tenantA, 'row-7'), flipped)).rejects.toThrow(DecryptionError);
    }
    await expect(vault.decrypt(loc(tenantA, 'row-7'), Buffer.concat([Buffer.from([1]), blob.subarray(1)]))).rejects.toThrow(/format/);
  });

  it('rewraps data keys under a new master key version without touching secrets', async () => {
    const tenant = (await createTenant(db.pool, 'R')).id;
    const old = new SecretVault(db.pool, provider1);
    const { blob } = await old.encrypt(loc(tenant), 'before-rotation');

    const vault = new SecretVault(db.pool, provider12);
    expect(await vault.rewrapDataKey(tenant, 1)).toBe(true);
    expect(await vault.rewrapDataKey(tenant, 1)).toBe(false); // idempotent
    const { rows } = await db.ownerPool.query('SELECT master_key_version FROM tenant_data_keys WHERE tenant_id = $1', [tenant]);
    expect(rows[0].master_key_version).toBe(2);
    // After the rewrap, master key 1 is no longer needed for this tenant.
    const onlyV2 = new SecretVault(db.pool, new StaticKeyProvider(new Map([[2, mk2]])));
    expect(await onlyV2.decrypt(loc(tenant), blob)).toBe('before-rotation');
    await expect(new SecretVault(db.pool, provider1).decrypt(loc(tenant), blob)).rejects.toThrow(/master key version 2/);
  });

  it('rotates a data key: new writes use the new version, old secrets still decrypt', async () => {
    const tenant = (await createTenant(db.pool, 'D')).id;
    const vault = new SecretVault(db.pool, provider12);
    const first = await vault.encrypt(loc(tenant), 'v1-secret');
    expect(await vault.rotateDataKey(tenant)).toBe(2);
    const second = await vault.encrypt(loc(tenant), 'v2-secret');
    expect([first.keyVersion, second.keyVersion]).toEqual([1, 2]);
    expect(await vault.decrypt(loc(tenant), first.blob)).toBe('v1-secret');
    expect(await vault.decrypt(loc(tenant), second.blob)).toBe('v2-secret');
  });

  it('creates one data key when many encrypt concurrently for a new tenant', async () => {
    const tenant = (await createTenant(db.pool, 'C')).id;
    const vaults = [1, 2, 3, 4].map(() => new SecretVault(db.pool, provider1));
    const sealed = await Promise.all(vaults.map((v, i) => v.encrypt(loc(tenant, `r${i}`), `s${i}`)));
    const { rows } = await db.ownerPool.query('SELECT count(*)::int AS n FROM tenant_data_keys WHERE tenant_id = $1', [tenant]);
    expect(rows[0].n).toBe(1);
    for (const [i, s] of sealed.entries()) expect(await vaults[0]!.decrypt(loc(tenant, `r${i}`), s.blob)).toBe(`s${i}`);
  });

  it('bounds the cache and expires entries after the TTL', async () => {
    let now = 1_000_000;
    const vault = new SecretVault(db.pool, provider12, { cacheMaxEntries: 2, cacheTtlMs: 1000, now: () => now });
    const tenants = await Promise.all(['x', 'y', 'z'].map(async (n) => (await createTenant(db.pool, n)).id));
    for (const t of tenants) await vault.encrypt(loc(t), 'x');
    expect(vault.cacheSize).toBe(2);
    // An expired entry is unwrapped again from the database rather than served stale.
    const { blob } = await vault.encrypt(loc(tenants[2]!), 'y');
    now += 1001;
    await db.ownerPool.query('UPDATE tenant_data_keys SET wrapped_key = $2 WHERE tenant_id = $1', [tenants[2], Buffer.from([1, 0, 0, 0, 1])]);
    await expect(vault.decrypt(loc(tenants[2]!), blob)).rejects.toThrow(DecryptionError);
  });

  it("works inside the caller's tenant transaction: key, secret and usage count commit or roll back together", async () => {
    const tenant = (await createTenant(db.pool, 'T')).id;
    const vault = new SecretVault(db.pool, provider1);
    await expect(
      withTenant(db.pool, tenant, async (tx) => {
        await vault.encrypt(loc(tenant), 'rolled-back', tx);
        throw new Error('caller failed');
      }),
    ).rejects.toThrow('caller failed');
    expect((await db.ownerPool.query('SELECT 1 FROM tenant_data_keys WHERE tenant_id = $1', [tenant])).rowCount).toBe(0);

    // The data key the rolled-back transaction created is never used: another process commits its own.
    const other = new SecretVault(db.pool, provider1);
    const committed = await other.encrypt(loc(tenant), 'committed');
    const sealed = await withTenant(db.pool, tenant, async (tx) => {
      const s = await vault.encrypt(loc(tenant), 'in-tx', tx);
      expect(await vault.decrypt(loc(tenant), s.blob, tx)).toBe('in-tx');
      return s;
    });
    expect(await new SecretVault(db.pool, provider1).decrypt(loc(tenant), sealed.blob)).toBe('in-tx');
    expect(await vault.decrypt(loc(tenant), committed.blob)).toBe('committed');
    const { rows } = await db.ownerPool.query('SELECT version, encryptions FROM tenant_data_keys WHERE tenant_id = $1', [tenant]);
    expect(rows).toEqual([{ version: 1, encryptions: '2' }]);
  });

  it("never reads a data key through another tenant's scope", async () => {
    const vault = new SecretVault(db.pool, provider1);
    const { blob } = await vault.encrypt(loc(tenantA, 'row-x'), 'only-A');
    // On a client scoped to tenant B, tenant A's data key is invisible: a cold vault finds nothing.
    await expect(withTenant(db.pool, tenantB, (tx) => new SecretVault(db.pool, provider1).decrypt(loc(tenantA, 'row-x'), blob, tx))).rejects.toThrow(DataKeyMissingError);
    // …and cannot create one for tenant A either (row-level security's WITH CHECK).
    const fresh = (await createTenant(db.pool, 'F')).id;
    await expect(withTenant(db.pool, tenantB, (tx) => vault.encrypt(loc(fresh), 'x', tx))).rejects.toThrow(/row-level security/);
    expect((await db.ownerPool.query('SELECT 1 FROM tenant_data_keys WHERE tenant_id = $1', [fresh])).rowCount).toBe(0);
  });

  it('crypto-shreds: once the data key is destroyed nothing of the tenant decrypts, in any vault', async () => {
    const tenant = (await createTenant(db.pool, 'S')).id;
    const vault = new SecretVault(db.pool, provider1);
    const { blob } = await vault.encrypt(loc(tenant), 'EAAB-doomed');
    await db.ownerPool.query('DELETE FROM tenant_data_keys WHERE tenant_id = $1', [tenant]);
    vault.evictTenant(tenant);
    await expect(vault.decrypt(loc(tenant), blob)).rejects.toThrow(DataKeyMissingError);
    await expect(new SecretVault(db.pool, provider1).decrypt(loc(tenant), blob)).rejects.toThrow(DataKeyMissingError);
  });
});
