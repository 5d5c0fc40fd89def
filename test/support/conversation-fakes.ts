import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Worker, type NativeConnection } from '@temporalio/worker';
import type { Activities } from '../../activities';
import type { ChannelRoute } from '../../src/db/channels';
import { toTurnMessage } from '../../src/db/conversations';
import { dispatchOperatorCommand, dispatchToConversation } from '../../src/gateway/conversation-dispatch';
import { outboundIdFromMetadata } from '../../src/shared/outbound';
import type {
  AgentSettings,
  ConversationMode,
  ConversationRef,
  EchoEvent,
  InboundEvent,
  MessageEvent,
  Platform,
  SendFailureDetails,
  SendOutboundInput,
} from '../../src/shared/types';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { conversationStateQuery, type ConversationInput, type ConversationState, type OperatorCommand } from '../../workflows/definitions';

/**
 * Recording fakes of every activity the conversation workflow calls, for the workflow tests
 * (dev server and time-skipping server alike). They keep just enough state to answer like the
 * real ones: outbound rows keyed by `inReplyTo`/`clientRef`, the conversation's mode and
 * customer/human times, which echoes are ours. Nothing here mocks Temporal: the real server runs
 * the real workflow bundle; only the Postgres / Graph / engine I/O is replaced.
 */

export const ACTIVITY_NAMES = [
  'loadConversationSnapshot',
  'recordInbound',
  'recordEcho',
  'applyConversationEvent',
  'createOutbound',
  'markOutboundFailed',
  'markOutboundOutsideWindow',
  'markOutboundParked',
  'unparkOutbound',
  'setConversationMode',
  'touchHumanActivity',
  'markChannelReauthRequired',
  'planReplyStep',
  'searchProductsTool',
  'getBusinessInfoTool',
  'handoffToHumanTool',
  'reserveSendSlot',
  'sendOutbound',
] as const;

export type ActivityName = (typeof ACTIVITY_NAMES)[number];
/** The conversation workflow's activities, with the real signatures. */
export type ConversationActivities = Pick<Activities, ActivityName>;
export type Input<K extends ActivityName> = Parameters<ConversationActivities[K]>[0];
export type Output<K extends ActivityName> = Awaited<ReturnType<ConversationActivities[K]>>;
export type Calls = { [K in ActivityName]: Array<Input<K>> };
/** A test's version of one activity; `next` is the fake's default behaviour, `fakes` what was recorded so far (this call included). */
export type Override<K extends ActivityName> = (input: Input<K>, next: (input: Input<K>) => Promise<Output<K>>, fakes: ConversationFakes) => Promise<Output<K>>;
export type Overrides = { [K in ActivityName]?: Override<K> };

export const TENANT = '6f1c2a8e-0d4b-4f7a-9c3e-1b2d3e4f5a60';
export const CHANNEL = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
export const PAGE = '104829376511820';
export const CONVERSATION_ID = 'conv-1';

/** Test-friendly agent settings: a short quiet window keeps the dev-server tests fast. */
export const TEST_SETTINGS: AgentSettings = {
  engine: 'catalog',
  debounceMs: 200,
  turnDeadlineMs: 8000,
  storyReplies: 'answer',
  handoffIdleMs: 30 * 60_000,
  language: 'en',
};

export interface OutboundRecord {
  id: string;
  author: 'bot' | 'human_agent';
  text: string;
  inReplyTo?: string;
  covers?: string[];
  clientRef?: string;
  status: 'pending' | 'parked' | 'sent' | 'failed' | 'outside_window';
  mid: string | null;
}

export interface FakeOptions {
  settings?: Partial<AgentSettings>;
  /** The conversation as the database knows it when the run starts. */
  initial?: { mode?: ConversationMode; modeSince?: number; lastCustomerAt?: number; lastHumanAt?: number; channelStatus?: ConversationFakes['db']['channelStatus'] };
  overrides?: Overrides;
}

export interface ConversationFakes {
  activities: ConversationActivities;
  calls: Calls;
  /** Every call in order, as `name:key` (the event's dedupe key, the outbound id, the mode…). */
  log: string[];
  /** Outbound rows by id, in creation order. */
  outbound: Map<string, OutboundRecord>;
  /** Sends the fake Graph API accepted (a send that threw is not here). */
  sent: Array<{ outboundId: string; messageId: string; messagingType: SendOutboundInput['messagingType']; tag?: 'HUMAN_AGENT' }>;
  /** planReplyStep calls that saw their cancellation (heartbeat-driven, see `heartbeatUntil`). */
  cancelledSteps: number;
  settings: AgentSettings;
  /** The conversation's row as the fake database keeps it; each run's snapshot reads it (tests may arrange it). */
  db: { mode: ConversationMode; modeSince: number; lastCustomerAt?: number; lastHumanAt?: number; channelStatus: 'active' | 'reauth_required' | 'disabled' };
  /** sendOutbound calls so far for one outbound row. */
  sendAttempts(outboundId: string): number;
}

