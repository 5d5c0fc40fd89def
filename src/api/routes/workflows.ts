import type { WorkflowExecutionInfo } from '@temporalio/client';
import { z } from 'zod';
import { can } from '../../auth/permissions';
import { maskId } from '../../pii';
import { withTemporalDeadline } from '../../temporal/client';
import { TENANT_ID } from '../../temporal/search-attributes';
import { ApiError, defineRoute, isoDate, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

/**
 * A tenant's failing and stuck workflows, from Temporal's visibility store, each with a deep link
 * into the Temporal UI (docs/dashboard.md):
 * - failing: closed as Failed, TimedOut or Terminated within the last 24 hours;
 * - stuck: running, and either an activity has been retried at least `STUCK_ATTEMPTS` times
 *   (Meta down, a send that keeps failing) or the workflow task itself keeps failing (a worker
 *   that cannot replay the history). Up to `MAX_DESCRIBED` running workflows are described.
 * Parked sends (budget, throttling) are not "stuck": they wait by design and `getState` shows them.
 */

export const STUCK_ATTEMPTS = 3;
const FAILING_WINDOW_MS = 24 * 60 * 60 * 1000;
const MAX_FAILING = 50;
const MAX_DESCRIBED = 50;
const DESCRIBE_CONCURRENCY = 8;
/** Dashboards poll every few seconds: one Temporal scan per tenant per this long, whoever asks. */
const CACHE_MS = 4000;

export interface TemporalUiLinks {
  run(workflowId: string, runId: string): string;
  tenantList(tenantId: string): string;
}

export function temporalUiLinks(uiUrl: string, namespace: string): TemporalUiLinks {
  const base = `${uiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}`;
  return {
    run: (workflowId, runId) => `${base}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`,
    tenantList: (tenantId) => `${base}/workflows?query=${encodeURIComponent(`${TENANT_ID.name}="${tenantId}"`)}`,
  };
}

type StuckReason = 'activity_retrying' | 'workflow_task_failing';

interface ScannedRun {
  workflowId: string;
  runId: string;
  type: string;
  status: string;
  startedAt: string;
  closedAt: string | null;
  stuck?: { reason: StuckReason; activityType: string | null; attempt: number; failureType: string | null };
}

interface Scan {
  checkedAt: string;
  running: number;
  failing: ScannedRun[];
  stuck: ScannedRun[];
  truncated: boolean;
}

const runSchema = z.object({
  workflowId: z.string().describe('Conversation workflow ids end with the customer id, masked for roles without conversations.read'),
  runId: z.string(),
  type: z.string(),
  status: z.string().describe('RUNNING, FAILED, TIMED_OUT or TERMINATED'),
  startedAt: isoDate,
  closedAt: isoDate.nullable(),
  url: z.url().nullable().describe("This run's history in the Temporal UI (null for roles without conversations.read)"),
});

const workflowsSchema = z
  .object({
    tenantId: z.string(),
    checkedAt: isoDate,
    temporalUiUrl: z.url().describe('The Temporal UI listing every workflow of the tenant (filtered by TenantId)'),
    running: z.number().int().describe('Running workflows of the tenant'),
    failing: z.array(runSchema).describe('Closed Failed, TimedOut or Terminated within the last 24 hours, newest first'),
    stuck: z
      .array(
        runSchema.extend({
          reason: z.enum(['activity_retrying', 'workflow_task_failing']),
          activityType: z.string().nullable(),
          attempt: z.number().int(),
          failureType: z.string().nullable().describe("The last failure's type (e.g. GraphAuthExpired), never its message"),
        }),
      )
      .describe(`Running with an activity or the workflow task at attempt ${STUCK_ATTEMPTS} or more`),
    truncated: z.boolean().describe(`More than ${MAX_FAILING} failing or ${MAX_DESCRIBED} running workflows: the lists are partial`),
  })
  .meta({ id: 'TenantWorkflows' });

async function take<T>(items: AsyncIterable<T>, n: number): Promise<{ items: T[]; more: boolean }> {
  const out: T[] = [];
  for await (const item of items) {
    if (out.length === n) return { items: out, more: true };
    out.push(item);
  }
  return { items: out, more: false };
}

/**
 * `Promise.all` that waits for every call before failing: none is left retrying in the background
 * (against a Temporal that is down) after the request has been answered.
 */
async function settledAll<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

function baseRun(info: Pick<WorkflowExecutionInfo, 'workflowId' | 'runId' | 'type' | 'status' | 'startTime' | 'closeTime'>): ScannedRun {
  return {
    workflowId: info.workflowId,
    runId: info.runId,
    type: info.type,
    status: info.status.name,
    startedAt: info.startTime.toISOString(),
    closedAt: info.closeTime ? info.closeTime.toISOString() : null,
  };
}

type Temporal = ApiDeps['temporal'];

async function scanTenant(temporal: Temporal, tenantId: string, now: Date): Promise<Scan> {
  const { client } = temporal;
  // The tenant id is a validated UUID: nothing in the query comes from caller text.
  const tenant = `${TENANT_ID.name} = '${tenantId}'`;
  const since = new Date(now.getTime() - FAILING_WINDOW_MS).toISOString();
  const failingQuery = `${tenant} AND (ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut' OR ExecutionStatus = 'Terminated') AND CloseTime > '${since}'`;
  const runningQuery = `${tenant} AND ExecutionStatus = 'Running'`;

  const [failing, running, runningCount] = await settledAll([
    take(client.workflow.list({ query: failingQuery, pageSize: MAX_FAILING }), MAX_FAILING),
    take(client.workflow.list({ query: runningQuery, pageSize: MAX_DESCRIBED }), MAX_DESCRIBED),
    client.workflow.count(runningQuery),
  ] as const);
  const described = await mapLimited(running.items, DESCRIBE_CONCURRENCY, async (info) => {
    try {
      return await client.workflow.getHandle(info.workflowId, info.runId).describe();
    } catch {
      // Closed between the listing and now: not stuck.
      return undefined;
    }
  });
  const stuck: ScannedRun[] = [];
  for (const d of described) {
    if (!d || d.status.name !== 'RUNNING') continue;
    const task = d.raw.pendingWorkflowTask;
    // The activity retried most often speaks for the run.
    const activity = [...(d.raw.pendingActivities ?? [])].sort((a, b) => (b.attempt ?? 0) - (a.attempt ?? 0))[0];
    if (task && (task.attempt ?? 0) >= STUCK_ATTEMPTS) {
      stuck.push({ ...baseRun(d), stuck: { reason: 'workflow_task_failing', activityType: null, attempt: task.attempt ?? 0, failureType: null } });
    } else if (activity && (activity.attempt ?? 0) >= STUCK_ATTEMPTS) {
      stuck.push({
        ...baseRun(d),
        stuck: {
          reason: 'activity_retrying',
          activityType: activity.activityType?.name ?? null,
          attempt: activity.attempt ?? 0,
          failureType: activity.lastFailure?.applicationFailureInfo?.type || null,
        },
      });
    }
  }
  const newest = (a: ScannedRun, b: ScannedRun) => (b.closedAt ?? b.startedAt).localeCompare(a.closedAt ?? a.startedAt);
  return {
    checkedAt: now.toISOString(),
    running: runningCount.count,
    failing: failing.items.map(baseRun).sort(newest),
    stuck: stuck.sort((a, b) => a.startedAt.localeCompare(b.startedAt)),
    truncated: failing.more || running.more,
  };
}

/** `conversation/<tenant>/<channel>/<customer>` → the customer part masked; other ids as they are. */
function maskedWorkflowId(workflowId: string): string {
  const parts = workflowId.split('/');
  if (parts[0] !== 'conversation' || parts.length !== 4) return workflowId;
  return [...parts.slice(0, 3), maskId(parts[3]!)].join('/');
}

export function workflowsRoutes({ config, temporal, logger }: Pick<ApiDeps, 'config' | 'temporal' | 'logger'>): ApiRoute[] {
  const links = temporalUiLinks(config.TEMPORAL_UI_URL, config.TEMPORAL_NAMESPACE);
  const cache = new Map<string, { at: number; scan: Promise<Scan> }>();

  const scanCached = (tenantId: string): Promise<Scan> => {
    const now = Date.now();
    const hit = cache.get(tenantId);
    if (hit && now - hit.at < CACHE_MS) return hit.scan;
    for (const [key, entry] of cache) if (now - entry.at >= CACHE_MS) cache.delete(key);
    const scan = withTemporalDeadline(temporal.connection, config.TEMPORAL_RPC_TIMEOUT_MS, () => scanTenant(temporal, tenantId, new Date(now)));
    cache.set(tenantId, { at: now, scan });
    // A failure is never served from the cache: the next poll asks Temporal again.
    scan.catch(() => cache.get(tenantId)?.scan === scan && cache.delete(tenantId));
    return scan;
  };

  return [
    defineRoute({
      id: 'getTenantWorkflows',
      method: 'GET',
      path: '/tenants/:tenantId/workflows',
      summary: "The tenant's failing and stuck workflows, with links to the Temporal UI",
      description:
        `Failing: closed Failed, TimedOut or Terminated within the last 24 hours. Stuck: running with an activity (or the workflow task) at attempt ${STUCK_ATTEMPTS} or more. ` +
        'Answered from Temporal visibility (eventually consistent, refreshed at most every few seconds); 503 when Temporal does not answer in time.',
      tag: 'analytics',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      response: workflowsSchema,
      errors: [503],
      handler: async ({ tenantId, principal, ctx }) => {
        let scan: Scan;
        try {
          scan = await scanCached(tenantId);
        } catch (err) {
          logger.warn({ requestId: ctx.state.requestId, tenantId, err: { name: (err as Error).name, message: (err as Error).message } }, 'workflow visibility unavailable');
          throw new ApiError(503, 'temporal_unavailable', `Temporal did not answer within ${config.TEMPORAL_RPC_TIMEOUT_MS} ms; retry later`);
        }
        // Conversation workflow ids carry the customer id: the same rule as the conversation list.
        const full = can(principal, 'conversations.read', tenantId);
        const view = (r: ScannedRun) => ({
          workflowId: full ? r.workflowId : maskedWorkflowId(r.workflowId),
          runId: r.runId,
          type: r.type,
          status: r.status,
          startedAt: r.startedAt,
          closedAt: r.closedAt,
          url: full ? links.run(r.workflowId, r.runId) : null,
        });
        return {
          tenantId,
          checkedAt: scan.checkedAt,
          temporalUiUrl: links.tenantList(tenantId),
          running: scan.running,
          failing: scan.failing.map(view),
          stuck: scan.stuck.map((r) => ({ ...view(r), ...r.stuck! })),
          truncated: scan.truncated,
        };
      },
    }),
  ];
}
