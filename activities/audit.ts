import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { appendAuditEvent, type AppendResult } from '../src/audit/log';
import type { AuditEventInput } from '../src/audit/types';

export interface RecordAuditEventInput {
  event: AuditEventInput;
  /**
   * The workflow's own counter for its audit events (0, 1, 2, … in workflow code, which is
   * deterministic, so a replay or a retry names the same event). The idempotency key is
   * `wf:<workflowId>:<sequence>`; the workflow id comes from the activity context.
   */
  sequence: number;
}

/**
 * Audit events written from workflows (workflows do no I/O). Idempotent: a retried activity, or a
 * workflow task replayed after a worker crash, returns the first append (`duplicate: true`).
 * Register with the worker's activities (activities/index.ts) as `createAuditActivities({ pool })`.
 */
export function createAuditActivities({ pool }: { pool: Pool }) {
  return {
    async recordAuditEvent(input: RecordAuditEventInput): Promise<AppendResult> {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      if (!workflowId) throw new TypeError('recordAuditEvent runs only as a workflow activity');
      if (!Number.isSafeInteger(input.sequence) || input.sequence < 0) throw new TypeError('sequence must be a non-negative integer');
      return appendAuditEvent(pool, input.event, { idempotencyKey: auditIdempotencyKey(workflowId, input.sequence) });
    },
  };
}

/** `wf:<workflowId>:<sequence>`; a workflow id too long for the key column is replaced by its SHA-256. */
export function auditIdempotencyKey(workflowId: string, sequence: number): string {
  const id = workflowId.length > 160 ? `sha256-${createHash('sha256').update(workflowId).digest('hex')}` : workflowId;
  return `wf:${id}:${sequence}`;
}
