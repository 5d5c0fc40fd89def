import { ActivityFailure, ApplicationFailure, continueAsNew, executeChild, log, proxyActivities, upsertMemo, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { tokenAlert, tokenCheckDue } from '../src/shared/token-policy';
import { CHANNEL_ID, PLATFORM, TENANT_ID } from '../src/temporal/search-attributes';
import {
  tokenCheckWorkflowId,
  type TokenCandidate,
  type TokenCheckInput,
  type TokenCheckOutcome,
  type TokenCheckResult,
  type TokenRotationInput,
  type TokenRotationTotals,
} from './token-lifecycle-definitions';

/**
 * The token sweep (Schedule `token-rotation`, daily; docs/token-lifecycle.md "Scheduled
 * rotation"). Pages through every active channel in id order, starts no child for a channel with
 * nothing to do (the same `tokenCheckDue` the activity decides with), and runs one
 * `tokenCheckWorkflow` child per channel that needs a look, at most `concurrency` at once. The
 * Graph budget is enforced below, per call, by the activities (`graph_call_budgets`).
 *
 * One sweep = one `asOf` (workflow time of its first run) and one `sweepId` (its first run's id),
 * both carried through continue-as-new: every decision of the sweep uses the same clock, and the
 * children's ids and audit keys are unique per sweep. The sweep continues as new once the server
 * suggests it or after `PAGES_PER_RUN` pages, once the children of the pages it listed finish. A
 * failing child never fails the sweep: it counts as a transient failure, tried again next run.
 *
 * Progress is in the memo (`sweep`): sweep id, asOf, channels seen, outcomes so far.
 */

const DEFAULT_PAGE_SIZE = 500;
/** Pages per run: bounds one run's history (each child adds a few events); the next run carries on. */
const PAGES_PER_RUN = 2;

const { listTokenCandidates } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

function emptyTotals(): TokenRotationTotals {
  return { channels: 0, byOutcome: {}, critical: 0 };
}

function count(totals: TokenRotationTotals, outcome: TokenCheckOutcome, n = 1): void {
  if (n > 0) totals.byOutcome[outcome] = (totals.byOutcome[outcome] ?? 0) + n;
}

export async function tokenRotationWorkflow(input: TokenRotationInput): Promise<TokenRotationTotals> {
  const info = workflowInfo();
  const asOf = input.asOf ?? info.startTime.getTime();
  const sweepId = input.sweepId ?? info.firstExecutionRunId;
  const pageSize = Math.min(1000, Math.max(1, Math.floor(input.pageSize ?? DEFAULT_PAGE_SIZE)));
  const concurrency = Math.min(500, Math.max(1, Math.floor(input.concurrency)));
  const totals = input.totals ?? emptyTotals();

  const queue: TokenCandidate[] = [];
  let after = input.after;
  let exhausted = false;
  let stopping = false;
  let pages = 0;
  let fetching: Promise<void> | undefined;

  const memo = () => upsertMemo({ sweep: { sweepId, asOf: new Date(asOf).toISOString(), after: after ?? null, ...totals } });
  memo();

  /** The next page into the queue; one fetch at a time, shared by every slot that needs it. */
  const refill = (): Promise<void> =>
    (fetching ??= (async () => {
      try {
        const page = await listTokenCandidates({ after: after ?? null, limit: pageSize });
        const due = page.filter((c) => tokenCheckDue(c, input.policy, asOf));
        totals.channels += page.length;
        count(totals, 'not_due', page.length - due.length);
        queue.push(...due);
        if (page.length < pageSize) exhausted = true;
        else after = page[page.length - 1]!.channelId;
        if (++pages >= PAGES_PER_RUN) stopping = true;
        memo();
      } finally {
        fetching = undefined;
      }
    })());

  const check = async (candidate: TokenCandidate): Promise<TokenCheckResult> => {
    const args: TokenCheckInput = {
      candidate,
      policy: input.policy,
      asOf,
      sweepId,
      ...(input.graphCallsPerMinute !== undefined && { graphCallsPerMinute: input.graphCallsPerMinute }),
    };
    try {
      return await executeChild(tokenCheckWorkflow, {
        workflowId: tokenCheckWorkflowId(candidate.channelId, sweepId),
        args: [args],
        typedSearchAttributes: [
          { key: TENANT_ID, value: candidate.tenantId },
          { key: CHANNEL_ID, value: candidate.channelId },
          { key: PLATFORM, value: candidate.platform },
        ],
      });
    } catch (err) {
      // The child records its own failures; this is a child that could not run or finish at all.
      log.warn('token check child failed', { channelId: candidate.channelId, error: err instanceof Error ? err.name : 'unknown' });
      return { channelId: candidate.channelId, outcome: 'transient_failure', tokenExpiresAt: candidate.tokenExpiresAt, alert: tokenAlert(candidate.tokenExpiresAt, input.policy, asOf), graphCalls: 0 };
    }
  };

  const slot = async (): Promise<void> => {
    for (;;) {
      const candidate = queue.shift();
      if (!candidate) {
        if (exhausted || stopping) return;
        await refill();
        continue;
      }
      if (workflowInfo().continueAsNewSuggested) stopping = true;
      // Fetch ahead so the slots do not wait for the next page.
      if (!exhausted && !stopping && queue.length < concurrency) void refill().catch(() => undefined);
      const r = await check(candidate);
      count(totals, r.outcome);
      if (r.alert === 'critical') totals.critical++;
    }
  };

  await Promise.all(Array.from({ length: concurrency }, () => slot()));
  // A page fetched ahead may land after the slots stopped: its channels are handled before moving on.
  while (fetching || queue.length > 0) {
    if (fetching) await fetching;
    await Promise.all(Array.from({ length: concurrency }, () => slot()));
  }
  memo();
  if (!exhausted) return continueAsNew<typeof tokenRotationWorkflow>({ ...input, asOf, sweepId, after, totals });
  return totals;
}

/**
 * One channel's check: `checkChannelToken` with a bounded retry policy (4 attempts, 2 s → 30 s),
 * then, if it never came to a verdict, the failure recorded (`transient_failure`: counted on the
 * channel, tried again by the next sweep). Thin: the activity decides and does everything.
 */
export async function tokenCheckWorkflow(input: TokenCheckInput): Promise<TokenCheckResult> {
  const { checkChannelToken } = proxyActivities<Activities>({
    startToCloseTimeout: '10 minutes',
    // Budget waits heartbeat; a worker that died mid-check is noticed within a minute.
    heartbeatTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 4, maximumInterval: '30 seconds', maximumAttempts: 4 },
  });
  const { recordTokenCheckFailure } = proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
  });
  try {
    return await checkChannelToken(input);
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const cause = err.cause;
    const failureType = cause instanceof ApplicationFailure ? (cause.type ?? cause.name) : (cause?.name ?? 'unknown');
    return recordTokenCheckFailure({ ...input, failureType });
  }
}
