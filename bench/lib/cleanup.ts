import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import type { Sql } from './tenant-sql';
import { conversationWorkflowId } from '../../src/temporal/ids';

/**
 * A bench run leaves open conversation workflows; each would complete on its own after the idle
 * timeout (30 min) and load a later run with a burst of timers. And once the bench tenant is
 * deleted, any workflow of it still running would retry its activities against a tenant that is
 * gone. So: terminate every run of the tenant, found two ways — the visibility store
 * (`TenantId` search attribute, which also finds workflows that were signalled by a webhook
 * answered 503 and never wrote a row) and the conversation rows — and only then delete.
 * Bounded: one listing of at most `maxRuns` runs and one terminate call per workflow id.
 */

export interface CleanupResult {
  candidates: number;
  terminated: number;
  alreadyClosed: number;
  failed: number;
  /** Running runs the visibility store still lists afterwards (may lag a little). */
  stillRunning: number;
}

async function runningWorkflowIds(client: Client, tenantId: string, maxRuns: number): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query: `TenantId = '${tenantId}' AND ExecutionStatus = 'Running'` })) {
    ids.push(wf.workflowId);
    if (ids.length >= maxRuns) break;
  }
  return ids;
}

export async function terminateConversations(
  pool: Sql,
  client: Client,
  tenantId: string,
  channelId: string,
  concurrency: number,
  maxRuns = 1_000_000,
): Promise<CleanupResult> {
  const { rows } = await pool.query<{ customer_id: string }>('SELECT customer_id FROM conversations WHERE channel_id = $1', [channelId]);
  const ids = new Set(rows.map((r) => conversationWorkflowId(tenantId, channelId, r.customer_id)));
  for (const id of await runningWorkflowIds(client, tenantId, maxRuns)) ids.add(id);
  const queue = [...ids];
  const result: CleanupResult = { candidates: queue.length, terminated: 0, alreadyClosed: 0, failed: 0, stillRunning: 0 };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
      while (next < queue.length) {
        const id = queue[next++]!;
        try {
          await client.workflow.getHandle(id).terminate('benchmark finished');
          result.terminated++;
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) result.alreadyClosed++;
          else result.failed++;
        }
      }
    }),
  );
  // Visibility is eventually consistent: give it a moment before checking nothing is left.
  for (let attempt = 0; attempt < 5; attempt++) {
    await new Promise((r) => setTimeout(r, 1000));
    result.stillRunning = (await runningWorkflowIds(client, tenantId, maxRuns)).length;
    if (result.stillRunning === 0) break;
  }
  return result;
}
