import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

export interface AuditRetentionInput {
  /** Epochs per activity call (default 50). */
  batchSize?: number;
}

export interface AuditRetentionResult {
  epochs: number;
  events: number;
  refused: number;
  verification: { ok: boolean; chains: number; findings: number; firstFinding: string | null };
}

/**
 * Daily (Temporal Schedule `audit-retention`, src/temporal/schedules.ts): purges every expired,
 * sealed audit epoch in batches until none remain, then verifies every chain. A failed
 * verification is recorded by the activity (an `audit.verification_failed` event; /readyz
 * degraded); the workflow itself completes, so the next day's run verifies again.
 */
export async function auditRetentionWorkflow(input: AuditRetentionInput = {}): Promise<AuditRetentionResult> {
  const acts = proxyActivities<Activities>({
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '5 seconds', maximumInterval: '5 minutes', maximumAttempts: 10 },
  });
  const batchSize = input.batchSize ?? 50;
  let epochs = 0;
  let events = 0;
  let refused = 0;
  for (;;) {
    const r = await acts.purgeExpiredAuditEpochs({ batchSize });
    epochs += r.epochs;
    events += r.events;
    refused += r.refused.length;
    if (!r.more) break;
  }
  const v = await acts.verifyAuditChains();
  return { epochs, events, refused, verification: { ok: v.ok, chains: v.chains, findings: v.findings, firstFinding: v.firstFinding } };
}
