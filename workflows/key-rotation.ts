import { continueAsNew, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

export interface KeyRotationInput {
  /** Items per activity call: bounds each call's duration and the work redone after a crash. */
  batchSize: number;
  /** Also start new tenant data keys and re-encrypt every secret under them. */
  rotateDataKeys: boolean;
  /**
   * With `rotateDataKeys`: only these tenants get a new data key (the scheduled DataKeyRotation
   * passes the tenants its policy found due). Absent: every tenant. The rewrap under the newest
   * master key and the re-encryption of secrets on superseded keys always cover every tenant.
   */
  tenantIds?: string[];
  /** How soon a silent (crashed) worker's batch is handed to another worker. Default 30 s. */
  heartbeatTimeoutMs?: number;
  /** Set on the first run; carried through continue-as-new. */
  startedAt?: string;
  totals?: KeyRotationResult;
}

export interface KeyRotationResult {
  rewrapped: number;
  dataKeysRotated: number;
  reencrypted: number;
  destroyed: number;
}

/**
 * Rewraps every tenant data key under the newest master key version and, when asked, rotates the
 * data keys themselves and re-encrypts every secret, in batches. Resumable: each batch is
 * idempotent and the loop only ends when nothing remains.
 */
export async function keyRotationWorkflow(input: KeyRotationInput): Promise<KeyRotationResult> {
  const acts = proxyActivities<Activities>({
    startToCloseTimeout: '10 minutes',
    // A crashed worker is noticed within a heartbeat timeout, and the batch is retried elsewhere.
    heartbeatTimeout: input.heartbeatTimeoutMs ?? 30_000,
    retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
  });
  const startedAt = input.startedAt ?? new Date(workflowInfo().startTime).toISOString();
  const totals: KeyRotationResult = input.totals ?? { rewrapped: 0, dataKeysRotated: 0, reencrypted: 0, destroyed: 0 };
  const maybeContinue = async () => {
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof keyRotationWorkflow>({ ...input, startedAt, totals });
    }
  };

  for (;;) {
    const r = await acts.rewrapDataKeysBatch({ batchSize: input.batchSize });
    totals.rewrapped += r.done;
    if (r.remaining === 0) break;
    await maybeContinue();
  }
  if (input.rotateDataKeys) {
    for (;;) {
      const r = await acts.rotateDataKeysBatch({ startedAt, batchSize: input.batchSize, ...(input.tenantIds && { tenantIds: input.tenantIds }) });
      totals.dataKeysRotated += r.done;
      if (r.remaining === 0) break;
      await maybeContinue();
    }
  }
  for (;;) {
    const r = await acts.reencryptSecretsBatch({ batchSize: input.batchSize });
    totals.reencrypted += r.done;
    if (r.remaining === 0) break;
    await maybeContinue();
  }
  totals.destroyed += (await acts.destroyUnusedDataKeys()).destroyed;
  return totals;
}
