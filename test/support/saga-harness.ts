import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, Connection, type WorkflowHandle, type WorkflowStartOptions } from '@temporalio/client';
import type { Workflow } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { startGraphSandbox, type GraphSandbox } from '../../src/sandbox/graph-sandbox';
import { oauthAppsFromConfig } from '../../src/sandbox/oauth-store';
import { createTestDatabase, installQuietRuntime, onboardingTestConfig, required, TEST_APP_SECRET, TEST_INSTAGRAM_APP_SECRET, testConfig, type TestDatabase } from './stack';
import { startTimeSkippingEnv } from './time-skipping';

/**
 * What the saga tests (onboarding, reconnect, token rotation) share: the run's workflow bundle,
 * a connection to the run's dev server, one time-skipping server per saga (its clock is global,
 * so tests must not share one), and a PostgreSQL + Graph sandbox pair for the real activities.
 * Kept here so the sagas are exercised the same way and a fix to the harness reaches all of them.
 */

export interface SagaClock {
  /** The server's clock (the time-skipping server's, or the wall clock). */
  now(): Promise<number>;
  sleep(ms: number): Promise<void>;
}

/** The dev server runs at wall-clock speed. */
export const wallClock: SagaClock = { now: async () => Date.now(), sleep: (ms) => new Promise<void>((r) => setTimeout(r, ms)) };

export const skippingClock = (env: TestWorkflowEnvironment): SagaClock => ({ now: () => env.currentTimeMs(), sleep: (ms) => env.sleep(ms) });

export interface SagaOptions<W extends Workflow> {
  /**
   * `dev`: the run's dev server instead of a time-skipping test server. The test server writes
   * workflow-task events even for an Update its validator rejects; a real server (speculative
   * workflow tasks) writes none, which is what "no history event" checks are about.
   */
  server?: 'time-skipping' | 'dev';
  taskQueuePrefix: string;
  activities: object;
  workflowType: string;
  workflowId: string;
  args: Parameters<W>;
}

export interface SagaServers {
  readonly bundleCode: string;
  readonly devClient: Client;
  readonly devNative: NativeConnection;
  /**
   * A worker with `activities` on a fresh task queue, the saga started, `fn` run, the saga
   * terminated if still open (a leftover run would keep timers on the shared dev server), and the
   * time-skipping server torn down.
   */
  runSaga<W extends Workflow>(opts: SagaOptions<W>, fn: (handle: WorkflowHandle<W>, clock: SagaClock) => Promise<void>): Promise<void>;
}

/** The run's workflow bundle (built once by the global setup), with the SDK's logs quieted first: what any test worker needs. */
export function loadWorkflowBundle(): string {
  installQuietRuntime();
  return readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8');
}

/** Call at the top of a test file: registers the beforeAll/afterAll that connect to the dev server and read the bundle. */
export function sagaServers(): SagaServers {
  let bundleCode: string | undefined;
  let devConnection: Connection | undefined;
  let devClient: Client | undefined;
  let devNative: NativeConnection | undefined;

  beforeAll(async () => {
    bundleCode = loadWorkflowBundle();
    const address = required('TEST_TEMPORAL_ADDRESS');
    devConnection = await Connection.connect({ address });
    devClient = new Client({ connection: devConnection });
    devNative = await NativeConnection.connect({ address });
  });

  afterAll(async () => {
    await devNative?.close();
    await devConnection?.close();
  });

  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is only there inside a test (sagaServers' beforeAll has not run)`);
    return value;
  };

  return {
    get bundleCode() {
      return ready(bundleCode, 'the workflow bundle');
    },
    get devClient() {
      return ready(devClient, 'the dev server client');
    },
    get devNative() {
      return ready(devNative, 'the dev server connection');
    },
    async runSaga<W extends Workflow>(opts: SagaOptions<W>, fn: (handle: WorkflowHandle<W>, clock: SagaClock) => Promise<void>): Promise<void> {
      const dev = opts.server === 'dev';
      const env = dev ? undefined : await startTimeSkippingEnv();
      try {
        const taskQueue = `${opts.taskQueuePrefix}-${randomUUID()}`;
        const client = env ? env.client : ready(devClient, 'the dev server client');
        const connection = env ? env.nativeConnection : ready(devNative, 'the dev server connection');
        const worker = await Worker.create({ connection, taskQueue, workflowBundle: { code: ready(bundleCode, 'the workflow bundle') }, activities: opts.activities });
        await worker.runUntil(async () => {
          // The SDK spells args as a conditional type a generic W cannot resolve; Parameters<W> is what it accepts.
          const handle = await client.workflow.start<W>(opts.workflowType, { taskQueue, workflowId: opts.workflowId, args: opts.args } as unknown as WorkflowStartOptions<W>);
          try {
            await fn(handle, env ? skippingClock(env) : wallClock);
          } finally {
            await handle.terminate('test finished').catch(() => undefined);
          }
        });
      } finally {
        await env?.teardown();
      }
    },
  };
}

export interface SandboxedDatabase {
  db: TestDatabase;
  sandbox: GraphSandbox;
  /** The test configuration pointed at the sandbox for Graph calls, token exchanges and dialogs. */
  config: Config;
  vault: SecretVault;
  close(): Promise<void>;
}

/** A fresh database and a Graph sandbox that accepts the test apps' secrets: what the real OAuth and token activities run against. */
export async function startSandboxedDatabase(): Promise<SandboxedDatabase> {
  const db = await createTestDatabase();
  try {
    const sandbox = await startGraphSandbox({ port: 0, oauthApps: oauthAppsFromConfig({ META_APP_SECRET: TEST_APP_SECRET, INSTAGRAM_APP_SECRET: TEST_INSTAGRAM_APP_SECRET }) });
    const config = testConfig({ DATABASE_URL: db.url, GRAPH_API_BASE: sandbox.url, INSTAGRAM_API_BASE: sandbox.url, ...onboardingTestConfig(sandbox.url, 'http://127.0.0.1:3000') });
    const vault = new SecretVault(db.pool, StaticKeyProvider.fromSpec(config.MASTER_KEYS));
    return {
      db,
      sandbox,
      config,
      vault,
      async close() {
        await sandbox.close();
        await db.drop();
      },
    };
  } catch (err) {
    await db.drop();
    throw err;
  }
}
