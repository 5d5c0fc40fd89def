import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Pool } from 'pg';
import { markChannelReauthRequired, type AuditActor } from '../db/channels';
import { withTenant } from '../db/tenant-scope';
import type { Logger } from '../logger';
import { TENANT_ID } from '../temporal/search-attributes';
import { notificationWorkflowId, type NotificationInput } from '../../workflows/token-lifecycle-definitions';
import { openEpisode, type Episode, type OpenEpisodeInput } from './episodes';

/** Starts the notification workflow of an episode; a second start for the same episode is a no-op. */
export interface NotificationStarter {
  start(input: NotificationInput): Promise<void>;
}

export function temporalNotificationStarter(client: Client, taskQueue: string): NotificationStarter {
  return {
    async start(input) {
      try {
        await client.workflow.start('notificationWorkflow', {
          workflowId: notificationWorkflowId(input.episodeId),
          taskQueue,
          args: [input],
          // One run per episode, ever: a finished run is not started again by a later failure.
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          typedSearchAttributes: [{ key: TENANT_ID, value: input.tenantId }],
        });
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
    },
  };
}

export interface ReauthInput {
  tenantId: string;
  channelId: string;
  /** Failure type and Graph code (e.g. `GraphAuthExpired (code 190)`): no API message, no token. */
  reason: string;
  actor?: AuditActor;
}

/**
 * The one way a channel becomes `reauth_required`, whoever noticed (a send's 190, a failed
 * refresh, `debug_token` saying invalid). The status change, its audit event and the episode
 * commit together; the notification then starts for the open episode whether or not this call
 * made the change, so a crash between the commit and the start is healed by the next report,
 * while the episode's workflow id keeps it to one notification.
 */
export async function requireReauth(
  pool: Pool,
  starter: NotificationStarter,
  logger: Logger,
  input: ReauthInput,
): Promise<{ changed: boolean; episode: Episode | null }> {
  const { changed, episode } = await withTenant(pool, input.tenantId, async (tx) => {
    const moved = await markChannelReauthRequired(tx, input, input.reason, input.actor ? { actor: input.actor } : {});
    const { rows } = await tx.query<{ status: string }>('SELECT status FROM channels WHERE id = $1', [input.channelId]);
    // A disabled or deleted channel has nothing to reconnect: no episode.
    if (rows[0]?.status !== 'reauth_required') return { changed: moved, episode: null };
    const opened = await openEpisode(tx, input.tenantId, { channelId: input.channelId, kind: 'reauth_required', level: 'critical', reason: input.reason });
    return { changed: moved, episode: opened.episode };
  });
  if (changed) logger.warn({ channelId: input.channelId, reason: input.reason }, 'channel needs reauthorization');
  if (episode) await starter.start({ tenantId: input.tenantId, episodeId: episode.id });
  return { changed, episode };
}

/** Opens (or finds) a token_expiring episode and makes sure its notification runs. */
export async function noteTokenExpiring(
  pool: Pool,
  starter: NotificationStarter,
  input: { tenantId: string } & Omit<OpenEpisodeInput, 'kind'>,
): Promise<{ opened: boolean; episode: Episode }> {
  const { tenantId, ...rest } = input;
  const result = await openEpisode(pool, tenantId, { ...rest, kind: 'token_expiring' });
  await starter.start({ tenantId, episodeId: result.episode.id });
  return result;
}
