import { ApplicationFailure } from '@temporalio/activity';
import {
  createReply,
  markOutboundFailed,
  recordConversationEvent,
  recordEcho,
  recordInbound,
  type OutboundRow,
  type RecordedInbound,
  type SendErrorRecord,
} from '../src/db/conversations';
import { markChannelReauthRequired } from '../src/db/channels';
import type { ConversationRef, EchoEvent, InboundEvent, MessageEvent, PostbackEvent } from '../src/shared/types';
import type { ActivityDeps } from './index';

/** Postgres "foreign key violation": the tenant or channel was deleted while the conversation ran. */
const FOREIGN_KEY_VIOLATION = '23503';

/** Retrying cannot bring a deleted tenant or channel back: fail once, the workflow moves on and idles out. */
async function orphanSafe<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as { code?: string }).code === FOREIGN_KEY_VIOLATION) {
      throw ApplicationFailure.nonRetryable('the tenant or channel of this conversation no longer exists', 'ConversationOrphaned');
    }
    throw err;
  }
}

/** Postgres writes of the conversation workflow. Each is idempotent: retries and replays are safe. */
export function createConversationActivities({ pool, replyEngine, logger }: Pick<ActivityDeps, 'pool' | 'replyEngine' | 'logger'>) {
  return {
    async recordInbound(input: { ref: ConversationRef; event: MessageEvent | PostbackEvent }): Promise<RecordedInbound> {
      return orphanSafe(() => recordInbound(pool, input.ref, input.event));
    },

    async recordEcho(input: { ref: ConversationRef; event: EchoEvent }): Promise<{ ours: boolean }> {
      return orphanSafe(() => recordEcho(pool, input.ref, input.event));
    },

    async recordConversationEvent(input: { ref: ConversationRef; event: InboundEvent }): Promise<{ inserted: boolean }> {
      return orphanSafe(() => recordConversationEvent(pool, input.ref, input.event));
    },

    async generateReply(input: { tenantId: string; event: MessageEvent | PostbackEvent }): Promise<{ text: string } | null> {
      return replyEngine.reply(input);
    },

    async createReply(input: { ref: ConversationRef; conversationId: string; inReplyTo: string; text: string }): Promise<OutboundRow> {
      return createReply(pool, { ...input.ref, conversationId: input.conversationId, inReplyTo: input.inReplyTo, text: input.text });
    },

    async markReplyFailed(input: { outboundId: string; error: SendErrorRecord }): Promise<void> {
      await markOutboundFailed(pool, input.outboundId, input.error);
    },

    async markChannelReauthRequired(input: { channelId: string; reason: string }): Promise<{ changed: boolean }> {
      const changed = await markChannelReauthRequired(pool, input.channelId, input.reason);
      if (changed) logger.warn({ channelId: input.channelId, reason: input.reason }, 'channel needs reauthorization');
      return { changed };
    },
  };
}
