import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { auditRetentionWorkflow } from '../../workflows/audit-retention';
import type { dataKeyRotationWorkflow } from '../../workflows/data-key-rotation';
import { DATA_KEY_ROTATION_SCHEDULE_ID, TOKEN_ROTATION_SCHEDULE_ID, type TokenPolicy } from '../../workflows/token-lifecycle-definitions';
import type { tokenRotationWorkflow } from '../../workflows/token-rotation';
import { DAY_MS } from '../shared/data-key-policy';

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

export interface DataKeyRotationScheduleOptions {
  taskQueue: string;
  /** Default `data-key-rotation` (tests use their own). */
  scheduleId?: string;
  /** DATA_KEY_ROTATION_CRON (default daily at 03:41 UTC). */
  cron: string;
  /** DATA_KEY_MAX_AGE_DAYS. */
  maxAgeDays: number;
  /** DATA_KEY_MAX_ENCRYPTIONS. */
  maxEncryptions: number;
}

/**
 * The DataKeyRotation schedule: gives every tenant whose data key reached the age or usage limit a
 * new one (through the KeyRotation workflow). The policy travels in the action's arguments, so a
 * worker started with new limits updates the schedule.
 */
export function ensureDataKeyRotationSchedule(client: Client, opts: DataKeyRotationScheduleOptions): Promise<{ scheduleId: string; created: boolean }> {
  const scheduleId = opts.scheduleId ?? DATA_KEY_ROTATION_SCHEDULE_ID;
  return ensureSchedule(client, {
    scheduleId,
    cron: opts.cron,
    action: {
      type: 'startWorkflow',
      workflowType: 'dataKeyRotationWorkflow',
      args: [{ maxAgeMs: opts.maxAgeDays * DAY_MS, maxEncryptions: opts.maxEncryptions }] as Parameters<typeof dataKeyRotationWorkflow>,
      taskQueue: opts.taskQueue,
      workflowId: `${scheduleId}-run`,
      workflowExecutionTimeout: '23 hours',
    },
    purpose: `tenant data key rotation: every ${opts.maxAgeDays} days or ${opts.maxEncryptions} encryptions (docs/security.md)`,
  });
}

export interface TokenRotationScheduleOptions {
  taskQueue: string;
  /** Default `token-rotation` (tests use their own). */
  scheduleId?: string;
  /** TOKEN_ROTATION_CRON (default daily at 02:23 UTC). */
  cron: string;
  /** From TOKEN_REFRESH_WINDOW_DAYS / TOKEN_EXPIRY_WARNING_DAYS (`tokenPolicy`); `sweepIntervalMs` = the cron's interval (24 h for a daily one). */
  policy: TokenPolicy;
  /** TOKEN_ROTATION_CONCURRENCY: token checks in flight at once. */
  concurrency: number;
  /** TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE: the sweep's Graph budget across every worker. */
  graphCallsPerMinute: number;
}

/**
 * The TokenRotation schedule: refreshes Instagram-Login tokens in their window and validates Page
 * tokens and their webhook subscriptions (workflows/token-rotation.ts). Policy, concurrency and
 * budget travel in the action's arguments, so a worker started with new values updates them; an
 * operator's pause in the Temporal UI survives.
 */
export function ensureTokenRotationSchedule(client: Client, opts: TokenRotationScheduleOptions): Promise<{ scheduleId: string; created: boolean }> {
  const scheduleId = opts.scheduleId ?? TOKEN_ROTATION_SCHEDULE_ID;
  return ensureSchedule(client, {
    scheduleId,
    cron: opts.cron,
    action: {
      type: 'startWorkflow',
      workflowType: 'tokenRotationWorkflow',
      args: [{ policy: opts.policy, concurrency: opts.concurrency, graphCallsPerMinute: opts.graphCallsPerMinute }] as Parameters<typeof tokenRotationWorkflow>,
      taskQueue: opts.taskQueue,
      workflowId: `${scheduleId}-run`,
      workflowExecutionTimeout: '23 hours',
    },
    purpose: `channel token refresh and validation, ${opts.concurrency} at a time within ${opts.graphCallsPerMinute} Graph calls/min (docs/token-lifecycle.md)`,
  });
}