/** The key a log line carries for an activity input. */
function keyOf(name: ActivityName, input: Record<string, unknown>): string {
  const event = input.event as InboundEvent | undefined;
  if (event) return event.dedupeKey;
  if (name === 'setConversationMode') return String(input.mode);
  if (name === 'planReplyStep') return (input.messages as Array<{ messageId: string }>).map((m) => m.messageId).join('+');
  if (name.endsWith('Tool')) return String((input.call as { name: string }).name);
  return String(input.outboundId ?? input.clientRef ?? input.inReplyTo ?? input.channelId ?? input.conversationId ?? '');
}

export function createConversationFakes(options: FakeOptions = {}): ConversationFakes {
  const settings: AgentSettings = { ...TEST_SETTINGS, ...options.settings };
  const db: ConversationFakes['db'] = { mode: 'bot_active', modeSince: 0, channelStatus: 'active', ...options.initial };
  const calls = Object.fromEntries(ACTIVITY_NAMES.map((n) => [n, []])) as unknown as Calls;
  const log: string[] = [];
  const outbound = new Map<string, OutboundRecord>();
  const sent: ConversationFakes['sent'] = [];
  const inbound = new Map<string, string>();
  const sentMids = new Set<string>();

  const defaults: ConversationActivities = {
    async loadConversationSnapshot() {
      return {
        conversationId: CONVERSATION_ID,
        mode: db.mode,
        modeSince: db.modeSince,
        ...(db.lastCustomerAt !== undefined && { lastCustomerAt: db.lastCustomerAt }),
        ...(db.lastHumanAt !== undefined && { lastHumanAt: db.lastHumanAt }),
        settings,
        parked: [...outbound.values()].filter((o) => o.status === 'parked').map((o, i) => ({ outboundId: o.id, author: o.author, text: o.text, createdAt: i, sendRound: null })),
      };
    },
    async recordInbound({ event }) {
      const known = inbound.get(event.dedupeKey);
      const messageId = known ?? `msg:${event.dedupeKey}`;
      inbound.set(event.dedupeKey, messageId);
      db.lastCustomerAt = Math.max(db.lastCustomerAt ?? 0, event.timestamp);
      const alreadyAnswered = [...outbound.values()].some((o) => o.author === 'bot' && o.status !== 'pending' && (o.inReplyTo === messageId || o.covers?.includes(messageId)));
      return { messageId, conversationId: CONVERSATION_ID, inserted: !known, alreadyAnswered, turn: toTurnMessage(messageId, event) };
    },
    async recordEcho({ event, matchedOutboundId }) {
      const id = outboundIdFromMetadata(event.metadata) ?? matchedOutboundId;
      const row = id ? outbound.get(id) : undefined;
      if (row) {
        if (row.status === 'pending' || row.status === 'failed') row.status = 'sent';
        row.mid ??= event.mid;
        return { ours: true, outboundId: row.id };
      }
      if (sentMids.has(event.mid)) return { ours: true };
      db.lastHumanAt = Math.max(db.lastHumanAt ?? 0, event.timestamp);
      return { ours: false };
    },
    async applyConversationEvent() {
      return { effect: 'stored' };
    },
    async createOutbound({ author, text, inReplyTo, covers, clientRef }) {
      // Keyed like the table: a retried activity or a replay gets the same row back.
      const existing = [...outbound.values()].find((o) => (inReplyTo !== undefined && o.inReplyTo === inReplyTo) || (inReplyTo === undefined && clientRef !== undefined && o.clientRef === clientRef));
      if (existing) return { id: existing.id, status: existing.status, mid: existing.mid };
      const row: OutboundRecord = {
        id: randomUUID(),
        author,
        text,
        ...(inReplyTo !== undefined && { inReplyTo }),
        ...(covers !== undefined && { covers }),
        ...(clientRef !== undefined && { clientRef }),
        status: 'pending',
        mid: null,
      };
      outbound.set(row.id, row);
      return { id: row.id, status: row.status, mid: row.mid };
    },
    async markOutboundFailed({ outboundId }) {
      const row = outbound.get(outboundId);
      if (row && row.status === 'pending') row.status = 'failed';
    },
    async markOutboundOutsideWindow({ outboundId }) {
      const row = outbound.get(outboundId);
      if (row && row.status === 'pending') row.status = 'outside_window';
    },
    async markOutboundParked({ outboundId }) {
      const row = outbound.get(outboundId);
      if (!row || (row.status !== 'pending' && row.status !== 'parked')) return { parked: false, channelStatus: null };
      row.status = 'parked';
      return { parked: true, channelStatus: db.channelStatus };
    },
    async unparkOutbound({ outboundId }) {
      const row = outbound.get(outboundId);
      if (row && row.status === 'parked') row.status = 'pending';
      return { status: row?.status ?? null, sendRound: null };
    },
    async setConversationMode({ mode }) {
      const changed = db.mode !== mode;
      if (changed) {
        db.mode = mode;
        db.modeSince = Date.now();
      }
      return { changed };
    },
    async touchHumanActivity({ at }) {
      db.lastHumanAt = Math.max(db.lastHumanAt ?? 0, at);
    },
    async markChannelReauthRequired() {
      const changed = db.channelStatus === 'active';
      if (changed) db.channelStatus = 'reauth_required';
      return { changed };
    },
    async planReplyStep({ messages }) {
      return { kind: 'reply', text: `answer to ${messages.map((m) => m.text ?? m.kind).join(' + ')}` };
    },
    async searchProductsTool({ call }) {
      return { callId: call.id, name: call.name, ok: true, content: { products: [] } };
    },
    async getBusinessInfoTool({ call }) {
      return { callId: call.id, name: call.name, ok: true, content: { hours: 'Mon–Fri 9–18' } };
    },
    async handoffToHumanTool({ call }) {
      return { callId: call.id, name: call.name, ok: true, content: { handedOff: true } };
    },
    async reserveSendSlot() {
      return { granted: true };
    },
    async sendOutbound({ outboundId, messagingType, tag }) {
      const row = outbound.get(outboundId);
      if (!row) throw ApplicationFailure.nonRetryable(`outbound message ${outboundId} does not exist`, 'OutboundMissing');
      // Like the real activity: no Graph call on a channel that needs reauthorization.
      if (db.channelStatus === 'reauth_required') throw graphFailures.channelReauthRequired();
      const messageId = `m_${outboundId}`;
      row.status = 'sent';
      row.mid = messageId;
      sentMids.add(messageId);
      sent.push({ outboundId, messageId, messagingType, ...(tag && { tag }) });
      return { messageId };
    },
  };

  const fakes: ConversationFakes = {
    activities: {} as ConversationActivities,
    calls,
    log,
    outbound,
    sent,
    cancelledSteps: 0,
    settings,
    db,
    sendAttempts: (outboundId) => calls.sendOutbound.filter((i) => i.outboundId === outboundId).length,
  };
  const acts = fakes.activities as unknown as Record<ActivityName, (input: unknown) => Promise<unknown>>;
  for (const name of ACTIVITY_NAMES) {
    const next = defaults[name] as (input: unknown) => Promise<unknown>;
    const override = options.overrides?.[name] as ((input: unknown, next: (input: unknown) => Promise<unknown>, fakes: ConversationFakes) => Promise<unknown>) | undefined;
    acts[name] = async (input: unknown) => {
      (calls[name] as unknown[]).push(input);
      log.push(`${name}:${keyOf(name, input as Record<string, unknown>)}`);
      return override ? override(input, next, fakes) : next(input);
    };
  }
  return fakes;
}

