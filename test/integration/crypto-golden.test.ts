import { readFileSync } from 'node:fs';
import path from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { AesGcmPayloadCodec } from '../../src/temporal/payload-codec';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * Bytes written by the first versions of the vault and payload formats. Data at rest outlives
 * code: these must keep decrypting after any change, or an upgrade would lock tenants out.
 */
const golden = JSON.parse(readFileSync(path.join(__dirname, '../golden/crypto-formats-v1.json'), 'utf8')) as {
  masterKeys: string;
  vault: { location: { tenantId: string; table: string; column: string; rowId: string }; plaintext: string; dataKey: { version: number; masterKeyVersion: number; wrappedHex: string }; secretHex: string };
  payloadCodec: { value: unknown; metadata: Record<string, string>; dataBase64: string };
};

describe('golden ciphertexts from format v1 still decrypt', () => {
  let db: TestDatabase;
  const provider = StaticKeyProvider.fromSpec(golden.masterKeys);
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('vault secret (format 0x02) with its wrapped data key (format 0x01)', async () => {
    const { location, dataKey } = golden.vault;
    await db.ownerPool.query('INSERT INTO tenants (id, name) VALUES ($1, $2)', [location.tenantId, 'golden']);
    await db.ownerPool.query('INSERT INTO tenant_data_keys (tenant_id, version, master_key_version, wrapped_key) VALUES ($1, $2, $3, $4)', [
      location.tenantId,
      dataKey.version,
      dataKey.masterKeyVersion,
      Buffer.from(dataKey.wrappedHex, 'hex'),
    ]);
    const vault = new SecretVault(db.pool, provider);
    expect(await vault.decrypt(location, Buffer.from(golden.vault.secretHex, 'hex'))).toBe(golden.vault.plaintext);
  });

  it('Temporal payload encrypted by the codec', async () => {
    const codec = await AesGcmPayloadCodec.fromKeyProvider(provider);
    const [decoded] = await codec.decode([
      {
        metadata: Object.fromEntries(Object.entries(golden.payloadCodec.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
        data: Buffer.from(golden.payloadCodec.dataBase64, 'base64'),
      },
    ]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(golden.payloadCodec.value);
  });
});
