import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection } from '@temporalio/worker';
import { StaticKeyProvider, UnknownKeyVersionError, type KeyProvider } from '../../src/crypto/key-provider';
import { DataKeyMissingError, SecretVault, secretKeyVersion } from '../../src/crypto/vault';
import { connectChannel, loadChannelCredentials } from '../../src/db/channels';
import { KeyInUseError, keyStatus, retireMasterKey } from '../../src/db/key-inventory';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { createDataConverter } from '../../src/temporal/payload-codec';
import { createSwitchboardWorker } from '../../src/worker-setup';
import type { KeyRotationInput, KeyRotationResult, keyRotationWorkflow } from '../../workflows/key-rotation';
import { ROOT } from '../support/paths';
import { createTestDatabase, eventually, installQuietRuntime, testConfig, type TestDatabase, required } from '../support/stack';

/**
 * The KeyRotation workflow end to end: the real dev server, the real workflow bundle, the real
 * activities and vault on a real database. Tokens are stored under master key 1, the workers run
 * with master keys {1, 2}, and afterwards a process holding only master key 2 must read them all.
 */


const mk1 = randomBytes(32);
const mk2 = randomBytes(32);
const MASTER_KEYS_12 = `2:${mk2.toString('base64')},1:${mk1.toString('base64')}`;
const provider1 = new StaticKeyProvider(new Map([[1, mk1]]));
const provider2 = new StaticKeyProvider(new Map([[2, mk2]]));
const provider12 = StaticKeyProvider.fromSpec(MASTER_KEYS_12);

/** Counts the wraps a worker does (each rewrap and each new data key is one). */
class CountingKeyProvider implements KeyProvider {
  wraps = 0;
  constructor(private readonly inner: KeyProvider) {}
  get activeVersion(): number {
    return this.inner.activeVersion;
  }
  get versions(): readonly number[] {
    return this.inner.versions;
  }
  wrap(version: number, dataKey: Buffer, aad: Buffer): Promise<Buffer> {
    this.wraps += 1;
    return this.inner.wrap(version, dataKey, aad);
  }
  unwrap(version: number, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    return this.inner.unwrap(version, wrapped, aad);
  }
  derivePurposeKey(version: number, purpose: string): Promise<Buffer> {
    return this.inner.derivePurposeKey(version, purpose);
  }
}

let address: string;
let bundleCode: string;
let connection: Connection;
let client: Client;
let nativeConnection: NativeConnection;
const databases: TestDatabase[] = [];

beforeAll(async () => {
  installQuietRuntime();
  address = required('TEST_TEMPORAL_ADDRESS');
  bundleCode = readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8');
  connection = await Connection.connect({ address });
  // The same data converter as the workers: payloads are encrypted with a key derived from master key 2.
  client = new Client({ connection, dataConverter: await createDataConverter(provider12) });
  nativeConnection = await NativeConnection.connect({ address });
});

afterAll(async () => {
  await nativeConnection?.close();
  await connection?.close();
  for (const db of databases) await db.drop().catch(() => undefined);
});

async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

interface SeededChannel {
  id: string;
  tenantId: string;
  token: string;
}

/** `tenants` tenants, each with `channelsPerTenant(i)` channels whose tokens a master-key-1-only vault encrypted. */
async function seed(db: TestDatabase, tenants: number, channelsPerTenant: (i: number) => number = () => 1): Promise<SeededChannel[]> {
  const vault = new SecretVault(db.pool, provider1);
  const perTenant = await Promise.all(
    Array.from({ length: tenants }, async (_, i) => {
      const tenantId = (await createTenant(db.pool, `tenant ${i}`)).id;
      const out: SeededChannel[] = [];
      for (let c = 0; c < channelsPerTenant(i); c++) {
        const token = `EAAB${randomBytes(24).toString('hex')}`;
        const accountId = String(17_000_000_000 + i * 10 + c);
        const { id } = await connectChannel(db.pool, vault, { tenantId, platform: c % 2 ? 'messenger' : 'instagram', accountId, accessToken: token });
        out.push({ id, tenantId, token });
      }
      return out;
    }),
  );
  return perTenant.flat();
}

function startRotation(taskQueue: string, input: KeyRotationInput): Promise<WorkflowHandle<typeof keyRotationWorkflow>> {
  return client.workflow.start<typeof keyRotationWorkflow>('keyRotationWorkflow', {
    workflowId: `key-rotation-test-${randomUUID()}`,
    taskQueue,
    args: [input],
    workflowExecutionTimeout: '80 seconds',
  });
}