/**
 * Blocks an engine step the way a slow LLM call does: heartbeating until `until` settles. A
 * cancellation (the draft was superseded) reaches the activity through a heartbeat response;
 * `Context.sleep` then rejects with CancelledFailure, which is counted and rethrown.
 */
export async function heartbeatUntil(fakes: ConversationFakes, until: Promise<void>): Promise<void> {
  const ctx = Context.current();
  let done = false;
  void until.then(() => (done = true));
  try {
    while (!done) {
      ctx.heartbeat();
      await Promise.race([until, ctx.sleep(50)]);
    }
  } catch (err) {
    fakes.cancelledSteps += 1;
    throw err;
  }
}

/** Failures shaped like `activities/graph.ts` raises them. */
export const graphFailures = {
  ambiguous: () => ApplicationFailure.create({ message: 'socket hang up after the request was written', type: 'AmbiguousSend', nonRetryable: true, details: [{ errorClass: 'ambiguous', reauth: false } satisfies SendFailureDetails] }),
  rateLimited: (retryAfterMs: number) =>
    ApplicationFailure.create({
      message: 'Graph API error: HTTP 400, code 613',
      type: 'GraphRateLimited',
      nonRetryable: true,
      details: [{ errorClass: 'rate_limited', reauth: false, code: 613, retryAfterMs } satisfies SendFailureDetails],
    }),
  channelReauthRequired: () =>
    ApplicationFailure.create({ message: 'the channel needs reauthorization', type: 'ChannelReauthRequired', nonRetryable: true, details: [{ errorClass: 'reauth_required', reauth: true } satisfies SendFailureDetails] }),
  authExpired: () =>
    ApplicationFailure.create({
      message: 'Graph API error: HTTP 400, code 190/463',
      type: 'GraphAuthExpired',
      nonRetryable: true,
      details: [{ errorClass: 'auth', reauth: true, code: 190, subcode: 463 } satisfies SendFailureDetails],
    }),
};

