import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type Connection } from '@temporalio/client';
import { withTemporalDeadline } from '../temporal/client';
import { TENANT_ID } from '../temporal/search-attributes';
import {
  beginOAuthUpdate,
  configureAssistantUpdate,
  oauthCallbackUpdate,
  onboardingStatusQuery,
  onboardingWorkflowId,
  selectAssetsUpdate,
  type AssetSelection,
  type AssistantConfiguration,
  type BeginOAuth,
  type OAuthCallback,
  type OnboardingInput,
  type OnboardingStatus,
} from '../../workflows/onboarding-definitions';

/**
 * The portal's side of the onboarding saga: start it, ask where it is, deliver the client's
 * answers as Updates. Every call runs under a deadline so a page never hangs on a slow Temporal;
 * the outcomes the pages tell apart are "the saga refused this" (its validator's message) and
 * "the saga cannot be reached right now".
 */

/** The workflow refused an Update (its validator, or the handler threw): nothing happened. */
export class OnboardingRefusedError extends Error {
  override name = 'OnboardingRefusedError';
}

/** Temporal did not answer in time, or is down. */
export class OnboardingUnavailableError extends Error {
  override name = 'OnboardingUnavailableError';
}

export interface OnboardingClientOptions {
  client: Client;
  connection: Connection;
  taskQueue: string;
  /** A query or a start (Temporal is local to the gateway: seconds, not tens). */
  rpcTimeoutMs: number;
  /** An Update waits for its handler to finish, which may take one short workflow task more. */
  updateTimeoutMs?: number;
  oauthTimeoutMs?: number;
}

export const ONBOARDING_WORKFLOW_TYPE = 'onboardingWorkflow';

/**
 * A portal call to Temporal under a deadline, with the outcomes the pages tell apart: not found
 * (passed on), refused by the workflow (its validator's message), unavailable. Shared by the
 * onboarding and the reconnect clients.
 */
export async function portalTemporalCall<T>(connection: Connection, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await withTemporalDeadline(connection, timeoutMs, fn);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError || err instanceof OnboardingRefusedError) throw err;
    if (err instanceof WorkflowUpdateFailedError) throw new OnboardingRefusedError(err.cause?.message ?? err.message);
    throw new OnboardingUnavailableError((err as Error).message);
  }
}

/** What a portal saga client needs to start its saga. */
export interface PortalSagaTarget {
  client: Client;
  connection: Connection;
  taskQueue: string;
  rpcTimeoutMs: number;
}

/**
 * Starts a tenant's saga, or joins its open run (USE_EXISTING) so a retried click never makes
 * two. Tagged with the tenant (TenantId) so the tenant's workflows can be listed and terminated
 * together. Shared by the onboarding and the reconnect clients.
 */
export async function startPortalSaga(target: PortalSagaTarget, tenantId: string, start: { workflowType: string; workflowId: string; input: unknown }): Promise<void> {
  await portalTemporalCall(target.connection, target.rpcTimeoutMs, () =>
    target.client.workflow.start(start.workflowType, {
      taskQueue: target.taskQueue,
      workflowId: start.workflowId,
      args: [start.input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: TENANT_ID, value: tenantId.toLowerCase() }],
    }),
  );
}

/** A call about a saga's latest run; undefined when there is none (never started, or past retention). */
export async function portalCallIfFound<T>(connection: Connection, timeoutMs: number, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await portalTemporalCall(connection, timeoutMs, fn);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/** An Update to a saga: a missing run refuses it like the saga would (`notRunning` is the message the page shows). */
export async function portalUpdate<R>(connection: Connection, timeoutMs: number, notRunning: string, fn: () => Promise<R>): Promise<R> {
  try {
    return await portalTemporalCall(connection, timeoutMs, fn);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new OnboardingRefusedError(notRunning);
    throw err;
  }
}

export class OnboardingClient {
  private readonly updateTimeoutMs: number;

  constructor(private readonly opts: OnboardingClientOptions) {
    this.updateTimeoutMs = opts.updateTimeoutMs ?? Math.max(opts.rpcTimeoutMs, 15_000);
  }

  private handle(tenantId: string) {
    return this.opts.client.workflow.getHandle(onboardingWorkflowId(tenantId));
  }

  /**
   * Starts the tenant's onboarding, or does nothing when a run is open (USE_EXISTING): a retried
   * sign-up never starts a second saga. A closed run (live, abandoned, failed, cancelled) would be
   * followed by a new one, so callers start only when `status` found no run, or when the client
   * asks to start again after an abandoned, failed or cancelled one.
   */
  async start(tenantId: string): Promise<void> {
    const input: OnboardingInput = { tenantId, ...(this.opts.oauthTimeoutMs !== undefined && { oauthTimeoutMs: this.opts.oauthTimeoutMs }) };
    await startPortalSaga(this.opts, tenantId, { workflowType: ONBOARDING_WORKFLOW_TYPE, workflowId: onboardingWorkflowId(tenantId), input });
  }

  /** Where the tenant's saga is; undefined when it has no run (never started, or past retention). */
  status(tenantId: string): Promise<OnboardingStatus | undefined> {
    return portalCallIfFound(this.opts.connection, this.opts.rpcTimeoutMs, () => this.handle(tenantId).query(onboardingStatusQuery));
  }

  /** Is a run open (not closed)? A closed one still answers the status query. */
  async isRunning(tenantId: string): Promise<boolean | undefined> {
    const d = await portalCallIfFound(this.opts.connection, this.opts.rpcTimeoutMs, () => this.handle(tenantId).describe());
    return d && d.status.name === 'RUNNING';
  }

  private update<R>(tenantId: string, fn: (h: ReturnType<OnboardingClient['handle']>) => Promise<R>): Promise<R> {
    return portalUpdate(this.opts.connection, this.updateTimeoutMs, 'the onboarding is not running', () => fn(this.handle(tenantId)));
  }

  beginOAuth(tenantId: string, begin: BeginOAuth): Promise<void> {
    return this.update(tenantId, (h) => h.executeUpdate(beginOAuthUpdate, { args: [begin] }));
  }

  oauthCallback(tenantId: string, callback: OAuthCallback): Promise<OnboardingStatus> {
    return this.update(tenantId, (h) => h.executeUpdate(oauthCallbackUpdate, { args: [callback] }));
  }

  selectAssets(tenantId: string, selection: AssetSelection): Promise<OnboardingStatus> {
    return this.update(tenantId, (h) => h.executeUpdate(selectAssetsUpdate, { args: [selection] }));
  }

  configureAssistant(tenantId: string, configuration: AssistantConfiguration): Promise<OnboardingStatus> {
    return this.update(tenantId, (h) => h.executeUpdate(configureAssistantUpdate, { args: [configuration] }));
  }
}
