import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { auditRetentionWorkflow } from '../../workflows/audit-retention';

export const AUDIT_RETENTION_SCHEDULE_ID = 'audit-retention';

type StartWorkflowAction = Extract<ScheduleOptions['action'], { type: 'startWorkflow' }>;

export interface PlatformSchedule {
  scheduleId: string;
  cron: string;
  action: StartWorkflowAction;
  /** Shown in the Temporal UI's schedule view. */
  purpose: string;
}

/**
 * Creates a platform schedule, or brings an existing one up to date (same id: never a second
 * schedule). Overlap SKIP: a run still going when the next is due is left alone, never doubled.
 * Called at every worker start; safe to race with other workers. An operator's pause survives
 * (`state` is not touched by the update).
 */
export async function ensureSchedule(client: Client, s: PlatformSchedule): Promise<{ scheduleId: string; created: boolean }> {
  const options = {
    scheduleId: s.scheduleId,
    spec: { cronExpressions: [s.cron] },
    action: s.action,
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
    memo: { purpose: s.purpose },
  } satisfies ScheduleOptions;
  try {
    await client.schedule.create(options);
    return { scheduleId: s.scheduleId, created: true };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(s.scheduleId).update((prev) => ({
    ...prev,
    spec: options.spec,
    action: options.action,
    policies: { ...prev.policies, overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
  }));
  return { scheduleId: s.scheduleId, created: false };
}

export interface AuditRetentionScheduleOptions {
  taskQueue: string;
  /** Default `audit-retention` (tests use their own). */
  scheduleId?: string;
  /** Default daily at 03:17 UTC. */
  cron?: string;
  batchSize?: number;
}

/** The daily AuditRetention schedule (purge expired sealed epochs, then verify every chain). */
export function ensureAuditRetentionSchedule(client: Client, opts: AuditRetentionScheduleOptions): Promise<{ scheduleId: string; created: boolean }> {
  const scheduleId = opts.scheduleId ?? AUDIT_RETENTION_SCHEDULE_ID;
  return ensureSchedule(client, {
    scheduleId,
    cron: opts.cron ?? '17 3 * * *',
    action: {
      type: 'startWorkflow',
      workflowType: 'auditRetentionWorkflow',
      args: [{ batchSize: opts.batchSize ?? 50 }] as Parameters<typeof auditRetentionWorkflow>,
      taskQueue: opts.taskQueue,
      workflowId: `${scheduleId}-run`,
      workflowExecutionTimeout: '23 hours',
    },
    purpose: 'audit retention purge + verification (docs/security.md)',
  });
}
