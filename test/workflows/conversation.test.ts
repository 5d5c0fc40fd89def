import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Context } from '@temporalio/activity';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import type { InboundEvent, MessageEvent } from '../../src/shared/types';
import { installQuietRuntime } from '../support/stack';
import { conversationStateQuery, FALLBACK_REPLY, inboundEventSignal, type ConversationInput, type ConversationState } from '../../workflows/definitions';

/**
 * Decisions of the conversation workflow against the real dev server and the real workflow
 * bundle, with recording fakes in place of the Postgres / Graph activities.
 */

/** The activities the conversation workflow calls. */
type Acts = Omit<Activities, 'rewrapDataKeysBatch' | 'rotateDataKeysBatch' | 'reencryptSecretsBatch' | 'destroyUnusedDataKeys' | 'recordAuditEvent' | 'purgeExpiredAuditEpochs' | 'verifyAuditChains'>;
type ActName = keyof Acts;
type Calls = { [K in ActName]: Array<Parameters<Acts[K]>[0]> };

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through jest's globalSetup`);
  return v;
}

let connection: Connection;
let client: Client;
let nativeConnection: NativeConnection;
let bundleCode: string;

beforeAll(async () => {
  installQuietRuntime();
  const address = required('TEST_TEMPORAL_ADDRESS');
  bundleCode = readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8');
  connection = await Connection.connect({ address });
  client = new Client({ connection });
  nativeConnection = await NativeConnection.connect({ address });
});

afterAll(async () => {
  await nativeConnection?.close();
  await connection?.close();
});

/** Recording fakes with the same names and signatures as the real activities; `behaviour` overrides one. */
function makeFakes(behaviour: Partial<Acts> = {}) {
  const calls: Calls = {
    recordInbound: [],
    recordEcho: [],
    recordConversationEvent: [],
    generateReply: [],
    createReply: [],
    markReplyFailed: [],
    markChannelReauthRequired: [],
    sendReply: [],
  };
  /** Every call in order, as `name:key`. */
  const log: string[] = [];
  const defaults: Acts = {
    async recordInbound({ event }) {
      return { messageId: `msg-${event.dedupeKey}`, conversationId: 'conv-1', inserted: true, alreadyAnswered: false };
    },
    async recordEcho() {
      return { ours: false };
    },
    async recordConversationEvent() {
      return { inserted: true };
    },
    async generateReply({ event }) {
      return { text: `reply to ${event.dedupeKey}` };
    },
    async createReply({ inReplyTo }) {
      return { id: `out-${inReplyTo}`, status: 'pending', mid: null };
    },
    async markReplyFailed() {
      return undefined;
    },
    async markChannelReauthRequired() {
      return { changed: true };
    },
    async sendReply({ outboundId }) {
      return { messageId: `m_${outboundId}` };
    },
  };
  const keyOf = (input: Record<string, unknown>): string => {
    const event = input.event as InboundEvent | undefined;
    return String(event?.dedupeKey ?? input.outboundId ?? input.inReplyTo ?? input.channelId ?? '');
  };
  const acts = {} as Record<ActName, (input: never) => Promise<unknown>>;
  for (const name of Object.keys(defaults) as ActName[]) {
    const impl = (behaviour[name] ?? defaults[name]) as (input: unknown) => Promise<unknown>;
    acts[name] = async (input: never) => {
      (calls[name] as unknown[]).push(input);
      log.push(`${name}:${keyOf(input as Record<string, unknown>)}`);
      return impl(input);
    };
  }
  return { acts: acts as unknown as Acts, calls, log };
}

/** Gates still closed when a test ends are opened, so a failed assertion cannot leave an activity hanging the worker's shutdown. */
const openGates = new Set<() => void>();

function gate(): { promise: Promise<void>; release: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  const release = () => {
    openGates.delete(release);
    resolve();
  };
  openGates.add(release);
  return { promise, release };
}

/** Runs `fn` with a worker on a fresh task queue; open workflows are terminated afterwards. */
async function withWorker(acts: Acts, fn: (taskQueue: string, track: (h: WorkflowHandle) => void) => Promise<void>): Promise<void> {
  const taskQueue = `wf-test-${randomUUID()}`;
  const worker = await Worker.create({ connection: nativeConnection, taskQueue, workflowBundle: { code: bundleCode }, activities: acts });
  const handles: WorkflowHandle[] = [];
  await worker.runUntil(async () => {
    try {
      await fn(taskQueue, (h) => handles.push(h));
    } finally {
      for (const release of [...openGates]) release();
      for (const h of handles) await h.terminate('test finished').catch(() => undefined);
    }
  });
}