// ---- gates and polling ------------------------------------------------------------------------

/** Gates still closed when a test ends are opened, so a failed assertion cannot hang the worker's shutdown. */
const openGates = new Set<() => void>();

export function gate(): { promise: Promise<void>; release: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  const release = () => {
    openGates.delete(release);
    resolve();
  };
  openGates.add(release);
  return { promise, release };
}

export async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---- conversations ----------------------------------------------------------------------------

export interface TestConversation {
  workflowId: string;
  taskQueue: string;
  input: ConversationInput;
  ref: ConversationRef;
  channel: ChannelRoute;
  /** The gateway's way in: signalWithStart with the TenantId / ChannelId / Platform search attributes. */
  send(event: InboundEvent): Promise<WorkflowHandle>;
  command(command: OperatorCommand): Promise<WorkflowHandle>;
  handle(): WorkflowHandle;
  state(): Promise<ConversationState>;
}

let customerSeq = 0;

/** A fresh conversation (random numeric customer id, like a PSID) on a worker's task queue. */
export function conversation(client: Client, taskQueue: string, opts: { idleTimeoutMs?: number; platform?: Platform } = {}): TestConversation {
  const customerId = `${Date.now()}${String(customerSeq++).padStart(3, '0')}${Math.floor(Math.random() * 1000)}`;
  const platform = opts.platform ?? 'messenger';
  const idleTimeoutMs = opts.idleTimeoutMs ?? 10 * 60_000;
  const channel: ChannelRoute = { id: CHANNEL, tenantId: TENANT, platform, status: 'active' };
  const workflowId = conversationWorkflowId(TENANT, CHANNEL, customerId);
  const dispatch = { taskQueue, idleTimeoutMs };
  const handle = () => client.workflow.getHandle(workflowId);
  return {
    workflowId,
    taskQueue,
    input: { tenantId: TENANT, channelId: CHANNEL, platform, customerId, idleTimeoutMs },
    ref: { tenantId: TENANT, channelId: CHANNEL, customerId },
    channel,
    async send(event) {
      // The workflow does not check the event's customer; fixtures keep their own ids.
      await dispatchToConversation(client, dispatch, channel, { ...event, customerId } as InboundEvent);
      return handle();
    },
    async command(command) {
      await dispatchOperatorCommand(client, dispatch, channel, customerId, command);
      return handle();
    },
    handle,
    state: () => handle().query(conversationStateQuery),
  };
}

export function textMessage(mid: string, timestamp: number, text = `text ${mid}`): MessageEvent {
  return { kind: 'message', platform: 'messenger', accountId: PAGE, customerId: '0', timestamp, dedupeKey: `mid:${mid}`, mid, text, attachments: [] };
}

export function echo(mid: string, timestamp: number, text: string, metadata?: string): EchoEvent {
  return { kind: 'echo', platform: 'messenger', accountId: PAGE, customerId: '0', timestamp, dedupeKey: `mid:${mid}`, mid, text, attachments: [], ...(metadata && { metadata }) };
}

/** The messageId the fake recordInbound gives a message with this mid. */
export const messageIdOf = (mid: string) => `msg:mid:${mid}`;

// ---- workers ----------------------------------------------------------------------------------

/**
 * Runs `fn` with a worker for the conversation workflow (the prebuilt bundle) and the fakes on a
 * fresh task queue; workflows `fn` tracks are terminated afterwards and open gates released.
 */
export async function withConversationWorker(
  env: { nativeConnection: NativeConnection; bundleCode: string },
  activities: ConversationActivities,
  fn: (taskQueue: string, track: (c: TestConversation | WorkflowHandle) => void) => Promise<void>,
): Promise<void> {
  const taskQueue = `conversation-test-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { code: env.bundleCode },
    activities,
    // Heartbeats reach the server (and a cancellation the activity) within ~100 ms, not 80 % of the heartbeat timeout.
    maxHeartbeatThrottleInterval: '100 milliseconds',
    defaultHeartbeatThrottleInterval: '100 milliseconds',
  });
  const tracked: Array<TestConversation | WorkflowHandle> = [];
  await worker.runUntil(async () => {
    try {
      await fn(taskQueue, (c) => tracked.push(c));
    } finally {
      for (const release of [...openGates]) release();
      for (const c of tracked) {
        const h = 'handle' in c && typeof c.handle === 'function' ? c.handle() : (c as WorkflowHandle);
        await h.terminate('test finished').catch(() => undefined);
      }
    }
  });
}
