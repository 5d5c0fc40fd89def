import { ApplicationFailure } from '@temporalio/activity';
import { getOutbound, markOutboundSent, OUTBOUND_METADATA_PREFIX } from '../src/db/conversations';
import { loadChannelCredentials } from '../src/db/channels';
import { classifyGraphError, GraphApiError, GraphNetworkError } from '../src/meta/graph-errors';
import type { SendFailureDetails } from '../src/shared/types';
import type { ActivityDeps } from './index';

export interface SendReplyInput {
  channelId: string;
  outboundId: string;
  customerId: string;
}

/**
 * Graph API calls. The channel's token is loaded and decrypted here, inside the activity, so it
 * never appears in workflow inputs, results or history.
 */
export function createGraphActivities({ pool, vault, graph, logger }: Pick<ActivityDeps, 'pool' | 'vault' | 'graph' | 'logger'>) {
  return {
    async sendReply(input: SendReplyInput): Promise<{ messageId: string }> {
      const outbound = await getOutbound(pool, input.outboundId);
      if (!outbound) throw ApplicationFailure.nonRetryable(`outbound message ${input.outboundId} does not exist`, 'OutboundMissing');
      // A previous attempt may have succeeded and crashed before returning: never send twice.
      if (outbound.status === 'sent' && outbound.mid) return { messageId: outbound.mid };

      const channel = await loadChannelCredentials(pool, vault, input.channelId, 'graph.send');
      if (channel.status !== 'active') {
        const details: SendFailureDetails = { errorClass: 'channel_inactive', reauth: false };
        throw ApplicationFailure.create({ message: `channel is ${channel.status}`, type: 'ChannelInactive', nonRetryable: true, details: [details] });
      }
      try {
        const result = await graph.sendMessage(channel, {
          recipient: { id: input.customerId },
          messaging_type: 'RESPONSE',
          message: { text: outbound.text ?? '', metadata: OUTBOUND_METADATA_PREFIX + outbound.id },
        });
        await markOutboundSent(pool, outbound.id, result.messageId);
        return { messageId: result.messageId };
      } catch (err) {
        if (!(err instanceof GraphApiError || err instanceof GraphNetworkError)) throw err;
        const c = classifyGraphError(err);
        const details: SendFailureDetails = {
          errorClass: c.errorClass,
          reauth: c.reauth,
          ...(err instanceof GraphApiError && { code: err.code, subcode: err.subcode, fbtraceId: err.fbtraceId }),
        };
        logger.warn({ channelId: input.channelId, outboundId: outbound.id, ...details, retryable: c.retryable }, 'send failed');
        throw ApplicationFailure.create({
          message: err.message,
          type: c.failureType,
          nonRetryable: !c.retryable,
          details: [details],
          ...(c.retryAfterMs !== undefined && { nextRetryDelay: c.retryAfterMs }),
        });
      }
    },
  };
}
