import { ApplicationFailure, Context } from '@temporalio/activity';
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
import type { ChannelStatus } from '../src/db/channels';
import { listParkedOutbound, markOutboundParked, unparkOutbound, type ParkedOutbound } from '../src/db/parked-sends';
import { requireReauth, temporalNotificationStarter } from '../src/notifications/reauth';
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
    /** Also the conversation's parked replies: a run that completed idle (or continued as new) with parked sends still has them. */
    async loadConversationSnapshot(input: { ref: ConversationRef }): Promise<ConversationSnapshot & { parked: ParkedOutbound[] }> {
      return orphanSafe(async () => {
        const [state, settings, parked] = await Promise.all([loadConversationState(pool, input.ref), loadTenantSettings(pool, input.ref.tenantId), listParkedOutbound(pool, input.ref)]);
        return { ...state, settings: settings.agent, parked };
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

    /** Parks a reply while its channel needs reauthorization; says whether the channel is (again) active. */
    async markOutboundParked(input: { tenantId: string; outboundId: string; error: SendErrorRecord }): Promise<{ parked: boolean; channelStatus: ChannelStatus | null }> {
      return markOutboundParked(pool, input.tenantId, input.outboundId, input.error);
    },

    /** A parked reply about to be sent after the reconnect goes back to `pending`; its status afterwards. */
    async unparkOutbound(input: { tenantId: string; outboundId: string }): Promise<{ status: string | null; sendRound: number | null }> {
      return unparkOutbound(pool, input.tenantId, input.outboundId);
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

    /**
     * The one reauth path (src/notifications/reauth.ts): status, audit event and episode together,
     * then the episode's notification. A local activity has the worker's client like a regular one
     * (SDK 1.24 builds both through the same Activity context).
     */
    async markChannelReauthRequired(input: { tenantId: string; channelId: string; reason: string }): Promise<{ changed: boolean }> {
      const ctx = Context.current();
      const starter = temporalNotificationStarter(ctx.client, ctx.info.taskQueue);
      const { changed } = await requireReauth(pool, starter, logger, { tenantId: input.tenantId, channelId: input.channelId, reason: input.reason });
      return { changed };
    },
  };
}