/** Runs the workflow with an in-process Switchboard worker on a fresh task queue. */
async function rotateInProcess(
  db: TestDatabase,
  input: KeyRotationInput,
  keys: KeyProvider = provider12,
): Promise<{ result: KeyRotationResult; handle: WorkflowHandle<typeof keyRotationWorkflow> }> {
  const config = testConfig({ DATABASE_URL: db.url, MASTER_KEYS: MASTER_KEYS_12, TEMPORAL_TASK_QUEUE: `rotation-${randomUUID()}` });
  const worker = await createSwitchboardWorker({
    config,
    connection: nativeConnection,
    pool: db.pool,
    keys,
    logger: createLogger('test', 'silent'),
    workflowBundle: { code: bundleCode },
  });
  const handle = await startRotation(config.TEMPORAL_TASK_QUEUE, input);
  const result = await worker.runUntil(handle.result());
  return { result, handle };
}

async function masterVersions(db: TestDatabase): Promise<Record<string, number>> {
  const { rows } = await db.ownerPool.query<{ v: number; n: number }>('SELECT master_key_version AS v, count(*)::int AS n FROM tenant_data_keys GROUP BY 1 ORDER BY 1');
  return Object.fromEntries(rows.map((r) => [String(r.v), r.n]));
}

async function expectAllTokensDecrypt(db: TestDatabase, channels: SeededChannel[], keys: KeyProvider): Promise<void> {
  const vault = new SecretVault(db.pool, keys);
  for (const ch of channels) {
    const creds = await loadChannelCredentials(db.pool, vault, { tenantId: ch.tenantId, channelId: ch.id }, 'graph.send');
    expect({ id: creds.id, tenantId: creds.tenantId, accessToken: creds.accessToken }).toEqual({ id: ch.id, tenantId: ch.tenantId, accessToken: ch.token });
  }
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** The rewrapDataKeysBatch activities in a history: how often scheduled, and each one's final attempt. */
function rewrapActivities(events: HistoryEvent[]): { scheduled: number; attempts: number[]; heartbeatTimeouts: number } {
  const scheduledIds = new Set(
    events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'rewrapDataKeysBatch').map((e) => String(e.eventId)),
  );
  const started = events.filter((e) => scheduledIds.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId)));
  return {
    scheduled: scheduledIds.size,
    attempts: started.map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1),
    heartbeatTimeouts: started.filter(
      (e) => e.activityTaskStartedEventAttributes!.lastFailure?.timeoutFailureInfo?.timeoutType === temporal.api.enums.v1.TimeoutType.TIMEOUT_TYPE_HEARTBEAT,
    ).length,
  };
}

