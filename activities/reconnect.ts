import { ApplicationFailure, Context } from '@temporalio/activity';
import { appendAuditEvent } from '../src/audit/log';
import { connectChannel, type ChannelStatus, type GraphApi } from '../src/db/channels';
import { loadGrant } from '../src/db/onboarding';
import { withTenant } from '../src/db/tenant-scope';
import { closeEpisodes } from '../src/notifications/episodes';
import { requireReauth, temporalNotificationStarter } from '../src/notifications/reauth';
import type { Platform } from '../src/shared/types';
import type { OnboardingProblem } from '../workflows/onboarding-definitions';
import { CHANNEL_UNAVAILABLE_PROBLEM } from '../workflows/token-lifecycle-definitions';
import { channelTokensFromGrant, fail, recordSagaEnd, runAuditKey, type FailureDetails } from './onboarding';
import type { ActivityDeps } from './index';

/**
 * The reconnect saga's own steps (workflows/reconnect.ts, docs/token-lifecycle.md "Reconnect").
 * The OAuth part (code exchange, grant, asset listing, grant discard) and the subscription are the
 * onboarding's activities; these read the channel, store the new token for it, close its
 * notification episodes, and put it back to `reauth_required` when an attempt is undone.
 * Tokens stay inside the activities: the workflow names the grant row and the channel only.
 */

export interface ReconnectChannel {
  channelId: string;
  platform: Platform;
  accountId: string;
  graphApi: GraphApi;
  status: ChannelStatus;
}

export type ReconnectOutcome = 'abandoned' | 'cancelled' | 'failed';

function unavailable(message: string): never {
  throw ApplicationFailure.create({ message, type: 'ChannelUnavailable', nonRetryable: true, details: [{ problem: CHANNEL_UNAVAILABLE_PROBLEM } satisfies FailureDetails] });
}

export function createReconnectActivities({ pool, vault, logger, oauth }: Pick<ActivityDeps, 'pool' | 'vault' | 'logger' | 'oauth'>) {
  const actor = { type: 'system' as const, id: 'reconnect' };

  async function readChannel(tenantId: string, channelId: string): Promise<ReconnectChannel | null> {
    const { rows } = await withTenant(pool, tenantId, (tx) =>
      tx.query<{ id: string; platform: Platform; account_id: string; graph_api: GraphApi; status: ChannelStatus }>(
        'SELECT id, platform, account_id, graph_api, status FROM channels WHERE id = $1',
        [channelId],
      ),
    );
    const r = rows[0];
    return r ? { channelId: r.id, platform: r.platform, accountId: r.account_id, graphApi: r.graph_api, status: r.status } : null;
  }

  return {
    /** The channel to reconnect, without its token; null when the tenant has no such channel. */
    async describeReconnectChannel(input: { tenantId: string; channelId: string }): Promise<ReconnectChannel | null> {
      return readChannel(input.tenantId, input.channelId);
    },

    /**
     * The new token for the channel, from the sealed grant: Facebook Login re-fetches the Page
     * token (for an Instagram account through its Page, `pageId`) and checks it with
     * `debug_token`; Instagram Login uses the grant's 60-day token. `connectChannel` replaces the
     * sealed token, flips the channel to `active`, resets `token_issued_at` and the check
     * failures, sets the expiry and appends `token.stored` in one transaction. A retry stores the
     * same token again (harmless).
     */
    async storeReconnectedToken(input: { tenantId: string; channelId: string; grantId: string; graphApi: GraphApi; pageId?: string }): Promise<{ tokenExpiresAt: number | null }> {
      const channel = await readChannel(input.tenantId, input.channelId);
      if (!channel || channel.status === 'disabled') unavailable(`channel ${input.channelId} is ${channel ? 'disabled' : 'gone'}`);
      if (!oauth) fail('OAuthNotConfigured', 'flow_unavailable', 'no Meta OAuth client configured on this worker');
      const grant = await loadGrant(pool, vault, input.tenantId, input.grantId, 'reconnect.store');
      if (!grant) fail('GrantMissing', 'code_rejected', `grant ${input.grantId} does not exist`);
      const tokens = await channelTokensFromGrant(oauth, grant, [{ channelId: channel.channelId, accountId: channel.accountId, platform: channel.platform, ...(input.pageId !== undefined && { pageId: input.pageId }) }]);
      const t = tokens.get(channel.channelId)!;
      const r = await connectChannel(
        pool,
        vault,
        { tenantId: input.tenantId, platform: channel.platform, accountId: channel.accountId, accessToken: t.token, graphApi: input.graphApi, tokenExpiresAt: t.expiresAt },
        { actor },
      );
      // The (platform, account) row is the channel read above: the same id, updated in place.
      if (r.id !== channel.channelId || !r.reconnect) throw new Error(`reconnect stored the token on ${r.id}, not ${channel.channelId}`);
      logger.info({ tenantId: input.tenantId, channelId: channel.channelId, graphApi: input.graphApi }, 'reconnect: token stored, channel active');
      return { tokenExpiresAt: t.expiresAt?.getTime() ?? null };
    },

    /**
     * Compensation of the store: the attempt did not finish, so the channel goes back to
     * `reauth_required` through the one path that does that (its episode is still open, so no
     * second notification). A channel that is not active (the store never ran) is left alone.
     */
    async revertReconnectedChannel(input: { tenantId: string; channelId: string; reason: string }): Promise<{ reverted: boolean }> {
      const ctx = Context.current();
      const starter = temporalNotificationStarter(ctx.client, ctx.info.taskQueue);
      const r = await requireReauth(pool, starter, logger, { tenantId: input.tenantId, channelId: input.channelId, reason: input.reason.slice(0, 200), actor });
      return { reverted: r.changed };
    },

    /**
     * The channel works again: its open episodes (reauthorization, expiring token) close with the
     * reason `reconnected`, and `channel.reconnected` is appended, in one transaction, once per run.
     */
    async completeReconnect(input: { tenantId: string; channelId: string; flow: 'facebook' | 'instagram' }): Promise<{ episodesClosed: string[] }> {
      return withTenant(pool, input.tenantId, async (tx) => {
        const closed = await closeEpisodes(tx, input.tenantId, input.channelId, ['reauth_required', 'token_expiring'], 'reconnected');
        await appendAuditEvent(
          tx,
          { tenantId: input.tenantId, actor, action: 'channel.reconnected', resource: `channel:${input.channelId}`, outcome: 'success', details: { channel: input.channelId, flow: input.flow, episodesClosed: closed } },
          { idempotencyKey: runAuditKey('reconnected') },
        );
        return { episodesClosed: closed };
      });
    },

    /** How a reconnect ended without reconnecting: the audit event (once per run) and a log line. */
    async recordReconnectOutcome(input: { tenantId: string; channelId: string; outcome: ReconnectOutcome; step: string; reason: string; problem?: OnboardingProblem }): Promise<void> {
      await recordSagaEnd(pool, logger, { ...input, saga: 'reconnect', resource: `channel:${input.channelId}` });
    },
  };
}
