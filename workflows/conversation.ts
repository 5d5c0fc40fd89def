import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  TemporalFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { decideSendPolicy, outboundIdFromMetadata } from '../src/shared/outbound';
import type {
  AgentSettings,
  ConversationMode,
  ConversationRef,
  EchoEvent,
  InboundEvent,
  MessageEvent,
  PostbackEvent,
  SendFailureDetails,
  ToolCall,
  ToolResult,
} from '../src/shared/types';
import { CONVERSATION_STATE } from '../src/temporal/search-attributes';
import { workflowNow } from './clock';
import {
  conversationStateQuery,
  ECHO_WAIT_MS,
  FALLBACK_REPLY,
  HANDOFF_REPLY,
  inboundEventSignal,
  MAX_AMBIGUOUS_ATTEMPTS,
  MAX_SEEN_KEYS,
  operatorCommandSignal,
  type BurstItem,
  type ConversationInput,
  type OperatorCommand,
  type ParkedSend,
} from './definitions';
import { channelReconnectedSignal } from './token-lifecycle-definitions';
import { runTurn, type TurnOutcome } from './turn';

/*
 * Activities that touch only our own database run as local activities: same timeouts, retries
 * and at-least-once semantics, but no round trip through the Temporal server's task queues and
 * three history events fewer each: an answer costs three regular activities (two engine steps
 * and the send) instead of eight, which is what the inbound → Send latency under load depends on
 * (docs/benchmarks.md). The engine and the Send API stay regular activities: they can take long,
 * the engine must be cancellable through heartbeats, and the Temporal UI should show their attempts.
 */
const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '30 seconds', backoffCoefficient: 2 },
});

// The engine stays a regular activity and heartbeats, so a superseded draft (or a missed turn
// deadline) cancels it within a heartbeat, whether it waits on a remote model or not.
const engine = proxyActivities<Activities>({
  startToCloseTimeout: '60 seconds',
  heartbeatTimeout: '5 seconds',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '5 seconds', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplyEngineRejected', 'ReplyEngineMisconfigured'] },
});

// Each tool is its own activity with its own budget: a retry re-runs only the call that failed.
const searchTool = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds', retry: { initialInterval: '200 milliseconds', maximumAttempts: 3 } });
const infoTool = proxyLocalActivities<Activities>({ startToCloseTimeout: '5 seconds', retry: { initialInterval: '200 milliseconds', maximumAttempts: 3 } });
const handoffTool = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds', retry: { initialInterval: '500 milliseconds', maximumAttempts: 5 } });

const budget = proxyLocalActivities<Activities>({ startToCloseTimeout: '5 seconds', retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds' } });

// Sends are not idempotent at Meta: a few bounded attempts for transient errors; the activity marks
// ambiguous and rate-limited outcomes non-retryable so this workflow decides what happens next.
const sender = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', backoffCoefficient: 2, maximumAttempts: 6 },
});

/** Throttled sends retry at most this often before the reply is recorded as failed. */
const MAX_RATE_LIMITED_ROUNDS = 10;

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

/**
 * An activity that gave up (non-retryable, or out of attempts). Regular activities reject with an
 * ActivityFailure wrapping the cause; local activities reject with the cause itself. Cancellation
 * is not giving up, and anything else (a bug in this file) must fail the workflow task instead.
 */
function gaveUp(err: unknown): err is TemporalFailure {
  return err instanceof TemporalFailure && !isCancellation(err);
}

/** What a failed activity told us; undefined for anything that is not an activity giving up. */
function activityFailure(err: unknown): { type: string; details: SendFailureDetails } | undefined {
  if (!gaveUp(err)) return undefined;
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    const details = (cause.details?.[0] ?? { errorClass: 'unknown', reauth: false }) as SendFailureDetails;
    return { type: cause.type ?? 'Unknown', details };
  }
  // Timeouts: the attempts are exhausted, record it rather than fail the conversation.
  return { type: cause?.name ?? 'ActivityFailure', details: { errorClass: 'unknown', reauth: false } };
}

