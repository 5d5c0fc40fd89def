import type { Client, Connection } from '@temporalio/client';
import { beginOAuthUpdate, type BeginOAuth, type OAuthCallback } from '../../workflows/onboarding-definitions';
import { reconnectOAuthCallbackUpdate, reconnectStatusQuery, reconnectWorkflowId, type ReconnectInput, type ReconnectStatus } from '../../workflows/token-lifecycle-definitions';
import { portalCallIfFound, portalUpdate, startPortalSaga } from './onboarding-client';

/**
 * The portal's side of a channel's reconnect saga (workflows/reconnect.ts): start it, ask where it
 * is, deliver the OAuth attempt and its callback. Same deadlines and outcomes as the onboarding
 * client (refused by the saga, or Temporal unavailable).
 */

export const RECONNECT_WORKFLOW_TYPE = 'reconnectWorkflow';

export interface ReconnectClientOptions {
  client: Client;
  connection: Connection;
  taskQueue: string;
  rpcTimeoutMs: number;
  updateTimeoutMs?: number;
  oauthTimeoutMs?: number;
}

export class ReconnectClient {
  private readonly updateTimeoutMs: number;

  constructor(private readonly opts: ReconnectClientOptions) {
    this.updateTimeoutMs = opts.updateTimeoutMs ?? Math.max(opts.rpcTimeoutMs, 15_000);
  }

  private handle(channelId: string) {
    return this.opts.client.workflow.getHandle(reconnectWorkflowId(channelId));
  }

  /**
   * Starts the channel's reconnect, or joins the open one (USE_EXISTING): a double click never
   * makes two. A closed run (reconnected, abandoned) is followed by a new one: the channel needs
   * reconnecting again.
   */
  async start(tenantId: string, channelId: string, label?: string): Promise<void> {
    const input: ReconnectInput = { tenantId, channelId, ...(this.opts.oauthTimeoutMs !== undefined && { oauthTimeoutMs: this.opts.oauthTimeoutMs }), ...(label && { label }) };
    await startPortalSaga(this.opts, tenantId, { workflowType: RECONNECT_WORKFLOW_TYPE, workflowId: reconnectWorkflowId(channelId), input });
  }

  /** The latest run's status; undefined when the channel was never reconnected (or it aged out). */
  status(channelId: string): Promise<ReconnectStatus | undefined> {
    return portalCallIfFound(this.opts.connection, this.opts.rpcTimeoutMs, () => this.handle(channelId).query(reconnectStatusQuery));
  }

  private update<R>(channelId: string, fn: (h: ReturnType<ReconnectClient['handle']>) => Promise<R>): Promise<R> {
    return portalUpdate(this.opts.connection, this.updateTimeoutMs, 'the reconnect is not running', () => fn(this.handle(channelId)));
  }

  beginOAuth(channelId: string, begin: BeginOAuth): Promise<void> {
    return this.update(channelId, (h) => h.executeUpdate(beginOAuthUpdate, { args: [begin] }));
  }

  oauthCallback(channelId: string, callback: OAuthCallback): Promise<ReconnectStatus> {
    return this.update(channelId, (h) => h.executeUpdate(reconnectOAuthCallbackUpdate, { args: [callback] }));
  }
}
