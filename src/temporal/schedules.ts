import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { auditRetentionWorkflow } from '../../workflows/audit-retention';

export const AUDIT_RETENTION_SCHEDULE_ID = 'audit-retention';

export interface AuditRetentionScheduleOptions {
  taskQueue: string;
  /** Default `audit-retention` (tests use their own). */
  scheduleId?: string;
  /** Default daily at 03:17 UTC. */
  cron?: string;
  batchSize?: number;
}

/**
 * Creates the daily AuditRetention schedule, or brings an existing one up to date (same id: never
 * a second schedule). Called at every worker start; safe to race with other workers.
 */
export async function ensureAuditRetentionSchedule(client: Client, opts: AuditRetentionScheduleOptions): Promise<{ scheduleId: string; created: boolean }> {
  const scheduleId = opts.scheduleId ?? AUDIT_RETENTION_SCHEDULE_ID;
  const options = {
    scheduleId,
    spec: { cronExpressions: [opts.cron ?? '17 3 * * *'] },
    action: {
      type: 'startWorkflow' as const,
      workflowType: 'auditRetentionWorkflow' as const,
      args: [{ batchSize: opts.batchSize ?? 50 }] as Parameters<typeof auditRetentionWorkflow>,
      taskQueue: opts.taskQueue,
      workflowId: `${scheduleId}-run`,
      workflowExecutionTimeout: '23 hours',
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
    memo: { purpose: 'audit retention purge + verification (docs/security.md)' },
  } satisfies ScheduleOptions;
  try {
    await client.schedule.create(options);
    return { scheduleId, created: true };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((prev) => ({
    ...prev,
    spec: options.spec,
    action: options.action,
    policies: { ...prev.policies, overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
  }));
  return { scheduleId, created: false };
}
