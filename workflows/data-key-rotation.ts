import { continueAsNew, executeChild, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DataKeyDueReason, DueDataKey } from '../src/shared/data-key-policy';
import { keyRotationWorkflow, type KeyRotationResult } from './key-rotation';

export interface DataKeyRotationInput {
  /** A current data key at least this old is due (DATA_KEY_MAX_AGE_DAYS). */
  maxAgeMs: number;
  /** A current data key with this many encryptions is due (DATA_KEY_MAX_ENCRYPTIONS). */
  maxEncryptions: number;
  /** Due tenants handed to one KeyRotation child (default 500): bounds the child's input. */
  tenantsPerRun?: number;
  /** The child's items per activity call (default 100). */
  batchSize?: number;
  /** Set on the first run (workflow time, epoch ms) and carried through continue-as-new: one run, one clock. */
  asOf?: number;
  after?: string | null;
  progress?: DataKeyRotationResult;
}

export interface DataKeyRotationResult {
  asOf: string;
  /** Tenants found due and handed to a KeyRotation child. */
  tenants: number;
  byReason: Record<DataKeyDueReason, number>;
  /** The due keys, up to the first `REPORTED_KEYS_LIMIT` (the counts above are complete). */
  rotated: DueDataKey[];
  /** KeyRotation children run. */
  runs: number;
  totals: KeyRotationResult;
}

/** Keeps the result (and the history) small when a first run finds every tenant due. */
const REPORTED_KEYS_LIMIT = 1000;

/**
 * The scheduled data-key rotation (Schedule `data-key-rotation`, src/temporal/schedules.ts): finds
 * the tenants whose current data key reached the policy's age or usage limit at the run's time and
 * has the KeyRotation workflow rotate exactly those, as a child per page of tenants, so the
 * rewrap workflow stays the one place that changes keys (and also rewraps anything still under an
 * older master key, re-encrypts the secrets and destroys the unused keys).
 */
export async function dataKeyRotationWorkflow(input: DataKeyRotationInput): Promise<DataKeyRotationResult> {
  const acts = proxyActivities<Activities>({
    startToCloseTimeout: '5 minutes',
    retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
  });
  const asOf = input.asOf ?? workflowInfo().startTime.getTime();
  const tenantsPerRun = input.tenantsPerRun ?? 500;
  const result: DataKeyRotationResult = input.progress ?? {
    asOf: new Date(asOf).toISOString(),
    tenants: 0,
    byReason: { age: 0, encryptions: 0 },
    rotated: [],
    runs: 0,
    totals: { rewrapped: 0, dataKeysRotated: 0, reencrypted: 0, destroyed: 0 },
  };
  let after = input.after ?? null;

  for (;;) {
    const page = await acts.listDueDataKeyTenants({ maxAgeMs: input.maxAgeMs, maxEncryptions: input.maxEncryptions, asOf, after, limit: tenantsPerRun });
    if (page.due.length > 0) {
      result.runs += 1;
      const child = await executeChild(keyRotationWorkflow, {
        workflowId: `${workflowInfo().workflowId}/key-rotation-${result.runs}`,
        args: [{ batchSize: input.batchSize ?? 100, rotateDataKeys: true, tenantIds: page.due.map((d) => d.tenantId) }],
      });
      result.tenants += page.due.length;
      for (const d of page.due) for (const r of d.reasons) result.byReason[r] += 1;
      result.rotated.push(...page.due.slice(0, Math.max(0, REPORTED_KEYS_LIMIT - result.rotated.length)));
      for (const k of Object.keys(result.totals) as Array<keyof KeyRotationResult>) result.totals[k] += child[k];
    }
    if (page.next === null) break;
    after = page.next;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof dataKeyRotationWorkflow>({ ...input, asOf, after, progress: result });
    }
  }
  return result;
}