async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
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
    await new Promise((r) => setTimeout(r, 50));
  }
}

const TENANT = 'tenant-1';
const CHANNEL = 'channel-1';
const PAGE = '104829376511820';

function conversation(idleTimeoutMs = 60_000): { workflowId: string; input: ConversationInput } {
  const customerId = `cust-${randomUUID().slice(0, 8)}`;
  return {
    workflowId: `conversation/${TENANT}/${CHANNEL}/${customerId}`,
    input: { tenantId: TENANT, channelId: CHANNEL, platform: 'messenger', customerId, idleTimeoutMs },
  };
}

function message(input: ConversationInput, mid: string, timestamp: number, text = `text ${mid}`): MessageEvent {
  return { kind: 'message', platform: 'messenger', accountId: PAGE, customerId: input.customerId, timestamp, dedupeKey: mid, mid, text, attachments: [] };
}

async function signal(taskQueue: string, workflowId: string, input: ConversationInput, event: InboundEvent) {
  return client.workflow.signalWithStart('conversationWorkflow', {
    workflowId,
    taskQueue,
    args: [input],
    signal: inboundEventSignal,
    signalArgs: [event],
  });
}

async function state(h: WorkflowHandle): Promise<ConversationState> {
  return h.query(conversationStateQuery);
}

async function processed(h: WorkflowHandle, n: number): Promise<ConversationState> {
  return waitFor(async () => {
    const s = await state(h);
    return s.processed >= n ? s : undefined;
  }, `${n} processed events`);
}

