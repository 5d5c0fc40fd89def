import { randomUUID } from 'node:crypto';
import { PAGE_SUBSCRIBED_FIELDS } from '../../activities/onboarding';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { tokenPolicy } from '../../src/shared/token-policy';
import { ensureTokenRotationSchedule } from '../../src/temporal/schedules';
import type { TokenRotationTotals } from '../../workflows/token-lifecycle-definitions';
import { eventually, startTestStack, type TestStack } from '../support/stack';

/** The TokenRotation schedule on the real dev server, with the real worker, database and sandbox. */

const policy = tokenPolicy({ refreshWindowDays: 10, expiryWarningDays: 7 });

describe('TokenRotation schedule', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(() => stack.close());

  it('is created once and updated by later ensures (a worker restart): one schedule, overlap SKIP, the configured cron, a pause kept; a trigger runs the sweep', async () => {
    const scheduleId = `token-rotation-test-${randomUUID()}`;
    const opts = { taskQueue: stack.config.TEMPORAL_TASK_QUEUE, scheduleId, cron: '7 5 * * *', policy, concurrency: 4, graphCallsPerMinute: 600 };
    const handle = stack.client.schedule.getHandle(scheduleId);
    try {
      expect(await ensureTokenRotationSchedule(stack.client, opts)).toEqual({ scheduleId, created: true });
      expect(await ensureTokenRotationSchedule(stack.client, opts)).toEqual({ scheduleId, created: false });
      await eventually(async () => {
        let n = 0;
        for await (const s of stack.client.schedule.list()) if (s.scheduleId === scheduleId) n += 1;
        return n === 1;
      });

      let described = await handle.describe();
      expect(described.action).toMatchObject({
        type: 'startWorkflow',
        workflowType: 'tokenRotationWorkflow',
        taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
        args: [{ policy, concurrency: 4, graphCallsPerMinute: 600 }],
      });
      expect(described.policies.overlap).toBe('SKIP');
      // The cron as the server stores it: a calendar at 05:07 every day.
      expect(described.spec.calendars).toHaveLength(1);
      expect(described.spec.calendars![0]).toMatchObject({ minute: [{ start: 7, end: 7, step: 1 }], hour: [{ start: 5, end: 5, step: 1 }] });
      expect(described.memo).toMatchObject({ purpose: expect.stringContaining('token') });

      // An operator pauses it in the UI; a worker restarts with a new cron and concurrency: both stick.
      await handle.pause('paused by an operator (test)');
      expect(await ensureTokenRotationSchedule(stack.client, { ...opts, cron: '41 1 * * *', concurrency: 9 })).toEqual({ scheduleId, created: false });
      described = await handle.describe();
      expect(described.state.paused).toBe(true);
      expect(described.state.note).toBe('paused by an operator (test)');
      expect(described.spec.calendars![0]).toMatchObject({ minute: [{ start: 41, end: 41, step: 1 }], hour: [{ start: 1, end: 1, step: 1 }] });
      expect(described.action).toMatchObject({ args: [{ concurrency: 9 }] });
      expect(described.policies.overlap).toBe('SKIP');
      await handle.unpause();

      // A channel for the sweep to look at.
      const { id: tenantId } = await createTenant(stack.db.pool, 'Scheduled shop');
      const [seeded] = stack.sandbox.seedTokens([{ kind: 'page', id: '700000000000001', subscribedFields: [...PAGE_SUBSCRIBED_FIELDS] }]);
      await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: '700000000000001', accessToken: seeded!.accessToken, graphApi: 'facebook', tokenExpiresAt: null });

      await handle.trigger();
      const workflowId = await eventually(async () => (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId);
      const totals = (await stack.client.workflow.getHandle(workflowId).result()) as TokenRotationTotals;
      expect(totals).toEqual({ channels: 1, byOutcome: { valid: 1 }, critical: 0 });
      expect(stack.sandbox.requests().map((r) => r.path.replace(/^\/v\d+\.\d+/, ''))).toEqual(['/debug_token', '/700000000000001/subscribed_apps']);
    } finally {
      await handle.delete().catch(() => undefined);
    }
  });
});
