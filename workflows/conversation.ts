import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ConversationRef, InboundEvent, MessageEvent, PostbackEvent, SendFailureDetails } from '../src/shared/types';
import { conversationStateQuery, FALLBACK_REPLY, inboundEventSignal, MAX_SEEN_KEYS, type ConversationInput } from './definitions';

const store = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '30 seconds', backoffCoefficient: 2 },
});

const replies = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 5 },
});

// Sends are not idempotent at Meta: a few bounded attempts, with non-retryable classes never retried.
const sender = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', backoffCoefficient: 2, maximumAttempts: 6 },
});

/** Insertion-ordered set with a cap: the oldest keys fall out first. */
class BoundedSet {
  private readonly keys: Set<string>;
  constructor(initial: string[], private readonly max: number) {
    this.keys = new Set(initial.slice(-max));
  }
  has(key: string): boolean {
    return this.keys.has(key);
  }
  add(key: string): void {
    this.keys.add(key);
    if (this.keys.size > this.max) this.keys.delete(this.keys.values().next().value as string);
  }
  get size(): number {
    return this.keys.size;
  }
  toArray(): string[] {
    return [...this.keys];
  }
}

/** What a failed send activity told us; undefined for anything that is not an activity failure. */
function sendFailure(err: unknown): { type: string; details: SendFailureDetails } | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  if (err.cause instanceof ApplicationFailure) {
    const details = (err.cause.details?.[0] ?? { errorClass: 'unknown', reauth: false }) as SendFailureDetails;
    return { type: err.cause.type ?? 'Unknown', details };
  }
  // Timeouts and cancellations: the attempts are exhausted, record it rather than fail the conversation.
  return { type: err.cause?.name ?? 'ActivityFailure', details: { errorClass: 'unknown', reauth: false } };
}

/**
 * One long-lived workflow per conversation (`conversation/{tenant}/{channel}/{customer}`).
 * The signal handler only dedupes and queues; the loop below persists, decides and replies,
 * one event at a time in Meta timestamp order.
 */
export async function conversationWorkflow(input: ConversationInput): Promise<{ processed: number }> {
  const ref: ConversationRef = { tenantId: input.tenantId, channelId: input.channelId, customerId: input.customerId };
  const seen = new BoundedSet(input.seenKeys ?? [], MAX_SEEN_KEYS);
  const queue: InboundEvent[] = [...(input.pending ?? [])];
  let processed = 0;

  setHandler(inboundEventSignal, (event) => {
    if (seen.has(event.dedupeKey)) return;
    seen.add(event.dedupeKey);
    queue.push(event);
  });
  setHandler(conversationStateQuery, () => ({ queued: queue.length, processed, seenKeys: seen.size }));

  for (;;) {
    const hasWork = await condition(() => queue.length > 0, input.idleTimeoutMs);
    if (!hasWork) {
      await condition(allHandlersFinished);
      if (queue.length === 0) return { processed };
      continue;
    }
    // Meta does not guarantee order under redelivery; its timestamp does (stable sort keeps arrival order on ties).
    queue.sort((a, b) => a.timestamp - b.timestamp);
    const event = queue.shift()!;
    try {
      await handleEvent(ref, event);
    } catch (err) {
      // An activity that gave up (non-retryable, or out of attempts) must not end the conversation:
      // the events queued behind it were already acknowledged to Meta.
      if (!(err instanceof ActivityFailure)) throw err;
      log.error('event handling failed', { kind: event.kind, failure: err.cause?.name });
    }
    processed += 1;

    if (workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof conversationWorkflow>({ ...input, seenKeys: seen.toArray(), pending: queue });
    }
  }
}

async function handleEvent(ref: ConversationRef, event: InboundEvent): Promise<void> {
  switch (event.kind) {
    case 'message':
    case 'postback':
      return answer(ref, event);
    case 'echo':
      // Our own sends and a human's inbox replies both come back as echoes: never answer them.
      await store.recordEcho({ ref, event });
      return;
    default:
      await store.recordConversationEvent({ ref, event });
  }
}

async function answer(ref: ConversationRef, event: MessageEvent | PostbackEvent): Promise<void> {
  const inbound = await store.recordInbound({ ref, event });
  // Redelivered after an earlier run already answered it.
  if (inbound.alreadyAnswered) return;

  let reply: { text: string } | null;
  try {
    reply = await replies.generateReply({ tenantId: ref.tenantId, event });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    // Never silence and never a stack trace: the customer gets a polite holding answer.
    log.warn('reply generation failed; sending the fallback', { failure: err.cause?.name });
    reply = { text: FALLBACK_REPLY };
  }
  if (!reply) return;
  const outbound = await store.createReply({ ref, conversationId: inbound.conversationId, inReplyTo: inbound.messageId, text: reply.text });
  if (outbound.status !== 'pending') return;

  try {
    await sender.sendReply({ channelId: ref.channelId, outboundId: outbound.id, customerId: ref.customerId });
  } catch (err) {
    const failure = sendFailure(err);
    if (!failure) throw err;
    log.warn('reply not sent', { type: failure.type, errorClass: failure.details.errorClass, code: failure.details.code });
    if (failure.details.reauth) {
      await store.markChannelReauthRequired({ channelId: ref.channelId, reason: `${failure.type} (code ${failure.details.code ?? 'n/a'})` });
    }
    await store.markReplyFailed({
      outboundId: outbound.id,
      error: {
        type: failure.type,
        reason: failure.details.errorClass,
        ...(failure.details.code !== undefined && { code: failure.details.code }),
        ...(failure.details.subcode !== undefined && { subcode: failure.details.subcode }),
        ...(failure.details.fbtraceId !== undefined && { fbtraceId: failure.details.fbtraceId }),
      },
    });
  }
}
