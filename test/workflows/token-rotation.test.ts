import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { createActivities } from '../../activities';
import { PAGE_SUBSCRIBED_FIELDS } from '../../activities/onboarding';
import type { Config } from '../../src/config';
import type { SecretVault } from '../../src/crypto/vault';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { createLogger } from '../../src/logger';
import { GraphClient } from '../../src/meta/graph-client';
import { createOAuthClient } from '../../src/meta/oauth-client';
import type { GraphSandbox } from '../../src/sandbox/graph-sandbox';
import { DAY_MS, HOUR_MS, tokenPolicy } from '../../src/shared/token-policy';
import { notificationWorkflowId, type TokenRotationInput, type TokenRotationTotals } from '../../workflows/token-lifecycle-definitions';
import type { tokenRotationWorkflow } from '../../workflows/token-rotation';
import { loadWorkflowBundle, startSandboxedDatabase, type SandboxedDatabase } from '../support/saga-harness';
import type { TestDatabase } from '../support/stack';
import { startTimeSkippingEnv } from '../support/time-skipping';

/**
 * The TokenRotation sweep on Temporal's time-skipping test server, with the REAL activities
 * against PostgreSQL and the Graph sandbox: days pass in milliseconds, and the sandbox's OAuth
 * clock is moved along with the server's (`advanceOAuthClock`) so Meta's 24-hour and expiry rules
 * see the same time as the sweep.
 */

const LONG_S = 5_183_944;
const policy = tokenPolicy({ refreshWindowDays: 10, expiryWarningDays: 7 });
const EventType = temporal.api.enums.v1.EventType;

let db: TestDatabase;
let sandbox: GraphSandbox;
let config: Config;
let vault: SecretVault;
let fixture: SandboxedDatabase;
let bundleCode: string;
let env: TestWorkflowEnvironment;