describe('KeyRotation workflow (dev server, real activities, real PostgreSQL)', () => {
  it('rewraps every data key under the new master key in batches; master key 1 can then be retired', async () => {
    const db = await freshDatabase();
    const channels = await seed(db, 25);
    expect(await masterVersions(db)).toEqual({ '1': 25 });

    // Before the rotation master key 1 is still needed; the active version can never be retired.
    await expect(retireMasterKey(db.pool, provider12, 1)).rejects.toThrow(KeyInUseError);
    await expect(retireMasterKey(db.pool, provider12, 1)).rejects.toThrow(/still wraps 25 data key/);
    await expect(retireMasterKey(db.pool, provider12, 2)).rejects.toThrow(KeyInUseError);
    const before = await keyStatus(db.pool, provider12);
    expect(before.pending).toEqual({ rewrap: 25, reencrypt: 0 });

    const { result, handle } = await rotateInProcess(db, { batchSize: 4, rotateDataKeys: false });
    expect(result).toEqual({ rewrapped: 25, dataKeysRotated: 0, reencrypted: 0, destroyed: 0 });

    const { rows } = await db.ownerPool.query<{ version: number; master_key_version: number; rewrapped: boolean; superseded: boolean }>(
      'SELECT version, master_key_version, rewrapped_at IS NOT NULL AS rewrapped, superseded_at IS NOT NULL AS superseded FROM tenant_data_keys',
    );
    expect(rows).toHaveLength(25);
    // Rewrapping changes the wrapping only: same data key versions, nothing superseded.
    for (const r of rows) expect(r).toEqual({ version: 1, master_key_version: 2, rewrapped: true, superseded: false });

    const status = await keyStatus(db.pool, provider12);
    expect(status.pending).toEqual({ rewrap: 0, reencrypt: 0 });
    expect(status.masterKeys).toEqual([
      { version: 2, dataKeys: 25, retired: false, configured: true },
      { version: 1, dataKeys: 0, retired: false, configured: true },
    ]);
    expect(status.secrets).toEqual([
      { table: 'channels', column: 'access_token_ciphertext', byDataKeyVersion: { '1': 25 }, onSupersededKeys: 0 },
      { table: 'tenant_settings', column: 'llm_api_key_ciphertext', byDataKeyVersion: {}, onSupersededKeys: 0 },
      { table: 'tenant_settings', column: 'notify_webhook_secret_ciphertext', byDataKeyVersion: {}, onSupersededKeys: 0 },
    ]);

    // A process that holds only master key 2 reads every token; one with only master key 1 reads none.
    await expectAllTokensDecrypt(db, channels, provider2);
    await expect(loadChannelCredentials(db.pool, new SecretVault(db.pool, provider1), { tenantId: channels[0]!.tenantId, channelId: channels[0]!.id }, 'graph.send')).rejects.toThrow(UnknownKeyVersionError);

    await expect(retireMasterKey(db.pool, provider12, 2)).rejects.toThrow(/active/);
    await retireMasterKey(db.pool, provider12, 1);
    expect((await keyStatus(db.pool, provider12)).masterKeys.find((m) => m.version === 1)).toEqual({ version: 1, dataKeys: 0, retired: true, configured: true });

    // 25 keys in batches of 4: seven activity calls, none retried.
    const history = rewrapActivities((await handle.fetchHistory()).events ?? []);
    expect(history.scheduled).toBe(7);
    expect(history.attempts).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });

  it('rotates the data keys too: new version per tenant, every secret re-encrypted, old keys destroyed', async () => {
    const db = await freshDatabase();
    // 25 tenants, every fifth with a second channel: 30 secrets.
    const channels = await seed(db, 25, (i) => (i % 5 === 0 ? 2 : 1));
    expect(channels).toHaveLength(30);
    const oldBlobs = new Map(
      (await db.ownerPool.query<{ id: string; blob: Buffer }>('SELECT id, access_token_ciphertext AS blob FROM channels')).rows.map((r) => [r.id, r.blob]),
    );

    const { result } = await rotateInProcess(db, { batchSize: 4, rotateDataKeys: true });
    expect(result).toEqual({ rewrapped: 25, dataKeysRotated: 25, reencrypted: 30, destroyed: 25 });

    // One data key per tenant remains: version 2, under master key 2, current.
    const keys = await db.ownerPool.query<{ tenant_id: string; version: number; master_key_version: number; superseded: boolean }>(
      'SELECT tenant_id, version, master_key_version, superseded_at IS NOT NULL AS superseded FROM tenant_data_keys ORDER BY tenant_id',
    );
    const tenantIds = [...new Set(channels.map((c) => c.tenantId))].sort();
    expect(keys.rows.map((r) => r.tenant_id)).toEqual(tenantIds);
    for (const r of keys.rows) expect(r).toMatchObject({ version: 2, master_key_version: 2, superseded: false });

    const secrets = await db.ownerPool.query<{ id: string; token_key_version: number; blob: Buffer }>(
      'SELECT id, token_key_version, access_token_ciphertext AS blob FROM channels',
    );
    expect(secrets.rows).toHaveLength(30);
    for (const r of secrets.rows) {
      expect(r.token_key_version).toBe(2);
      expect(secretKeyVersion(r.blob)).toBe(2);
      expect(r.blob.equals(oldBlobs.get(r.id)!)).toBe(false);
    }

    const status = await keyStatus(db.pool, provider12);
    expect(status.pending).toEqual({ rewrap: 0, reencrypt: 0 });
    expect(status.dataKeys).toEqual([expect.objectContaining({ version: 2, tenants: 25, superseded: 0, encryptions: 30 })]);
    expect(status.secrets[0]!.byDataKeyVersion).toEqual({ '2': 30 });

    await expectAllTokensDecrypt(db, channels, provider2);
    // The old ciphertexts (in a backup, say) died with the destroyed version 1 data keys.
    const fresh = new SecretVault(db.pool, provider12);
    for (const ch of channels.slice(0, 5)) {
      await expect(fresh.decrypt({ tenantId: ch.tenantId, table: 'channels', column: 'access_token', rowId: ch.id }, oldBlobs.get(ch.id)!)).rejects.toThrow(
        DataKeyMissingError,
      );
    }
  });

  it('survives a worker killed mid-batch: another worker finishes, every key rewrapped exactly once', async () => {
    const db = await freshDatabase();
    const TOTAL = 60;
    const channels = await seed(db, TOTAL);
    const taskQueue = `rotation-crash-${randomUUID()}`;
    const output: string[] = [];
    let child: ChildProcess | undefined;
    let rewrappedBeforeKill = 0;
    try {
      child = spawn(process.execPath, ['--import', 'tsx', 'test/support/rotation-worker.ts'], {
        cwd: ROOT,
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          MASTER_KEYS: MASTER_KEYS_12,
          TEMPORAL_ADDRESS: address,
          TEMPORAL_TASK_QUEUE: taskQueue,
          TEST_WORKFLOW_BUNDLE: required('TEST_WORKFLOW_BUNDLE'),
          WRAP_DELAY_MS: '40',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const proc = child;
      proc.stdout!.on('data', (d: Buffer) => output.push(`[stdout] ${d.toString('utf8')}`));
      proc.stderr!.on('data', (d: Buffer) => output.push(`[stderr] ${d.toString('utf8')}`));
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      const alive = () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`rotation worker exited early (${proc.exitCode ?? proc.signalCode})`);
      };

      await eventually(async () => (alive(), output.some((o) => o.includes('ready'))), 30_000, 50);
      const handle = await startRotation(taskQueue, { batchSize: 10, rotateDataKeys: false, heartbeatTimeoutMs: 2000 });

      // Kill it once some, but not all, keys are under master key 2, in the middle of a batch of 10
      // (not at its end, where the kill could fall between two activities): each wrap takes ≥ 40 ms there.
      const partial = await eventually(
        async () => {
          alive();
          const n = (await masterVersions(db))['2'] ?? 0;
          return n > 10 && n < TOTAL - 10 && n % 10 >= 1 && n % 10 <= 8 ? n : undefined;
        },
        30_000,
        20,
      );
      proc.kill('SIGKILL');
      await exited;
      expect(proc.signalCode).toBe('SIGKILL');
      // A statement sent just before the kill may still commit: let it land before counting.
      await new Promise((r) => setTimeout(r, 200));
      rewrappedBeforeKill = (await masterVersions(db))['2'] ?? 0;
      expect(rewrappedBeforeKill).toBeGreaterThanOrEqual(partial);
      expect(rewrappedBeforeKill).toBeLessThan(TOTAL);

      // A second worker on the same task queue picks the batch up once the heartbeat times out.
      const keys = new CountingKeyProvider(provider12);
      const config = testConfig({ DATABASE_URL: db.url, MASTER_KEYS: MASTER_KEYS_12, TEMPORAL_TASK_QUEUE: taskQueue });
      const worker = await createSwitchboardWorker({
        config,
        connection: nativeConnection,
        pool: db.pool,
        keys,
        logger: createLogger('test', 'silent'),
        workflowBundle: { code: bundleCode },
      });
      const result = await worker.runUntil(handle.result());

      expect(result.rewrapped).toBeLessThanOrEqual(TOTAL);
      expect(result).toMatchObject({ dataKeysRotated: 0, reencrypted: 0, destroyed: 0 });
      // Exactly once: the second worker wrapped only the keys the first one had not finished.
      expect(keys.wraps).toBe(TOTAL - rewrappedBeforeKill);

      const { rows } = await db.ownerPool.query<{ version: number; master_key_version: number; rewrapped: boolean }>(
        'SELECT version, master_key_version, rewrapped_at IS NOT NULL AS rewrapped FROM tenant_data_keys',
      );
      expect(rows).toHaveLength(TOTAL);
      for (const r of rows) expect(r).toEqual({ version: 1, master_key_version: 2, rewrapped: true });
      expect((await keyStatus(db.pool, provider12)).pending).toEqual({ rewrap: 0, reencrypt: 0 });
      await expectAllTokensDecrypt(db, channels, provider2);

      // The batch the dead worker held was retried after a heartbeat timeout.
      const history = rewrapActivities((await handle.fetchHistory()).events ?? []);
      expect(Math.max(...history.attempts)).toBeGreaterThan(1);
      expect(history.heartbeatTimeouts).toBeGreaterThanOrEqual(1);
    } catch (err) {
      process.stderr.write(`--- rotation worker output (keys rewrapped before the kill: ${rewrappedBeforeKill}) ---\n${output.join('')}--- end ---\n`);
      throw err;
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 80_000);
});