describe('conversationWorkflow', () => {
  it('answers a message: recordInbound → generateReply → createReply → sendReply, once each', async () => {
    const { acts, calls, log } = makeFakes();
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const event = message(input, 'm_hello', 1_700_000_000_000, 'Hallo, gibt es die Jacke in M?');
      const h = await signal(taskQueue, workflowId, input, event);
      track(h);

      expect(await processed(h, 1)).toEqual({ queued: 0, processed: 1, seenKeys: 1 });
      const ref = { tenantId: TENANT, channelId: CHANNEL, customerId: input.customerId };
      expect(calls.recordInbound).toEqual([{ ref, event }]);
      expect(calls.generateReply).toEqual([{ tenantId: TENANT, event }]);
      expect(calls.createReply).toEqual([{ ref, conversationId: 'conv-1', inReplyTo: 'msg-m_hello', text: 'reply to m_hello' }]);
      expect(calls.sendReply).toEqual([{ channelId: CHANNEL, outboundId: 'out-msg-m_hello', customerId: input.customerId }]);
      expect(log).toEqual(['recordInbound:m_hello', 'generateReply:m_hello', 'createReply:msg-m_hello', 'sendReply:out-msg-m_hello']);
      expect(calls.recordEcho).toHaveLength(0);
      expect(calls.recordConversationEvent).toHaveLength(0);
      expect(calls.markReplyFailed).toHaveLength(0);
      expect(calls.markChannelReauthRequired).toHaveLength(0);
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('processes an event signalled three times (same dedupeKey) once', async () => {
    const { acts, calls } = makeFakes();
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const event = message(input, 'm_dup', 1000);
      const first = await signal(taskQueue, workflowId, input, event);
      track(first);
      const second = await signal(taskQueue, workflowId, input, { ...event });
      const third = await signal(taskQueue, workflowId, input, { ...event });
      // signalWithStart reached the same run each time.
      expect(second.signaledRunId).toBe(first.signaledRunId);
      expect(third.signaledRunId).toBe(first.signaledRunId);
      // A later, distinct event is a barrier: signals are handled in order, so any duplicate would come first.
      await signal(taskQueue, workflowId, input, message(input, 'm_after', 2000));

      expect(await processed(first, 2)).toEqual({ queued: 0, processed: 2, seenKeys: 2 });
      expect(calls.recordInbound.map((c) => c.event.dedupeKey)).toEqual(['m_dup', 'm_after']);
      expect(calls.sendReply.map((c) => c.outboundId)).toEqual(['out-msg-m_dup', 'out-msg-m_after']);
    });
  });

  it('processes events that arrive out of order while one is in flight in timestamp order', async () => {
    const g = gate();
    const { acts, calls, log } = makeFakes({
      async recordInbound({ event }) {
        if (event.dedupeKey === 'm1') await g.promise;
        return { messageId: `msg-${event.dedupeKey}`, conversationId: 'conv-1', inserted: true, alreadyAnswered: false };
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'm1', 1000));
      track(h);
      await waitFor(() => calls.recordInbound.length === 1, 'the first recordInbound');

      for (const [mid, ts] of [['m4', 4000], ['m2', 2000], ['m5', 5000], ['m3', 3000]] as const) {
        await signal(taskQueue, workflowId, input, message(input, mid, ts));
      }
      expect(await state(h)).toEqual({ queued: 4, processed: 0, seenKeys: 5 });
      expect(calls.recordInbound).toHaveLength(1);

      g.release();
      expect(await processed(h, 5)).toEqual({ queued: 0, processed: 5, seenKeys: 5 });
      expect(calls.recordInbound.map((c) => c.event.dedupeKey)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
      expect(calls.sendReply.map((c) => c.outboundId)).toEqual(['out-msg-m1', 'out-msg-m2', 'out-msg-m3', 'out-msg-m4', 'out-msg-m5']);
      // One event at a time: each reply is sent before the next event is recorded.
      const order = log.filter((l) => l.startsWith('recordInbound:') || l.startsWith('sendReply:'));
      expect(order).toEqual(['m1', 'm2', 'm3', 'm4', 'm5'].flatMap((m) => [`recordInbound:${m}`, `sendReply:out-msg-${m}`]));
    });
  });

  it('records echoes with recordEcho and reactions/reads/deliveries with recordConversationEvent, never replying', async () => {
    const { acts, calls } = makeFakes();
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const base = { platform: 'messenger' as const, accountId: PAGE, customerId: input.customerId };
      const events: InboundEvent[] = [
        { ...base, kind: 'echo', timestamp: 1000, dedupeKey: 'm_echo', mid: 'm_echo', text: 'Hi from the shop', attachments: [], metadata: 'sb:out:abc', appId: '618273940215567' },
        { ...base, kind: 'echo', timestamp: 1500, dedupeKey: 'm_echo_human', mid: 'm_echo_human', text: 'A human answer', attachments: [] },
        { ...base, kind: 'reaction', timestamp: 2000, dedupeKey: 'reaction:m_echo:love', mid: 'm_echo', action: 'react', reaction: 'love', emoji: '❤' },
        { ...base, kind: 'read', timestamp: 3000, dedupeKey: 'read:3000', watermark: 3000 },
        { ...base, kind: 'delivery', timestamp: 4000, dedupeKey: 'delivery:4000', watermark: 4000, mids: ['m_echo'] },
        { ...base, kind: 'message_deleted', timestamp: 5000, dedupeKey: 'deleted:m_old', mid: 'm_old' },
      ];
      const h = await signal(taskQueue, workflowId, input, events[0]!);
      track(h);
      for (const e of events.slice(1)) await signal(taskQueue, workflowId, input, e);

      expect(await processed(h, events.length)).toEqual({ queued: 0, processed: events.length, seenKeys: events.length });
      const ref = { tenantId: TENANT, channelId: CHANNEL, customerId: input.customerId };
      expect(calls.recordEcho).toEqual([{ ref, event: events[0] }, { ref, event: events[1] }]);
      expect(calls.recordConversationEvent).toEqual(events.slice(2).map((event) => ({ ref, event })));
      for (const name of ['recordInbound', 'generateReply', 'createReply', 'sendReply', 'markReplyFailed', 'markChannelReauthRequired'] as const) {
        expect(calls[name]).toHaveLength(0);
      }
    });
  });

  it('does not reply when recordInbound says alreadyAnswered, generateReply returns null, or the outbound row is not pending', async () => {
    const { acts, calls } = makeFakes({
      async recordInbound({ event }) {
        return { messageId: `msg-${event.dedupeKey}`, conversationId: 'conv-1', inserted: false, alreadyAnswered: event.dedupeKey === 'm_answered' };
      },
      async generateReply({ event }) {
        return event.dedupeKey === 'm_no_reply' ? null : { text: `reply to ${event.dedupeKey}` };
      },
      async createReply({ inReplyTo }) {
        return inReplyTo === 'msg-m_sent_before' ? { id: 'out-sent', status: 'sent', mid: 'm_earlier' } : { id: `out-${inReplyTo}`, status: 'pending', mid: null };
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'm_answered', 1000));
      track(h);
      await signal(taskQueue, workflowId, input, message(input, 'm_no_reply', 2000));
      await signal(taskQueue, workflowId, input, message(input, 'm_sent_before', 3000));
      await signal(taskQueue, workflowId, input, message(input, 'm_fresh', 4000));

      await processed(h, 4);
      expect(calls.recordInbound.map((c) => c.event.dedupeKey)).toEqual(['m_answered', 'm_no_reply', 'm_sent_before', 'm_fresh']);
      // alreadyAnswered stops before generating a reply.
      expect(calls.generateReply.map((c) => c.event.dedupeKey)).toEqual(['m_no_reply', 'm_sent_before', 'm_fresh']);
      // A null reply creates no outbound row.
      expect(calls.createReply.map((c) => c.inReplyTo)).toEqual(['msg-m_sent_before', 'msg-m_fresh']);
      // Only the fresh, pending reply is sent.
      expect(calls.sendReply).toEqual([{ channelId: CHANNEL, outboundId: 'out-msg-m_fresh', customerId: input.customerId }]);
    });
  });

  it('a non-retryable auth failure marks the channel for reauth and the reply failed, without retrying', async () => {
    const { acts, calls } = makeFakes({
      async sendReply() {
        throw ApplicationFailure.create({
          message: 'Graph API error: HTTP 400, code 190/463',
          type: 'GraphAuthExpired',
          nonRetryable: true,
          details: [{ errorClass: 'auth', reauth: true, code: 190, subcode: 463 }],
        });
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'm_auth', 1000));
      track(h);

      await processed(h, 1);
      expect(calls.sendReply).toHaveLength(1);
      expect(calls.markChannelReauthRequired).toEqual([{ channelId: CHANNEL, reason: expect.stringContaining('GraphAuthExpired') }]);
      expect(calls.markChannelReauthRequired[0]!.reason).toContain('190');
      expect(calls.markReplyFailed).toEqual([{ outboundId: 'out-msg-m_auth', error: { type: 'GraphAuthExpired', reason: 'auth', code: 190, subcode: 463 } }]);
      // The conversation goes on: the next message is still handled.
      await signal(taskQueue, workflowId, input, message(input, 'm_next', 2000));
      await processed(h, 2);
      expect(calls.sendReply).toHaveLength(2);
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('a RecipientUnavailable failure marks the reply failed but leaves the channel alone', async () => {
    const { acts, calls } = makeFakes({
      async sendReply() {
        throw ApplicationFailure.create({
          message: 'Graph API error: HTTP 400, code 551/1545041',
          type: 'RecipientUnavailable',
          nonRetryable: true,
          details: [{ errorClass: 'recipient_unavailable', reauth: false, code: 551, subcode: 1545041, fbtraceId: 'zbaw3hcmrvpMNbjQSZtltES' }],
        });
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'm_blocked', 1000));
      track(h);

      await processed(h, 1);
      expect(calls.sendReply).toHaveLength(1);
      expect(calls.markChannelReauthRequired).toHaveLength(0);
      expect(calls.markReplyFailed).toEqual([
        {
          outboundId: 'out-msg-m_blocked',
          error: { type: 'RecipientUnavailable', reason: 'recipient_unavailable', code: 551, subcode: 1545041, fbtraceId: 'zbaw3hcmrvpMNbjQSZtltES' },
        },
      ]);
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('sends the polite fallback when reply generation gives up, and keeps processing the queue', async () => {
    const { acts, calls } = makeFakes({
      async generateReply({ event }) {
        if (event.dedupeKey === 'm_ai_down') throw ApplicationFailure.create({ message: 'engine unavailable', type: 'EngineDown', nonRetryable: true });
        return { text: `reply to ${event.dedupeKey}` };
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'm_ai_down', 1000));
      track(h);
      await signal(taskQueue, workflowId, input, message(input, 'm_next', 2000));
      await processed(h, 2);
      expect(calls.createReply.map((c) => c.text)).toEqual([FALLBACK_REPLY, 'reply to m_next']);
      expect(calls.sendReply).toHaveLength(2);
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('survives an activity that gives up, and handles the next event', async () => {
    const { acts, calls } = makeFakes({
      async recordConversationEvent() {
        throw ApplicationFailure.create({ message: 'constraint violated', type: 'Broken', nonRetryable: true });
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const reaction: InboundEvent = { kind: 'reaction', platform: 'messenger', accountId: '1', customerId: input.customerId, timestamp: 500, dedupeKey: 'reaction:x', mid: 'm_x', action: 'react', reaction: 'love' };
      const h = await signal(taskQueue, workflowId, input, reaction);
      track(h);
      await signal(taskQueue, workflowId, input, message(input, 'm_after', 1000));
      await processed(h, 2);
      expect(calls.recordConversationEvent).toHaveLength(1);
      expect(calls.sendReply).toHaveLength(1);
      expect((await h.describe()).status.name).toBe('RUNNING');
    });
  });

  it('retries a retryable send failure and succeeds once, without failing the workflow', async () => {
    const attempts: number[] = [];
    let successes = 0;
    const { acts, calls } = makeFakes({
      async sendReply({ outboundId }) {
        const { attempt } = Context.current().info;
        attempts.push(attempt);
        if (attempt <= 2) throw new Error(`connection reset (attempt ${attempt})`);
        successes += 1;
        return { messageId: `m_${outboundId}` };
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation(1500);
      const h = await signal(taskQueue, workflowId, input, message(input, 'm_flaky', 1000));
      track(h);

      // Attempts at 0 s, ~1 s, ~3 s; then the run goes idle and completes.
      expect(await h.result()).toEqual({ processed: 1 });
      expect(attempts).toEqual([1, 2, 3]);
      expect(successes).toBe(1);
      expect(calls.sendReply).toHaveLength(3);
      expect(new Set(calls.sendReply.map((c) => c.outboundId))).toEqual(new Set(['out-msg-m_flaky']));
      expect(calls.markReplyFailed).toHaveLength(0);
      expect(calls.markChannelReauthRequired).toHaveLength(0);
      expect((await h.describe()).status.name).toBe('COMPLETED');
    });
  }, 20_000);

  it('completes after the idle timeout with the processed count; the next signal starts a new run', async () => {
    const { acts, calls } = makeFakes();
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation(1500);
      const first = await signal(taskQueue, workflowId, input, message(input, 'm_a', 1000));
      track(first);
      await signal(taskQueue, workflowId, input, message(input, 'm_b', 2000));
      expect(await first.result()).toEqual({ processed: 2 });
      const firstRun = await client.workflow.getHandle(workflowId, first.signaledRunId).describe();
      expect(firstRun.status.name).toBe('COMPLETED');

      const second = await signal(taskQueue, workflowId, input, message(input, 'm_c', 3000));
      track(second);
      expect(second.signaledRunId).not.toBe(first.signaledRunId);
      expect(await client.workflow.getHandle(workflowId, second.signaledRunId).result()).toEqual({ processed: 1 });
      expect(calls.recordInbound.map((c) => c.event.dedupeKey)).toEqual(['m_a', 'm_b', 'm_c']);
      expect(calls.sendReply).toHaveLength(3);
    });
  }, 20_000);

  it('getState reports queued, processed and seen keys', async () => {
    const g = gate();
    const { acts, calls } = makeFakes({
      async generateReply({ event }) {
        if (event.dedupeKey === 'q1') await g.promise;
        return { text: `reply to ${event.dedupeKey}` };
      },
    });
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const h = await signal(taskQueue, workflowId, input, message(input, 'q1', 1000));
      track(h);
      await waitFor(() => calls.generateReply.length === 1, 'the first generateReply');
      expect(await state(h)).toEqual({ queued: 0, processed: 0, seenKeys: 1 });

      await signal(taskQueue, workflowId, input, message(input, 'q2', 2000));
      await signal(taskQueue, workflowId, input, message(input, 'q3', 3000));
      await signal(taskQueue, workflowId, input, message(input, 'q2', 2000)); // duplicate: not queued, not counted
      expect(await state(h)).toEqual({ queued: 2, processed: 0, seenKeys: 3 });

      g.release();
      expect(await processed(h, 3)).toEqual({ queued: 0, processed: 3, seenKeys: 3 });
    });
  });

  it('carries seen keys and pending events across continue-as-new', async () => {
    const { acts, calls } = makeFakes();
    await withWorker(acts, async (taskQueue, track) => {
      const { workflowId, input } = conversation();
      const pendingA = message(input, 'm_pending_a', 5000);
      const h = await client.workflow.start('conversationWorkflow', {
        workflowId,
        taskQueue,
        args: [{ ...input, seenKeys: ['m_seen_before'], pending: [pendingA] }],
      });
      track(h);

      // The pending event is processed with no signal at all.
      await processed(h, 1);
      expect(calls.recordInbound).toEqual([{ ref: { tenantId: TENANT, channelId: CHANNEL, customerId: input.customerId }, event: pendingA }]);
      expect(calls.sendReply.map((c) => c.outboundId)).toEqual(['out-msg-m_pending_a']);

      // A redelivery of a key the previous run had seen is ignored; a new event is not.
      await client.workflow.getHandle(workflowId).signal(inboundEventSignal, message(input, 'm_seen_before', 6000));
      await client.workflow.getHandle(workflowId).signal(inboundEventSignal, message(input, 'm_new', 7000));
      await processed(h, 2);
      expect(calls.recordInbound.map((c) => c.event.dedupeKey)).toEqual(['m_pending_a', 'm_new']);
      expect((await state(h)).processed).toBe(2);
    });
  });
});
