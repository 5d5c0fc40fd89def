import { ApplicationFailure } from '@temporalio/activity';
import {
  applyConversationEvent,
  createOutbound,
  loadConversationState,
  markOutboundFailed,
  markOutboundOutsideWindow,
  recordEcho,
  recordInbound,
  setConversationMode,
  touchHumanActivity,
  type EventEffect,
  type NewOutbound,
  type OutboundRow,
  type RecordedEcho,
  type RecordedInbound,
  type SendErrorRecord,
} from '../src/db/conversations';
import { markChannelReauthRequired } from '../src/db/channels';
import { loadTenantSettings } from '../src/db/tenant-settings';
import type { ConversationMode, ConversationRef, ConversationSnapshot, EchoEvent, InboundEvent, MessageEvent, PostbackEvent } from '../src/shared/types';
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

/** Postgres reads and writes of the conversation workflow. Each is idempotent: retries and replays are safe. */
export function createConversationActivities({ pool, logger }: Pick<ActivityDeps, 'pool' | 'logger'>) {
  return {
    async loadConversationSnapshot(input: { ref: ConversationRef }): Promise<ConversationSnapshot> {
      return orphanSafe(async () => {
        const [state, settings] = await Promise.all([loadConversationState(pool, input.ref), loadTenantSettings(pool, input.ref.tenantId)]);
        return { ...state, settings: settings.agent };
      });
    },

    async recordInbound(input: { ref: ConversationRef; event: MessageEvent | PostbackEvent }): Promise<RecordedInbound> {
      return orphanSafe(() => recordInbound(pool, input.ref, input.event));
    },

    async recordEcho(input: { ref: ConversationRef; event: EchoEvent; matchedOutboundId?: string }): Promise<RecordedEcho> {
      return orphanSafe(() => recordEcho(pool, input.ref, input.event, input.matchedOutboundId));
    },

    async applyConversationEvent(input: { ref: ConversationRef; event: InboundEvent }): Promise<{ effect: EventEffect }> {
      return orphanSafe(() => applyConversationEvent(pool, input.ref, input.event));
    },

    async createOutbound(input: { ref: ConversationRef } & Omit<NewOutbound, 'tenantId' | 'channelId'>): Promise<OutboundRow> {
      const { ref, ...rest } = input;
      return orphanSafe(() => createOutbound(pool, { ...rest, tenantId: ref.tenantId, channelId: ref.channelId }));
    },

    async markOutboundFailed(input: { tenantId: string; outboundId: string; error: SendErrorRecord }): Promise<void> {
      await markOutboundFailed(pool, input.tenantId, input.outboundId, input.error);
    },

    async markOutboundOutsideWindow(input: { tenantId: string; outboundId: string; reason: string }): Promise<void> {
      await markOutboundOutsideWindow(pool, input.tenantId, input.outboundId, input.reason);
    },

    async setConversationMode(input: { ref: ConversationRef; mode: ConversationMode; reason: string; operator?: string; requestId?: string }): Promise<{ changed: boolean }> {
      return orphanSafe(() =>
        setConversationMode(pool, input.ref, input.mode, input.reason, {
          ...(input.operator && { actor: { type: 'operator', id: input.operator } }),
          ...(input.requestId && { requestId: input.requestId }),
        }),
      );
    },

    async touchHumanActivity(input: { tenantId: string; conversationId: string; at: number }): Promise<void> {
      await touchHumanActivity(pool, input.tenantId, input.conversationId, new Date(input.at));
    },

    async markChannelReauthRequired(input: { tenantId: string; channelId: string; reason: string }): Promise<{ changed: boolean }> {
      const changed = await markChannelReauthRequired(pool, input, input.reason);
      if (changed) logger.warn({ channelId: input.channelId, reason: input.reason }, 'channel needs reauthorization');
      return { changed };
    },
  };
}
