import { randomBytes, randomUUID } from 'node:crypto';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { DataKeyMissingError, SecretVault, type SecretLocation } from '../../src/crypto/vault';
import type { KeyStatus } from '../../src/db/key-inventory';
import { getTenant, listTenants, tenantExists } from '../../src/db/tenants';
import { runCli, type CliResult } from '../support/cli';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The operator CLI as an operator runs it: a child process (`node --import tsx src/cli.ts …`) on
 * a test database. Every required variable is set explicitly, since src/config.ts would otherwise
 * fill gaps from `.data/dev.env`.
 */

const mk1 = randomBytes(32);
const mk2 = randomBytes(32);
const KEYS_1 = `1:${mk1.toString('base64')}`;
const KEYS_21 = `2:${mk2.toString('base64')},1:${mk1.toString('base64')}`;
const provider1 = StaticKeyProvider.fromSpec(KEYS_1);

let db: TestDatabase;
/** Every token handed to the CLI, and everything the CLI printed. */
const tokens: string[] = [];
const outputs: Array<{ args: string[]; out: string }> = [];

const newToken = () => {
  const t = `EAAB${randomBytes(20).toString('hex')}`;
  tokens.push(t);
  return t;
};

async function cli(args: string[], opts: { stdin?: string; masterKeys?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const result = await runCli(args, {
    databaseUrl: db.url,
    masterKeys: opts.masterKeys ?? KEYS_1,
    ...(opts.stdin !== undefined && { stdin: opts.stdin }),
    ...(opts.env && { env: opts.env }),
  });
  outputs.push({ args, out: result.stdout + result.stderr });
  return result;
}

/** Runs a command that must succeed and returns its JSON output. */
async function ok<T = Record<string, unknown>>(args: string[], opts?: { stdin?: string; masterKeys?: string; env?: Record<string, string> }): Promise<T> {
  const r = await cli(args, opts);
  if (r.code !== 0) throw new Error(`cli ${args[0]} exited ${r.code}: ${r.stderr}`);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as T;
}

const tokenLoc = (tenantId: string, channelId: string): SecretLocation => ({ tenantId, table: 'channels', column: 'access_token', rowId: channelId });

async function storedToken(channelId: string): Promise<{ tenantId: string; blob: Buffer; keyVersion: number }> {
  const { rows } = await db.ownerPool.query<{ tenant_id: string; blob: Buffer; token_key_version: number }>(
    'SELECT tenant_id, access_token_ciphertext AS blob, token_key_version FROM channels WHERE id = $1',
    [channelId],
  );
  expect(rows).toHaveLength(1);
  return { tenantId: rows[0]!.tenant_id, blob: rows[0]!.blob, keyVersion: rows[0]!.token_key_version };
}

describe('operator CLI: tenants, channels and keys (child process, real PostgreSQL)', () => {
  let tenantA: string;
  const channelsA: Array<{ id: string; token: string }> = [];

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('creates a tenant and connects channels, with the token from argv or from stdin, stored encrypted', async () => {
    const created = await ok<{ id: string }>(['tenants:create', '--name', 'Acme Shoes']);
    expect(created).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    tenantA = created.id;
    expect((await db.ownerPool.query('SELECT name FROM tenants WHERE id = $1', [tenantA])).rows).toEqual([{ name: 'Acme Shoes' }]);

    const argvToken = newToken();
    const viaArgv = await ok<{ id: string }>(['channels:connect', '--tenant', tenantA, '--platform', 'instagram', '--account-id', '17841400000000001', '--access-token', argvToken]);
    expect(viaArgv).toEqual({ id: expect.any(String) });
    channelsA.push({ id: viaArgv.id, token: argvToken });

    // `--access-token -`: the token comes on stdin (kept out of shell history and `ps`); surrounding whitespace is dropped.
    const stdinToken = newToken();
    const viaStdin = await ok<{ id: string }>(['channels:connect', '--tenant', tenantA, '--platform', 'messenger', '--account-id', '100200300', '--access-token', '-'], {
      stdin: `${stdinToken}\n`,
    });
    channelsA.push({ id: viaStdin.id, token: stdinToken });

    const vault = new SecretVault(db.pool, provider1);
    for (const ch of channelsA) {
      const stored = await storedToken(ch.id);
      expect(stored.tenantId).toBe(tenantA);
      expect(stored.keyVersion).toBe(1);
      expect(stored.blob.includes(Buffer.from(ch.token))).toBe(false);
      expect(await vault.decrypt(tokenLoc(tenantA, ch.id), stored.blob)).toBe(ch.token);
    }

    // A reconnect of the same account replaces the token on the same row.
    const replacement = newToken();
    const again = await ok<{ id: string }>(['channels:connect', '--tenant', tenantA, '--platform', 'messenger', '--account-id', '100200300', '--access-token', '-'], {
      stdin: replacement,
    });
    expect(again.id).toBe(viaStdin.id);
    expect(await new SecretVault(db.pool, provider1).decrypt(tokenLoc(tenantA, again.id), (await storedToken(again.id)).blob)).toBe(replacement);
    channelsA[1]!.token = replacement;
  });

  it('lists tenants and reads one, each in its own scope; a non-UUID or unknown id is no tenant', async () => {
    const listed = await listTenants(db.pool);
    expect(listed).toEqual([{ id: tenantA, name: 'Acme Shoes', createdAt: expect.any(Date) }]);
    expect(await getTenant(db.pool, tenantA)).toEqual(listed[0]);
    expect(await getTenant(db.pool, tenantA.toUpperCase())).toEqual(listed[0]);
    for (const id of [randomUUID(), 'not-a-uuid', '']) {
      expect(await getTenant(db.pool, id)).toBeNull();
      expect(await tenantExists(db.pool, id)).toBe(false);
    }
    expect(await tenantExists(db.pool, tenantA)).toBe(true);
  });

  it('keys:status reports the key hierarchy as JSON', async () => {
    const tenantB = (await ok<{ id: string }>(['tenants:create', '--name', 'Tenant B'])).id;
    await ok(['channels:connect', '--tenant', tenantB, '--platform', 'instagram', '--account-id', '17841400000000002', '--access-token', newToken()]);

    const status = await ok<KeyStatus>(['keys:status']);
    const fresh = { masterKeyVersion: 1, createdAt: expect.any(String), ageDays: 0, superseded: false, due: false, dueBecause: [] };
    expect(status).toEqual({
      activeMasterKeyVersion: 1,
      configuredMasterKeyVersions: [1],
      masterKeys: [{ version: 1, dataKeys: 2, retired: false, configured: true }],
      // Tenant A: 3 encryptions (two connects and a reconnect); tenant B: 1.
      dataKeys: [{ version: 1, tenants: 2, superseded: 0, encryptions: 4, oldestCreatedAt: expect.any(String) }],
      // The configured defaults: 90 days or 2^30 encryptions.
      policy: { maxAgeDays: 90, maxEncryptions: 2 ** 30 },
      // Per key, oldest first: tenant A's was created first.
      tenantDataKeys: [
        { tenantId: tenantA, version: 1, encryptions: 3, ...fresh },
        { tenantId: tenantB, version: 1, encryptions: 1, ...fresh },
      ],
      secrets: [
        { table: 'channels', column: 'access_token_ciphertext', byDataKeyVersion: { '1': 3 }, onSupersededKeys: 0 },
        // No tenant stored a model API key or a webhook secret: counted, and empty.
        { table: 'tenant_settings', column: 'llm_api_key_ciphertext', byDataKeyVersion: {}, onSupersededKeys: 0 },
        { table: 'tenant_settings', column: 'notify_webhook_secret_ciphertext', byDataKeyVersion: {}, onSupersededKeys: 0 },
      ],
      pending: { rewrap: 0, reencrypt: 0 },
      dueForRotation: 0,
    });
    expect(new Date(status.dataKeys[0]!.oldestCreatedAt!).getTime()).not.toBeNaN();
    expect(status.tenantDataKeys[0]!.createdAt).toBe(status.dataKeys[0]!.oldestCreatedAt);

    // Age and usage as the policy sees them: tenant A's key 40 days old, tenant B's used 5000 times.
    await db.ownerPool.query("UPDATE tenant_data_keys SET created_at = created_at - interval '40 days' WHERE tenant_id = $1", [tenantA]);
    await db.ownerPool.query('UPDATE tenant_data_keys SET encryptions = 5000 WHERE tenant_id = $1', [tenantB]);
    const aged = await ok<KeyStatus>(['keys:status']);
    expect(aged.tenantDataKeys).toEqual([
      { tenantId: tenantA, version: 1, encryptions: 3, ...fresh, ageDays: 40 },
      { tenantId: tenantB, version: 1, encryptions: 5000, ...fresh },
    ]);
    expect(aged.dueForRotation).toBe(0);
    // Under a stricter configured policy (30 days or 1000 encryptions) both are due, each for its own limit.
    const strict = await ok<KeyStatus>(['keys:status'], { env: { DATA_KEY_MAX_AGE_DAYS: '30', DATA_KEY_MAX_ENCRYPTIONS: '1000' } });
    expect(strict.policy).toEqual({ maxAgeDays: 30, maxEncryptions: 1000 });
    expect(strict.tenantDataKeys.map((k) => [k.tenantId, k.due, k.dueBecause])).toEqual([
      [tenantA, true, ['age']],
      [tenantB, true, ['encryptions']],
    ]);
    expect(strict.dueForRotation).toBe(2);

    // With master key 2 added, both data keys are waiting to be rewrapped.
    const withV2 = await ok<KeyStatus>(['keys:status'], { masterKeys: KEYS_21 });
    expect(withV2).toMatchObject({
      activeMasterKeyVersion: 2,
      configuredMasterKeyVersions: [2, 1],
      masterKeys: [
        { version: 2, dataKeys: 0, retired: false, configured: true },
        { version: 1, dataKeys: 2, retired: false, configured: true },
      ],
      pending: { rewrap: 2, reencrypt: 0 },
    });
  });

  it('keys:retire refuses a master key that still wraps data keys, and the active one (exit 2)', async () => {
    const inUse = await cli(['keys:retire', '--version', '1'], { masterKeys: KEYS_21 });
    expect(inUse.code).toBe(2);
    expect(inUse.stdout).toBe('');
    expect(inUse.stderr).toMatch(/master key version 1 still wraps 2 data key\(s\)/);
    expect(inUse.stderr).toMatch(/keys:rotate/);

    const active = await cli(['keys:retire', '--version', '2'], { masterKeys: KEYS_21 });
    expect(active.code).toBe(2);
    expect(active.stderr).toMatch(/master key version 2 is the active one/);

    const onlyKey = await cli(['keys:retire', '--version', '1']);
    expect(onlyKey.code).toBe(2);
    expect(onlyKey.stderr).toMatch(/master key version 1 is the active one/);

    expect((await db.ownerPool.query('SELECT version FROM retired_master_keys')).rows).toEqual([]);
  });

  it('tenants:delete crypto-shreds: the ciphertext saved before the delete no longer decrypts anywhere', async () => {
    const doomed = (await ok<{ id: string }>(['tenants:create', '--name', 'Doomed Ltd'])).id;
    const token = newToken();
    const { id: channelId } = await ok<{ id: string }>(['channels:connect', '--tenant', doomed, '--platform', 'instagram', '--account-id', '17841400000000003', '--access-token', '-'], {
      stdin: token,
    });
    // What a backup taken before the delete would hold.
    const saved = await storedToken(channelId);
    expect(await new SecretVault(db.pool, provider1).decrypt(tokenLoc(doomed, channelId), saved.blob)).toBe(token);

    const deleted = await ok(['tenants:delete', '--id', doomed]);
    expect(deleted).toEqual({ id: doomed, deleted: true, dataKeysDestroyed: 1 });

    expect((await db.ownerPool.query('SELECT 1 FROM tenant_data_keys WHERE tenant_id = $1', [doomed])).rowCount).toBe(0);
    expect((await db.ownerPool.query('SELECT 1 FROM tenants WHERE id = $1', [doomed])).rowCount).toBe(0);
    expect((await db.ownerPool.query('SELECT 1 FROM channels WHERE tenant_id = $1', [doomed])).rowCount).toBe(0);
    // Even with every master key, a fresh vault has nothing to unwrap.
    for (const keys of [provider1, StaticKeyProvider.fromSpec(KEYS_21)]) {
      await expect(new SecretVault(db.pool, keys).decrypt(tokenLoc(doomed, channelId), saved.blob)).rejects.toThrow(DataKeyMissingError);
    }

    // Other tenants are untouched.
    const vault = new SecretVault(db.pool, provider1);
    for (const ch of channelsA) expect(await vault.decrypt(tokenLoc(tenantA, ch.id), (await storedToken(ch.id)).blob)).toBe(ch.token);

    const twice = await cli(['tenants:delete', '--id', doomed]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`--id: no tenant ${doomed}`);
  });

  it('rejects invalid input with exit code 2 and a message naming the problem', async () => {
    const token = newToken();
    const connect = (overrides: Record<string, string | undefined>) => {
      const flags: Record<string, string | undefined> = {
        '--tenant': tenantA,
        '--platform': 'instagram',
        '--account-id': '17841400000000009',
        '--access-token': token,
        ...overrides,
      };
      return ['channels:connect', ...Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [k, v]))];
    };
    const cases: Array<{ args: string[]; stdin?: string; message: string | RegExp }> = [
      { args: connect({ '--tenant': 'not-a-uuid' }), message: '--tenant: must be a UUID' },
      { args: connect({ '--tenant': randomUUID() }), message: /--tenant: no tenant [0-9a-f-]{36}/ },
      { args: connect({ '--platform': 'whatsapp' }), message: '--platform: must be instagram or messenger' },
      { args: connect({ '--account-id': 'acme' }), message: '--account-id: must be the numeric Page or Instagram account ID' },
      { args: connect({ '--access-token': undefined }), message: '--access-token: is required' },
      { args: connect({ '--access-token': '-' }), stdin: '  \n', message: '--access-token: is required' },
      { args: ['tenants:create'], message: '--name: is required' },
      { args: ['keys:retire'], message: '--version: is required' },
      { args: ['keys:retire', '--version', 'abc'], message: /--version: .*expected number/ },
      { args: ['keys:retire', '--version', '0'], message: /--version: .*>=1/ },
      { args: ['tenants:frobnicate'], message: 'unknown command "tenants:frobnicate"' },
      { args: ['constructor'], message: 'unknown command "constructor"' },
      { args: [], message: /^error: usage: npm run cli -- <command>\n/ },
      { args: [...connect({}), '--bogus', 'x'], message: "Unknown option '--bogus'" },
      // The token without its flag: refused without quoting it back.
      { args: [...connect({ '--access-token': undefined }), token], message: 'unexpected argument' },
      { args: [...connect({ '--access-token': undefined }), '--access-token'], message: "Option '--access-token <value>' argument missing" },
    ];
    const results = await Promise.all(cases.map((c) => cli(c.args, c.stdin === undefined ? {} : { stdin: c.stdin })));
    for (const [i, r] of results.entries()) {
      const c = cases[i]!;
      expect({ args: c.args, code: r.code, stdout: r.stdout }).toEqual({ args: c.args, code: 2, stdout: '' });
      if (typeof c.message === 'string') expect(r.stderr).toContain(c.message);
      else expect(r.stderr).toMatch(c.message);
    }

    // Connecting an account that belongs to another tenant is refused too.
    const other = (await ok<{ id: string }>(['tenants:create', '--name', 'Other'])).id;
    const conflict = await cli(connect({ '--tenant': other, '--account-id': '17841400000000001' }));
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toContain('instagram account 17841400000000001 is already connected to another tenant');
    // Nothing was written by any of the refused commands.
    expect((await db.ownerPool.query("SELECT count(*)::int AS n FROM channels WHERE account_id = '17841400000000009'")).rows[0].n).toBe(0);
  }, 90_000);

  it('never prints an access token, on success or failure', () => {
    expect(tokens.length).toBeGreaterThanOrEqual(6);
    expect(outputs.length).toBeGreaterThanOrEqual(20);
    for (const { args, out } of outputs) {
      for (const t of tokens) {
        if (out.includes(t)) throw new Error(`cli ${args[0]} printed an access token:\n${out}`);
      }
    }
  });
});