const isCustomerTurn = (e: InboundEvent): e is MessageEvent | PostbackEvent => e.kind === 'message' || e.kind === 'postback';

interface Delivery {
  author: 'bot' | 'human_agent';
  text: string;
  inReplyTo?: string;
  covers?: string[];
  clientRef?: string;
}

/** An outbound row on its way to the Send API (a fresh delivery, or a parked one resumed). */
interface OutboundSend {
  outboundId: string;
  author: Delivery['author'];
  /** Matches an echo that lost our metadata. */
  text: string;
  /** The send round to start at (ambiguous attempts before a park count). */
  round: number;
}

type SendOutcome = 'sent' | 'parked' | 'settled';

/**
 * One long-lived workflow per conversation (`conversation/{tenant}/{channel}/{customer}`): it
 * decides, activities do the I/O. Signal handlers only dedupe and queue; the loop below stores
 * events in Meta timestamp order, gathers a burst of customer messages until a quiet window has
 * passed, drafts one answer (superseded if the customer writes again meanwhile), applies the
 * messaging window and the handoff state, and sends within the channel's budget.
 */
export async function conversationWorkflow(input: ConversationInput): Promise<{ processed: number }> {
  const ref: ConversationRef = { tenantId: input.tenantId, channelId: input.channelId, customerId: input.customerId };
  const seen = new BoundedSet(input.seenKeys ?? [], MAX_SEEN_KEYS);
  const seenRequests = new BoundedSet(input.seenRequests ?? [], 500);
  const queue: InboundEvent[] = [...(input.pending ?? [])];
  const commands: OperatorCommand[] = [...(input.commands ?? [])];
  const burst: BurstItem[] = [...(input.burst ?? [])];
  const parked = new Map<string, ParkedSend>();
  /**
   * Replies parked until the channel is reauthorized, oldest first. Their rows are `parked` too,
   * so a new run (idle completion, continue-as-new) reloads them from the snapshot instead of
   * carrying them; the reconnect's `channelReconnected` signal-with-start delivers them.
   */
  const reauthParked: OutboundSend[] = [];
  /** A reconnect was signalled, or seen while parking: deliver the parked replies. */
  let resumeRequested = false;
  /** Outbound ids an echo confirmed, and which metadata-less echo matched which outbound. */
  const confirmedByEcho = new Set<string>();
  const echoMatches = new Map<string, string>();
  let awaitingEcho: { outboundId: string; text: string; since: number } | undefined;
  /** Bumped by anything that should supersede a draft: a customer message, an operator command, a human's echo. */
  let interruptions = 0;
  let drafting = false;
  /** The current draft's `handoff_to_human` call succeeded. */
  let handoffInDraft = false;
  let processed = 0;
  let lastActivityAt = workflowNow();

  // Defaults until the snapshot loads; signals that arrive meanwhile are only queued.
  let conversationId = '';
  let mode: ConversationMode = 'bot_active';
  let modeSince = lastActivityAt;
  let lastCustomerAt: number | undefined;
  let lastHumanAt: number | undefined;
  let settings: AgentSettings | undefined;

  /** When each queued event reached this workflow: a message's quiet window runs from its arrival, not from when it was stored. */
  const arrivedAt = new Map<string, number>();
  setHandler(inboundEventSignal, (event) => {
    if (seen.has(event.dedupeKey)) return;
    seen.add(event.dedupeKey);
    arrivedAt.set(event.dedupeKey, workflowNow());
    if (event.kind === 'echo') {
      if (!noteEcho(event)) interruptions += 1;
    } else if (isCustomerTurn(event)) interruptions += 1;
    queue.push(event);
  });
  setHandler(operatorCommandSignal, (command) => {
    if (seenRequests.has(command.requestId)) return;
    seenRequests.add(command.requestId);
    commands.push(command);
    interruptions += 1;
  });
  setHandler(channelReconnectedSignal, ({ channelId }) => {
    if (channelId.toLowerCase() !== ref.channelId.toLowerCase()) return;
    resumeRequested = true;
  });
  setHandler(conversationStateQuery, () => ({
    mode,
    modeSince,
    lastCustomerAt: lastCustomerAt ?? null,
    lastHumanAt: lastHumanAt ?? null,
    queued: queue.length + commands.length,
    burst: burst.length,
    drafting,
    parkedSends: [
      ...parked.values(),
      ...reauthParked.map((p): ParkedSend => ({ outboundId: p.outboundId, author: p.author, waitingUntil: null, reason: 'reauth_required' })),
    ],
    processed,
    seenKeys: seen.size,
  }));

  /** Runs in the signal handler: an echo may be the confirmation an ambiguous send waits for. True when it is ours. */
  function noteEcho(event: EchoEvent): boolean {
    const ours = outboundIdFromMetadata(event.metadata);
    if (ours) {
      confirmedByEcho.add(ours);
      return true;
    }
    // Metadata lost: the same text to the same customer after we sent it is ours, not a human's.
    if (awaitingEcho && event.text === awaitingEcho.text && event.timestamp >= awaitingEcho.since - 60_000) {
      confirmedByEcho.add(awaitingEcho.outboundId);
      echoMatches.set(event.dedupeKey, awaitingEcho.outboundId);
      return true;
    }
    return false;
  }

  async function changeMode(to: ConversationMode, reason: string, operator?: { id: string; requestId: string }): Promise<void> {
    if (to === 'human_active') burst.length = 0; // the bot stays silent: nothing gathered so far gets a bot answer
    if (mode === to) return;
    // Decided here first: a failing write must not leave the loop re-deciding the same change.
    mode = to;
    modeSince = workflowNow();
    upsertSearchAttributes([{ key: CONVERSATION_STATE, value: mode }]);
    await store.setConversationMode({ ref, mode: to, reason, ...(operator && { operator: operator.id, requestId: operator.requestId }) });
  }

  const snapshot = await store.loadConversationSnapshot({ ref });
  conversationId = snapshot.conversationId;
  mode = snapshot.mode;
  modeSince = snapshot.modeSince;
  lastCustomerAt = snapshot.lastCustomerAt;
  lastHumanAt = snapshot.lastHumanAt;
  settings = snapshot.settings;
  for (const p of snapshot.parked ?? []) {
    reauthParked.push({ outboundId: p.outboundId, author: p.author, text: p.text, round: p.sendRound === null ? 0 : p.sendRound + 1 });
  }
  upsertSearchAttributes([{ key: CONVERSATION_STATE, value: mode }]);

  const handoffEndsAt = () => Math.max(modeSince, lastHumanAt ?? 0) + settings!.handoffIdleMs;
  const quietEndsAt = () => Math.max(...burst.map((b) => b.joinedAt)) + settings!.debounceMs;

  // ---- storing events -------------------------------------------------------------------------

  async function storeEvent(event: InboundEvent): Promise<void> {
    if (isCustomerTurn(event)) {
      const inbound = await store.recordInbound({ ref, event });
      lastCustomerAt = Math.max(lastCustomerAt ?? 0, event.timestamp);
      // Redelivered after an earlier run already answered it, or a human is answering.
      if (inbound.alreadyAnswered || mode === 'human_active') return;
      if ((inbound.turn.kind === 'story_mention' || inbound.turn.kind === 'story_reply') && settings!.storyReplies === 'ignore') return;
      if (burst.some((b) => b.message.messageId === inbound.messageId)) return;
      burst.push({ message: inbound.turn, joinedAt: arrivedAt.get(event.dedupeKey) ?? workflowNow() });
      return;
    }
    if (event.kind === 'echo') {
      const matched = echoMatches.get(event.dedupeKey);
      echoMatches.delete(event.dedupeKey);
      const echo = await store.recordEcho({ ref, event, ...(matched && { matchedOutboundId: matched }) });
      // Not ours: someone answered from Meta's inbox or the Instagram app. Step aside.
      if (!echo.ours) {
        lastHumanAt = Math.max(lastHumanAt ?? 0, event.timestamp);
        await changeMode('human_active', 'inbox_reply');
      }
      return;
    }
    await store.applyConversationEvent({ ref, event });
  }

  async function runCommand(command: OperatorCommand): Promise<void> {
    const operator = { id: command.operator, requestId: command.requestId };
    if (command.kind === 'handoff') {
      await changeMode(command.to, command.reason ? `operator: ${command.reason}` : 'operator', operator);
      return;
    }
    // An operator writing to the customer takes the conversation over.
    await changeMode('human_active', 'operator_message', operator);
    lastHumanAt = workflowNow();
    await store.touchHumanActivity({ tenantId: ref.tenantId, conversationId, at: lastHumanAt });
    await deliver({ author: 'human_agent', text: command.text, clientRef: command.requestId });
  }

  // ---- drafting -------------------------------------------------------------------------------

  async function runTool(call: ToolCall): Promise<ToolResult> {
    const args = { ref, conversationId, call };
    try {
      switch (call.name) {
        case 'search_products':
          return await searchTool.searchProductsTool(args);
        case 'get_business_info':
          return await infoTool.getBusinessInfoTool(args);
        case 'handoff_to_human': {
          const result = await handoffTool.handoffToHumanTool(args);
          // Applied at once: even if this draft is superseded, the customer asked for a person.
          if (result.ok) {
            handoffInDraft = true;
            await changeMode('human_active', 'tool:handoff_to_human');
          }
          return result;
        }
        default:
          return { callId: call.id, name: call.name, ok: false, content: { error: `unknown tool ${String(call.name)}` } };
      }
    } catch (err) {
      if (!gaveUp(err)) throw err;
      return { callId: call.id, name: call.name, ok: false, content: { error: 'the tool is unavailable right now' } };
    }
  }

  type Draft = { kind: 'done'; outcome: TurnOutcome } | { kind: 'failed' } | { kind: 'superseded' } | { kind: 'deadline' };

  /**
   * Drafts one answer to the burst. A newer customer message, an operator command or a human's
   * echo cancels the draft (the engine activity included): the loop handles it and decides again.
   */
  async function draftAnswer(): Promise<Draft> {
    const messages = burst.map((b) => b.message);
    const seenInterruptions = interruptions;
    handoffInDraft = false;
    const draftScope = new CancellationScope();
    const watchScope = new CancellationScope();
    const draft = draftScope
      .run(() =>
        runTurn(messages, {
          step: (req) => engine.planReplyStep({ ...req, ref, tenantId: ref.tenantId, conversationId }),
          runTool,
        }),
      )
      .then(
        (outcome): Draft => ({ kind: 'done', outcome }),
        (err): Draft => {
          if (isCancellation(err)) return { kind: 'superseded' };
          if (!gaveUp(err)) throw err;
          log.warn('reply generation failed; sending the fallback', { failure: err.name });
          return { kind: 'failed' };
        },
      );
    const watch = watchScope
      .run(() => condition(() => interruptions > seenInterruptions, settings!.turnDeadlineMs))
      .then(
        (newMessage): Draft => (newMessage ? { kind: 'superseded' } : { kind: 'deadline' }),
        (): Draft => ({ kind: 'superseded' }), // cancelled below once the draft settled; never raced
      );
    drafting = true;
    try {
      const first = await Promise.race([draft.then((d) => ({ from: 'draft' as const, d })), watch.then((d) => ({ from: 'watch' as const, d }))]);
      if (first.from === 'draft') watchScope.cancel();
      else draftScope.cancel();
      return first.d;
    } finally {
      drafting = false;
    }
  }

  async function answerBurst(): Promise<void> {
    const covered = [...burst];
    const draft = await draftAnswer();
    if (draft.kind === 'superseded') {
      log.info('draft superseded by a newer message');
      // The handoff already happened (and cleared the burst): the customer still hears that a person is coming.
      if (handoffInDraft) {
        const newest = covered[covered.length - 1]!.message;
        await deliver({ author: 'bot', text: HANDOFF_REPLY, inReplyTo: newest.messageId, covers: covered.map((b) => b.message.messageId) });
      }
      return; // otherwise the burst stays; the next quiet window answers all of it
    }
    burst.splice(0, covered.length);
    const handedOffByTool = draft.kind === 'done' && draft.outcome.handoff;
    // A person took over while the draft was written (inbox reply, operator): the bot stays silent.
    if (mode === 'human_active' && !handedOffByTool) return;
    let text: string;
    if (draft.kind === 'done') text = draft.outcome.text || (draft.outcome.handoff ? HANDOFF_REPLY : FALLBACK_REPLY);
    else {
      if (draft.kind === 'deadline') log.warn('reply missed the turn deadline; sending the fallback', { deadlineMs: settings!.turnDeadlineMs });
      text = FALLBACK_REPLY;
    }
    const newest = covered[covered.length - 1]!.message;
    await deliver({ author: 'bot', text, inReplyTo: newest.messageId, covers: covered.map((b) => b.message.messageId) });
  }

  // ---- sending --------------------------------------------------------------------------------

  async function park(outboundId: string, author: Delivery['author'], waitMs: number, reason: ParkedSend['reason']): Promise<void> {
    parked.set(outboundId, { outboundId, author, waitingUntil: workflowNow() + waitMs, reason });
    try {
      await sleep(Math.max(1, waitMs));
    } finally {
      parked.delete(outboundId);
    }
  }

  async function deliver(d: Delivery): Promise<void> {
    const outbound = await store.createOutbound({ ref, conversationId, ...d });
    if (outbound.status !== 'pending') return;
    const send: OutboundSend = { outboundId: outbound.id, author: d.author, text: d.text, round: 0 };
    if (reauthParked.length === 0) {
      await sendRow(send, false);
      return;
    }
    // Replies parked for reauthorization go first: a newer one waits behind them, untried.
    const policy = decideSendPolicy(d.author, workflowNow(), lastCustomerAt);
    if (!policy.send) {
      await store.markOutboundOutsideWindow({ tenantId: ref.tenantId, outboundId: outbound.id, reason: policy.reason });
      return;
    }
    await parkForReauth(send, { type: 'ChannelReauthRequired', details: { errorClass: 'reauth_required', reauth: true } }, 'back');
  }

  /**
   * Sends one outbound row through the budget, the messaging window and the Send API's outcomes.
   * `resumed`: a reply parked while the channel needed reauthorization, sent after the reconnect.
   */
  async function sendRow(send: OutboundSend, resumed: boolean): Promise<SendOutcome> {
    const { outboundId, author } = send;
    let ambiguous = send.round;
    let throttled = 0;
    // Set before the first call, not after an ambiguous failure: the echo can overtake the Send
    // API's answer (or the timeout that makes the send ambiguous), and it must not read as a human.
    awaitingEcho = { outboundId, text: send.text, since: workflowNow() };
    try {
      for (;;) {
        // Decided at each attempt, not once: a send parked for long may have outlived the window.
        let policy = decideSendPolicy(author, workflowNow(), lastCustomerAt);
        // The channel's budget is shared by every conversation on it: overflow waits here, in order.
        while (policy.send) {
          const slot = await budget.reserveSendSlot({ tenantId: ref.tenantId, channelId: ref.channelId });
          if (slot.granted) break;
          await park(outboundId, author, slot.waitMs, slot.reason);
          policy = decideSendPolicy(author, workflowNow(), lastCustomerAt);
        }
        if (!policy.send) {
          log.info('message not sent: outside the messaging window', { author, parkedForReauth: resumed });
          const reason = resumed ? `parked while the channel needed reauthorization, and the messaging window closed meanwhile: ${policy.reason}` : policy.reason;
          await store.markOutboundOutsideWindow({ tenantId: ref.tenantId, outboundId, reason });
          return 'settled';
        }
        try {
          await sender.sendOutbound({
            tenantId: ref.tenantId,
            channelId: ref.channelId,
            outboundId,
            customerId: ref.customerId,
            messagingType: policy.messagingType,
            ...(policy.messagingType === 'MESSAGE_TAG' && { tag: policy.tag }),
            round: ambiguous,
          });
          return 'sent';
        } catch (err) {
          const failure = activityFailure(err);
          if (!failure) throw err;
          // The channel needs reauthorization (Meta said so, or it already was): park, don't fail.
          if (failure.details.reauth) {
            return (await parkForReauth({ ...send, round: ambiguous }, failure, 'front')) ? 'parked' : 'settled';
          }
          if (failure.type === 'GraphRateLimited' && ++throttled < MAX_RATE_LIMITED_ROUNDS) {
            await park(outboundId, author, failure.details.retryAfterMs ?? 10_000, 'rate_limited');
            continue;
          }
          if (failure.type === 'AmbiguousSend') {
            // The request may have reached Meta: wait for its echo instead of sending a second copy.
            ambiguous += 1;
            parked.set(outboundId, { outboundId, author, waitingUntil: workflowNow() + ECHO_WAIT_MS, reason: 'awaiting_echo' });
            const echoed = await condition(() => confirmedByEcho.has(outboundId), ECHO_WAIT_MS);
            parked.delete(outboundId);
            if (echoed) return 'sent'; // the echo, queued, marks the row sent when it is stored
            if (ambiguous < MAX_AMBIGUOUS_ATTEMPTS) continue;
          }
          await recordSendFailure(outboundId, failure);
          return 'settled';
        }
      }
    } finally {
      awaitingEcho = undefined;
    }
  }

  /**
   * Parks a reply until the channel is reauthorized. When Meta said the token is unusable, the
   * channel is marked first (idempotent: one status change, one audit event, one episode).
   * `front`: a resumed reply that met the failure again goes back before the younger ones.
   * False when the row had moved on meanwhile (an echo confirmed it): nothing is parked.
   */
  async function parkForReauth(send: OutboundSend, failure: { type: string; details: SendFailureDetails }, where: 'front' | 'back'): Promise<boolean> {
    if (failure.type !== 'ChannelReauthRequired') {
      await store.markChannelReauthRequired({ tenantId: ref.tenantId, channelId: ref.channelId, reason: `${failure.type} (code ${failure.details.code ?? 'n/a'})` });
    }
    const result = await store.markOutboundParked({ tenantId: ref.tenantId, outboundId: send.outboundId, error: sendErrorRecord(failure, 'reauth_required') });
    if (!result.parked) return false;
    if (where === 'front') reauthParked.unshift(send);
    else reauthParked.push(send);
    log.warn('reply parked until the channel is reauthorized', { type: failure.type, code: failure.details.code, parked: reauthParked.length });
    // Reconnected between the failed send and the park: the reconnect may have listed the parked
    // conversations before this row was parked, so this run resumes on its own.
    if (result.channelStatus === 'active') resumeRequested = true;
    return true;
  }

  /** The channel was reconnected: the parked replies go out in order, each through the whole send path. */
  async function deliverParked(): Promise<void> {
    resumeRequested = false;
    while (reauthParked.length > 0) {
      const next = reauthParked.shift()!;
      const row = await store.unparkOutbound({ tenantId: ref.tenantId, outboundId: next.outboundId });
      // Not pending: an echo confirmed an earlier ambiguous attempt, or the row is gone.
      if (row.status !== 'pending') continue;
      const round = row.sendRound === null ? next.round : Math.max(next.round, row.sendRound + 1);
      // Parked again (the new token is already unusable): the rest stay parked behind it, in order.
      if ((await sendRow({ ...next, round }, true)) === 'parked') return;
    }
  }

  function sendErrorRecord(failure: { type: string; details: SendFailureDetails }, reason: string) {
    return {
      type: failure.type,
      reason,
      ...(failure.details.code !== undefined && { code: failure.details.code }),
      ...(failure.details.subcode !== undefined && { subcode: failure.details.subcode }),
      ...(failure.details.fbtraceId !== undefined && { fbtraceId: failure.details.fbtraceId }),
    };
  }

  async function recordSendFailure(outboundId: string, failure: { type: string; details: SendFailureDetails }): Promise<void> {
    log.warn('message not sent', { type: failure.type, errorClass: failure.details.errorClass, code: failure.details.code });
    await store.markOutboundFailed({ tenantId: ref.tenantId, outboundId, error: sendErrorRecord(failure, failure.details.errorClass) });
  }

  async function returnToBotIfIdle(): Promise<void> {
    if (mode === 'human_active' && workflowNow() >= handoffEndsAt()) {
      await guarded('returning to the bot', () => changeMode('bot_active', 'human_idle'));
    }
  }

  /** Activity failures (non-retryable, or out of attempts) must not end the conversation. */
  async function guarded(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (!gaveUp(err)) throw err;
      log.error(`${what} failed`, { failure: err instanceof ActivityFailure ? err.cause?.name : err.name });
    }
  }

  // ---- the loop -------------------------------------------------------------------------------

  for (;;) {
    const now = workflowNow();
    const deadlines = [lastActivityAt + input.idleTimeoutMs];
    if (mode === 'bot_active' && burst.length > 0) deadlines.push(quietEndsAt());
    if (mode === 'human_active') deadlines.push(handoffEndsAt());
    const wakeAt = Math.min(...deadlines);
    if (wakeAt > now) await condition(() => queue.length > 0 || commands.length > 0 || resumeRequested, wakeAt - now);
    // Before the queue too: the run's idle timeout can end it before a handoff expires, and the
    // message that starts the next run must not be left unanswered by a handoff already over.
    await returnToBotIfIdle();

    // Meta does not guarantee order under redelivery; its timestamp does (stable sort keeps arrival order on ties).
    while (queue.length > 0 || commands.length > 0) {
      lastActivityAt = workflowNow();
      if (queue.length > 0) {
        queue.sort((a, b) => a.timestamp - b.timestamp);
        const event = queue.shift()!;
        await guarded(`storing ${event.kind}`, () => storeEvent(event));
        arrivedAt.delete(event.dedupeKey);
        processed += 1;
      } else {
        const command = commands.shift()!;
        await guarded(`operator ${command.kind}`, () => runCommand(command));
      }
    }

    await returnToBotIfIdle();
    // Before a new answer: the replies parked for reauthorization are older and go out first.
    if (resumeRequested) {
      await guarded('delivering parked replies', deliverParked);
      lastActivityAt = workflowNow();
    }
    if (mode === 'bot_active' && burst.length > 0 && workflowNow() >= quietEndsAt()) {
      await guarded('answering', answerBurst);
      lastActivityAt = workflowNow();
    }

    // Parked replies do not keep a run open: their rows hold them, and the reconnect's
    // signal-with-start (or the next customer message) starts a run that reloads them.
    const idle = queue.length === 0 && commands.length === 0 && burst.length === 0 && !resumeRequested;
    if (idle && workflowNow() >= lastActivityAt + input.idleTimeoutMs) {
      await condition(allHandlersFinished);
      if (queue.length === 0 && commands.length === 0 && !resumeRequested) return { processed };
    }
    if (workflowInfo().continueAsNewSuggested && !resumeRequested) {
      await condition(allHandlersFinished);
      // A reconnect signalled meanwhile is handled by this run first (the input does not carry it).
      if (resumeRequested) continue;
      await continueAsNew<typeof conversationWorkflow>({
        ...input,
        seenKeys: seen.toArray(),
        seenRequests: seenRequests.toArray(),
        pending: queue,
        commands,
        burst,
      });
    }
  }
}
