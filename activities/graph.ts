import { activityInfo, ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { claimSendRound, getOutbound, markOutboundSent, OUTBOUND_METADATA_PREFIX, releaseSendRound } from '../src/db/conversations';
import { loadChannelCredentials, type ChannelStatus } from '../src/db/channels';
import { ChannelNotFoundError, recordUsageFeedback, reserveSendSlot, USAGE_HIGH_WATER_PERCENT, type UsageFeedback } from '../src/db/send-budget';
import type { SendMessageRequest } from '../src/meta/graph-client';
import { classifyGraphError, GraphApiError, GraphNetworkError } from '../src/meta/graph-errors';
import type { SendFailureDetails, SendOutboundInput, SendSlot } from '../src/shared/types';
import type { ActivityDeps } from './index';

/** Outbound rows in these states reached Meta: sending them again would reach the customer twice. */
const ALREADY_SENT = new Set(['sent', 'delivered', 'read']);

/** Attempts at recording a send Meta accepted; past them the echo (which carries our metadata) records it. */
const MARK_SENT_ATTEMPTS = 3;
const MARK_SENT_BACKOFF_MS = 200;

// Not strict: a field added to SendOutboundInput later must not stop sends on older workers.
const sendOutboundSchema = z.discriminatedUnion('messagingType', [
  z.object({
    tenantId: z.uuid(),
    channelId: z.uuid(),
    outboundId: z.uuid(),
    customerId: z.string().regex(/^\d+$/, 'must be a PSID/IGSID (digits)'),
    messagingType: z.literal('RESPONSE'),
    tag: z.undefined().optional(),
    round: z.number().int().min(0).optional(),
  }),
  z.object({
    tenantId: z.uuid(),
    channelId: z.uuid(),
    outboundId: z.uuid(),
    customerId: z.string().regex(/^\d+$/, 'must be a PSID/IGSID (digits)'),
    messagingType: z.literal('MESSAGE_TAG'),
    // The only tag a conversation may use (contract §3.5); a bot never uses one.
    tag: z.literal('HUMAN_AGENT'),
    round: z.number().int().min(0).optional(),
  }),
]);

function failure(message: string, type: string, details: SendFailureDetails, retryable: boolean): ApplicationFailure {
  return ApplicationFailure.create({ message, type, nonRetryable: !retryable, details: [details] });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A channel waiting for reauthorization is a distinct failure (`reauth: true`): the workflow parks
 * the reply until the channel is reconnected. A disabled channel will not come back: the reply fails.
 */
function assertChannelCanSend(status: ChannelStatus): void {
  if (status === 'active') return;
  if (status === 'reauth_required') {
    throw failure('the channel needs reauthorization', 'ChannelReauthRequired', { errorClass: 'reauth_required', reauth: true }, false);
  }
  throw failure(`channel is ${status}`, 'ChannelInactive', { errorClass: 'channel_inactive', reauth: false }, false);
}

/**
 * Graph API calls. The channel's token is loaded and decrypted here, inside the activity, so it
 * never appears in workflow inputs, results or history.
 */
export function createGraphActivities({ pool, vault, graph, logger }: Pick<ActivityDeps, 'pool' | 'vault' | 'graph' | 'logger'>) {
  /**
   * Channels whose budget this process last saw at full rate and unpaused. Meta sends usage headers
   * on every answer; a calm report for a calm channel changes nothing, and writing it would put an
   * UPDATE of the channel's one shared budget row on every send.
   */
  const calmChannels = new Set<string>();
  const isCalm = (f: UsageFeedback) => f.throttled === undefined && f.regainAccessSeconds === undefined && (f.maxPercent ?? 0) < USAGE_HIGH_WATER_PERCENT;

  /** Budget bookkeeping must never turn a send into a failure (a retry after success sends twice). */
  async function feedUsage(tenantId: string, channelId: string, feedback: UsageFeedback): Promise<void> {
    if (isCalm(feedback) && calmChannels.has(channelId)) return;
    try {
      const result = await recordUsageFeedback(pool, tenantId, channelId, feedback);
      if (result.throttleFactor >= 1 && !result.pausedUntil) calmChannels.add(channelId);
      else calmChannels.delete(channelId);
      if (result.throttleFactor < 1 || result.pausedUntil) {
        logger.info({ channelId, throttleFactor: result.throttleFactor, pausedUntil: result.pausedUntil }, 'send budget throttled');
      }
    } catch (err) {
      logger.warn({ channelId, err }, 'send budget feedback not recorded');
    }
  }

  async function recordSent(tenantId: string, outboundId: string, messageId: string, policy: { messagingType: 'RESPONSE' | 'MESSAGE_TAG'; tag?: 'HUMAN_AGENT' }): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await markOutboundSent(pool, tenantId, outboundId, messageId, policy);
        return;
      } catch (err) {
        if (attempt >= MARK_SENT_ATTEMPTS) {
          // Meta has the message: report success anyway, the echo's metadata will mark the row sent.
          logger.error({ outboundId, err }, 'sent, but the row could not be marked sent; the echo will reconcile it');
          return;
        }
        await sleep(MARK_SENT_BACKOFF_MS * attempt);
      }
    }
  }

  return {
    /** One send token of the channel, or how long the workflow should wait (durably) before asking again. */
    async reserveSendSlot(input: { tenantId: string; channelId: string }): Promise<SendSlot> {
      try {
        return await reserveSendSlot(pool, input.tenantId, input.channelId);
      } catch (err) {
        if (err instanceof ChannelNotFoundError) throw ApplicationFailure.nonRetryable(err.message, 'ChannelMissing');
        throw err;
      }
    },

    /**
     * Sends one outbound row. Idempotent across retries and crashes: a row that already reached
     * Meta returns its mid without a second call. An answer lost after the request went out is
     * `AmbiguousSend` (not retried here): the workflow waits for the echo of our metadata first.
     */
    async sendOutbound(rawInput: SendOutboundInput): Promise<{ messageId: string }> {
      const parsed = sendOutboundSchema.safeParse(rawInput);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
        throw ApplicationFailure.nonRetryable(`invalid sendOutbound input: ${problems}`, 'InvalidSendInput');
      }
      const input = parsed.data;
      const outbound = await getOutbound(pool, input.tenantId, input.outboundId);
      if (!outbound) throw ApplicationFailure.nonRetryable(`outbound message ${input.outboundId} does not exist`, 'OutboundMissing');
      if (ALREADY_SENT.has(outbound.status) && outbound.mid) return { messageId: outbound.mid };
      if (!outbound.text) throw failure(`outbound message ${outbound.id} has no text`, 'OutboundEmpty', { errorClass: 'bad_request', reauth: false }, false);

      // Checked before the token is decrypted (no decrypt for a send that cannot go) and again after (the status may have changed since).
      assertChannelCanSend(outbound.channelStatus);
      const channel = await loadChannelCredentials(pool, vault, input, 'graph.send');
      assertChannelCanSend(channel.status);
      const policy = input.messagingType === 'MESSAGE_TAG' ? { messagingType: input.messagingType, tag: input.tag } : { messagingType: input.messagingType };
      const message = { text: outbound.text, metadata: OUTBOUND_METADATA_PREFIX + outbound.id };
      const request: SendMessageRequest =
        input.messagingType === 'MESSAGE_TAG'
          ? { recipient: { id: input.customerId }, messaging_type: 'MESSAGE_TAG', tag: input.tag, message }
          : { recipient: { id: input.customerId }, messaging_type: 'RESPONSE', message };
      const log = { channelId: input.channelId, outboundId: outbound.id, messagingType: input.messagingType, attempt: activityInfo().attempt };

      // An earlier attempt of this round that crashed or timed out may have reached Meta.
      if (!(await claimSendRound(pool, input.tenantId, outbound.id, input.round ?? 0))) {
        logger.warn({ ...log, errorClass: 'ambiguous' }, 'an earlier attempt may have been sent; waiting for the echo');
        throw failure('an earlier attempt of this send may have reached Meta', 'AmbiguousSend', { errorClass: 'ambiguous', reauth: false }, false);
      }
      let sent: Awaited<ReturnType<typeof graph.sendMessage>>;
      try {
        sent = await graph.sendMessage(channel, request);
      } catch (err) {
        if (!(err instanceof GraphApiError || err instanceof GraphNetworkError)) throw err;
        if (err instanceof GraphNetworkError && err.ambiguous) {
          logger.warn({ ...log, errorClass: 'ambiguous' }, 'send outcome unknown; waiting for the echo');
          throw failure(err.message, 'AmbiguousSend', { errorClass: 'ambiguous', reauth: false }, false);
        }
        // A definite answer (an error, or nothing sent at all): another attempt cannot duplicate.
        await releaseSendRound(pool, input.tenantId, outbound.id);
        const c = classifyGraphError(err);
        const details: SendFailureDetails = {
          errorClass: c.errorClass,
          reauth: c.reauth,
          ...(err instanceof GraphApiError && { code: err.code, subcode: err.subcode, fbtraceId: err.fbtraceId }),
        };
        if (err instanceof GraphApiError) {
          if (c.errorClass === 'rate_limited') {
            const retryAfterMs = c.retryAfterMs ?? 0;
            await feedUsage(input.tenantId, input.channelId, { ...usageFeedback(err.usage), throttled: { code: err.code ?? err.httpStatus, retryAfterMs } });
            details.retryAfterMs = retryAfterMs;
            logger.warn({ ...log, ...details }, 'send throttled by Meta; channel paused');
            // Not retried here: the workflow parks the send durably while the channel's pause holds the others back.
            throw failure(err.message, c.failureType, details, false);
          }
          const feedback = usageFeedback(err.usage);
          if (Object.keys(feedback).length > 0) await feedUsage(input.tenantId, input.channelId, feedback);
        }
        logger.warn({ ...log, ...details, retryable: c.retryable }, 'send failed');
        throw failure(err.message, c.failureType, details, c.retryable);
      }
      await recordSent(input.tenantId, outbound.id, sent.messageId, policy);
      const feedback = usageFeedback(sent.usage);
      if (Object.keys(feedback).length > 0) await feedUsage(input.tenantId, input.channelId, feedback);
      logger.info({ ...log }, 'sent');
      return { messageId: sent.messageId };
    },
  };
}

function usageFeedback(usage: { maxPercent: number | undefined; regainAccessSeconds: number | undefined }): UsageFeedback {
  return {
    ...(usage.maxPercent !== undefined && { maxPercent: usage.maxPercent }),
    ...(usage.regainAccessSeconds !== undefined && { regainAccessSeconds: usage.regainAccessSeconds }),
  };
}
