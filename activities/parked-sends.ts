import { Context } from '@temporalio/activity';
import { parkedConversationsOfChannel } from '../src/db/parked-sends';
import { dispatchChannelReconnected } from '../src/gateway/conversation-dispatch';
import type { ActivityDeps } from './index';

/** The gateway's default (CONVERSATION_IDLE_TIMEOUT_MS): a worker wired without it starts runs like the gateway does. */
const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000;

/** Conversations signalled at once: a channel with thousands of parked conversations must not open thousands of RPCs. */
const SIGNAL_CONCURRENCY = 10;

/**
 * Delivery of the replies parked while a channel needed reauthorization (docs/conversations.md).
 * The reconnect saga calls `resumeParkedSends` once the channel is `active` again.
 */
export function createParkedSendActivities({ pool, logger, conversationIdleTimeoutMs }: Pick<ActivityDeps, 'pool' | 'logger' | 'conversationIdleTimeoutMs'>) {
  return {
    /**
     * Signals (signal-with-start) every conversation of the channel holding parked replies with
     * `channelReconnected`; each then delivers its own, in order, through its send path. Safe to
     * repeat: a conversation with nothing parked any more ignores the signal. Nothing is signalled
     * while the channel is not `active` (the replies would only park again).
     */
    async resumeParkedSends(input: { tenantId: string; channelId: string }): Promise<{ conversations: number; parked: number }> {
      const ctx = Context.current();
      const { channel, conversations } = await parkedConversationsOfChannel(pool, input.tenantId, input.channelId);
      if (!channel || conversations.length === 0) return { conversations: 0, parked: 0 };
      if (channel.status !== 'active') {
        logger.warn({ channelId: channel.id, status: channel.status, conversations: conversations.length }, 'parked replies not resumed: the channel is not active');
        return { conversations: 0, parked: 0 };
      }
      const opts = { taskQueue: ctx.info.taskQueue, idleTimeoutMs: conversationIdleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS };
      const reconnectedAt = Date.now();
      for (let i = 0; i < conversations.length; i += SIGNAL_CONCURRENCY) {
        const batch = conversations.slice(i, i + SIGNAL_CONCURRENCY);
        await Promise.all(batch.map((c) => dispatchChannelReconnected(ctx.client, opts, channel, c.customerId, reconnectedAt)));
        // A local activity has no heartbeat to send.
        if (!ctx.info.isLocal) ctx.heartbeat({ signalled: i + batch.length });
      }
      const parked = conversations.reduce((n, c) => n + c.parked, 0);
      logger.info({ channelId: channel.id, conversations: conversations.length, parked }, 'parked replies resumed');
      return { conversations: conversations.length, parked };
    },
  };
}