beforeAll(async () => {
  bundleCode = loadWorkflowBundle();
  fixture = await startSandboxedDatabase();
  ({ db, sandbox, config, vault } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

// Each test sweeps only its own channels; the OAuth clock restarts with the sandbox's state.
afterEach(async () => {
  await db.ownerPool.query('DELETE FROM channels');
  sandbox.reset();
});

interface Ctx {
  taskQueue: string;
  /** The test server's clock. */
  now(): Promise<number>;
  /** Lets `ms` pass on the server and in the sandbox's OAuth clock. */
  pass(ms: number): Promise<void>;
  /**
   * Runs one sweep to its end. `skipTime`: let the server skip time while waiting (retry backoffs
   * pass at once). Without it time stands still except for `pass`: the time-skipping server
   * otherwise jumps to its next deadline when it sees nothing to wait for, which can be years away.
   */
  sweep(extra?: Partial<TokenRotationInput>, opts?: { skipTime?: boolean }): Promise<{ totals: TokenRotationTotals; workflowId: string }>;
}

/** A time-skipping server (its clock is global: one per test), a worker with the real activities, the sandbox's clock in step. */
async function scenario(fn: (c: Ctx) => Promise<void>): Promise<void> {
  env = await startTimeSkippingEnv();
  try {
    const taskQueue = `token-rotation-test-${randomUUID()}`;
    const logger = createLogger('test', 'silent');
    const activities = createActivities({
      pool: db.pool,
      vault,
      logger,
      graph: new GraphClient({ graphBase: sandbox.url, instagramBase: sandbox.url, version: config.GRAPH_API_VERSION, timeoutMs: config.GRAPH_API_TIMEOUT_MS }),
      oauth: createOAuthClient(config),
    });
    const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: { code: bundleCode }, activities });
    // A plain client: waiting on it does not unlock time skipping.
    const lockedClient = new Client({ connection: env.connection, namespace: env.namespace ?? 'default' });
    const syncSandbox = async () => {
      const lag = (await env.currentTimeMs()) - (Date.now() + sandbox.oauthState().clockOffsetMs);
      if (lag > 0) sandbox.advanceOAuthClock(lag);
    };
    await syncSandbox();
    let n = 0;
    await worker.runUntil(
      fn({
        taskQueue,
        now: () => env.currentTimeMs(),
        async pass(ms) {
          await env.sleep(ms);
          await syncSandbox();
        },
        async sweep(extra = {}, opts = {}) {
          const id = `token-rotation-test-${++n}`;
          const client = opts.skipTime ? env.client : lockedClient;
          const totals = await client.workflow.execute<typeof tokenRotationWorkflow>('tokenRotationWorkflow', {
            taskQueue,
            workflowId: id,
            args: [{ policy, concurrency: 4, ...extra }],
          });
          return { totals, workflowId: id };
        },
      }),
    );
  } finally {
    await env.teardown();
  }
}

let nextId = 300_000;

/** An Instagram-Login channel whose token the sandbox issued at `issuedAt` (server time) and which expires at `expiresAt`. */
async function instagramChannel(issuedAt: number, expiresAt: number): Promise<{ tenantId: string; channelId: string; accountId: string }> {
  const { id: tenantId } = await createTenant(db.pool, 'IG shop');
  const accountId = `1784150000${nextId++}`;
  const [seeded] = sandbox.seedTokens([{ kind: 'instagram', id: accountId, issuedAt, expiresAt }]);
  const { id: channelId } = await connectChannel(db.pool, vault, { tenantId, platform: 'instagram', accountId, accessToken: seeded!.accessToken, graphApi: 'instagram', tokenExpiresAt: new Date(expiresAt) });
  await db.ownerPool.query('UPDATE channels SET token_issued_at = $2 WHERE id = $1', [channelId, new Date(issuedAt)]);
  return { tenantId, channelId, accountId };
}

async function pageChannel(opts: { subscribed?: boolean } = {}): Promise<{ tenantId: string; channelId: string; accountId: string; token: string }> {
  const { id: tenantId } = await createTenant(db.pool, 'Page shop');
  const accountId = `60000${nextId++}`;
  const [seeded] = sandbox.seedTokens([{ kind: 'page', id: accountId, ...(opts.subscribed !== false && { subscribedFields: [...PAGE_SUBSCRIBED_FIELDS] }) }]);
  const { id: channelId } = await connectChannel(db.pool, vault, { tenantId, platform: 'messenger', accountId, accessToken: seeded!.accessToken, graphApi: 'facebook', tokenExpiresAt: null });
  return { tenantId, channelId, accountId, token: seeded!.accessToken };
}

const row = async (channelId: string) => (await db.ownerPool.query('SELECT * FROM channels WHERE id = $1', [channelId])).rows[0];
const refreshCalls = () => sandbox.requests().filter((r) => r.path === '/refresh_access_token').length;

describe('Instagram-Login tokens', () => {
  it('a token created on day 0 (60-day expiry) is left alone by the daily sweeps of days 0…49 and refreshed on day 50', async () => {
    await scenario(async (c) => {
      const t0 = await c.now();
      const ch = await instagramChannel(t0, t0 + LONG_S * 1000);
      const original = (await row(ch.channelId)).access_token_ciphertext as Buffer;
      for (let day = 0; day < 50; day++) {
        const { totals } = await c.sweep();
        expect({ day, totals }).toEqual({ day, totals: { channels: 1, byOutcome: { not_due: 1 }, critical: 0 } });
        await c.pass(DAY_MS);
      }
      expect(refreshCalls()).toBe(0);
      expect(((await row(ch.channelId)).access_token_ciphertext as Buffer).equals(original)).toBe(true);

      const { totals, workflowId } = await c.sweep();
      expect(totals).toEqual({ channels: 1, byOutcome: { refreshed: 1 }, critical: 0 });
      expect(refreshCalls()).toBe(1);
      const after = await row(ch.channelId);
      expect((after.access_token_ciphertext as Buffer).equals(original)).toBe(false);
      const asOf = (await env.client.workflow.getHandle(workflowId).describe()).startTime.getTime();
      expect(after.token_issued_at.getTime()).toBe(asOf);
      expect(after.token_expires_at.getTime()).toBe(asOf + LONG_S * 1000);
      // And the next day's sweep leaves the fresh token alone.
      await c.pass(DAY_MS);
      expect((await c.sweep()).totals.byOutcome).toEqual({ not_due: 1 });
    });
  });

  it('a token created today that expires inside the window is not refreshed before it is 24 h old, and is at 24 h', async () => {
    await scenario(async (c) => {
      const t0 = await c.now();
      const ch = await instagramChannel(t0, t0 + 9 * DAY_MS);
      expect((await c.sweep()).totals.byOutcome).toEqual({ not_due: 1 });
      await c.pass(23 * HOUR_MS);
      expect((await c.sweep()).totals.byOutcome).toEqual({ not_due: 1 });
      expect(refreshCalls()).toBe(0);
      await c.pass(HOUR_MS);
      expect((await c.sweep()).totals.byOutcome).toEqual({ refreshed: 1 });
      expect(refreshCalls()).toBe(1);
      expect(sandbox.requests().every((r) => r.status === 200)).toBe(true); // Meta's own 24-hour rule agreed
      expect((await row(ch.channelId)).token_expires_at.getTime()).toBeGreaterThan(t0 + 50 * DAY_MS);
    });
  });

  it('a refresh failing with 190 makes the channel reauth_required, with exactly one episode and one notification workflow', async () => {
    await scenario(async (c) => {
      const t0 = await c.now();
      const ch = await instagramChannel(t0 - 55 * DAY_MS, t0 + 5 * DAY_MS);
      sandbox.invalidateTokens(ch.accountId);
      const { totals } = await c.sweep();
      expect(totals).toEqual({ channels: 1, byOutcome: { reauth_required: 1 }, critical: 1 });
      expect(await row(ch.channelId)).toMatchObject({ status: 'reauth_required', status_reason: 'token_refresh_failed (code 190/460)' });
      const episodes = (await db.ownerPool.query('SELECT id, kind FROM notification_episodes WHERE channel_id = $1', [ch.channelId])).rows;
      expect(episodes.map((e) => e.kind)).toEqual(['reauth_required']);
      const notification = await env.client.workflow.getHandle(notificationWorkflowId(episodes[0].id)).describe();
      expect(notification.type).toBe('notificationWorkflow');
      expect((await db.ownerPool.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'channel.reauth_required' AND tenant_id = $1", [ch.tenantId])).rows[0].n).toBe(1);

      // The next day's sweep no longer lists it (not active): nothing more is called, opened or started.
      await c.pass(DAY_MS);
      const before = sandbox.requests().length;
      expect((await c.sweep()).totals).toEqual({ channels: 0, byOutcome: {}, critical: 0 });
      expect(sandbox.requests()).toHaveLength(before);
      expect((await db.ownerPool.query('SELECT count(*)::int AS n FROM notification_episodes WHERE channel_id = $1', [ch.channelId])).rows[0].n).toBe(1);
    });
  });
});

describe('Page tokens', () => {
  it('a dropped subscription is re-created; the next sweep finds it in place', async () => {
    await scenario(async (c) => {
      const kept = await pageChannel();
      const dropped = await pageChannel({ subscribed: false });
      expect((await c.sweep()).totals).toEqual({ channels: 2, byOutcome: { valid: 1, resubscribed: 1 }, critical: 0 });
      expect(sandbox.oauthState().subscriptions[dropped.accountId]?.[0]?.subscribedFields.sort()).toEqual([...PAGE_SUBSCRIBED_FIELDS].sort());
      expect((await row(dropped.channelId)).webhook_subscribed).toBe(true);
      expect((await row(kept.channelId)).webhook_subscribed).toBe(true);
      await c.pass(DAY_MS);
      expect((await c.sweep()).totals.byOutcome).toEqual({ valid: 2 });
    });
  });

  it('runs at most `concurrency` checks at once (from the sweep’s history), across continue-as-new pages, and a failing check does not fail the sweep', async () => {
    await scenario(async (c) => {
      const channels = [];
      for (let i = 0; i < 14; i++) channels.push(await pageChannel());
      // One Page's checks keep failing (500 on all four attempts): a transient failure, counted, the sweep goes on.
      const failing = channels[5]!;
      sandbox.failNext({ count: 4, preset: 'server_error', match: `/${failing.accountId}/subscribed_apps` });
      const { totals, workflowId } = await c.sweep({ concurrency: 3, pageSize: 5 }, { skipTime: true });
      expect(totals).toEqual({ channels: 14, byOutcome: { valid: 13, transient_failure: 1 }, critical: 0 });
      expect((await row(failing.channelId)).token_check_failures).toBe(1);

      // Every run of the sweep (one per page of 5): children in flight never above 3, and 3 reached.
      let handle = env.client.workflow.getHandle(workflowId);
      let runs = 0;
      let maxInFlight = 0;
      let children = 0;
      for (let runId: string | undefined = (await handle.describe()).runId; ; ) {
        const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
        let inFlight = 0;
        let next: string | undefined;
        for (const e of history.events ?? []) {
          if (e.eventType === EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) {
            inFlight++;
            children++;
          } else if (
            e.eventType === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED ||
            e.eventType === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED ||
            e.eventType === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT ||
            e.eventType === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED ||
            e.eventType === EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED
          ) {
            inFlight--;
          }
          maxInFlight = Math.max(maxInFlight, inFlight);
          if (e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) {
            next = e.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
          }
        }
        runs++;
        if (!next) break;
        runId = next;
        handle = env.client.workflow.getHandle(workflowId, runId);
      }
      expect(children).toBe(14);
      expect(runs).toBeGreaterThanOrEqual(2);
      expect(maxInFlight).toBe(3);
    });
  });
});
