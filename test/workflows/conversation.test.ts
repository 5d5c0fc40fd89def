import { readFileSync } from 'node:fs';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection } from '@temporalio/worker';
import { resolveTemporalCli } from '../../scripts/temporal-cli';
import { parseWebhookPayload } from '../../src/meta/webhook-events';
import type { InboundEvent, MessageEvent, TurnMessage } from '../../src/shared/types';
import { CONVERSATION_STATE, CUSTOM_SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { FALLBACK_REPLY, HANDOFF_REPLY, type ConversationInput, type ConversationState } from '../../workflows/definitions';
import { channelReconnectedSignal } from '../../workflows/token-lifecycle-definitions';
import {
  CHANNEL,
  CONVERSATION_ID,
  conversation,
  createConversationFakes,
  echo,
  gate,
  graphFailures,
  heartbeatUntil,
  messageIdOf,
  TENANT,
  textMessage,
  waitFor,
  withConversationWorker,
  type ConversationFakes,
  type FakeOptions,
  type TestConversation,
} from '../support/conversation-fakes';
import { installQuietRuntime, required } from '../support/stack';
import { fixture, PAGE_A } from '../support/webhooks';

/**
 * Decisions of the conversation workflow against the real dev server and the real workflow
 * bundle, with recording fakes in place of the Postgres / Graph / engine activities
 * (test/support/conversation-fakes.ts). Timer-heavy behaviour (24-hour window, handoff idle
 * return, echo waits, budget waits) is in conversation-timers.test.ts on the time-skipping server.
 */


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

/** A worker with fresh fakes, and a conversation on its task queue (terminated afterwards). */
async function scenario(options: FakeOptions & { idleTimeoutMs?: number }, fn: (c: TestConversation, fakes: ConversationFakes) => Promise<void>): Promise<void> {
  const fakes = createConversationFakes(options);
  await withConversationWorker({ nativeConnection, bundleCode }, fakes.activities, async (taskQueue, track) => {
    const c = conversation(client, taskQueue, { ...(options.idleTimeoutMs !== undefined && { idleTimeoutMs: options.idleTimeoutMs }) });
    track(c);
    await fn(c, fakes);
  });
}

async function processed(c: TestConversation, n: number): Promise<ConversationState> {
  return waitFor(async () => {
    const s = await c.state();
    return s.processed >= n && s.queued === 0 ? s : undefined;
  }, `${n} processed events`);
}

async function stateAttribute(h: WorkflowHandle): Promise<string | undefined> {
  return (await h.describe()).typedSearchAttributes.get(CONVERSATION_STATE);
}

const ids = (messages: TurnMessage[]) => messages.map((m) => m.messageId);

describe('conversationWorkflow: bursts and drafts', () => {
  it('answers three messages inside the quiet window with one turn, one outbound row and one send', async () => {
    await scenario({ settings: { debounceMs: 800 } }, async (c, fakes) => {
      const t = Date.now();
      await c.send(textMessage('b1', t, 'Hi'));
      await c.send(textMessage('b2', t + 1, 'do you have the jacket'));
      await c.send(textMessage('b3', t + 2, 'in size M?'));
      await waitFor(() => fakes.sent.length === 1, 'the answer');

      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual(['mid:b1', 'mid:b2', 'mid:b3']);
      expect(fakes.calls.planReplyStep).toHaveLength(1);
      const turn = fakes.calls.planReplyStep[0]!;
      expect(turn).toMatchObject({ ref: c.ref, tenantId: TENANT, conversationId: CONVERSATION_ID, exchanges: [], final: false });
      expect(turn.messages.map((m) => m.text)).toEqual(['Hi', 'do you have the jacket', 'in size M?']);
      expect(fakes.calls.createOutbound).toEqual([
        {
          ref: c.ref,
          conversationId: CONVERSATION_ID,
          author: 'bot',
          text: 'answer to Hi + do you have the jacket + in size M?',
          inReplyTo: messageIdOf('b3'),
          covers: [messageIdOf('b1'), messageIdOf('b2'), messageIdOf('b3')],
        },
      ]);
      const [row] = fakes.outbound.values();
      expect(fakes.calls.sendOutbound).toEqual([{ tenantId: TENANT, channelId: CHANNEL, outboundId: row!.id, customerId: c.input.customerId, messagingType: 'RESPONSE', round: 0 }]);
      // The turn started only after the whole burst was stored.
      expect(fakes.log.filter((l) => /^(recordInbound|planReplyStep|sendOutbound):/.test(l)).map((l) => l.split(':')[0])).toEqual(['recordInbound', 'recordInbound', 'recordInbound', 'planReplyStep', 'sendOutbound']);

      // A message after the answer is a new burst with its own answer.
      await c.send(textMessage('b4', Date.now(), 'thanks'));
      await waitFor(() => fakes.sent.length === 2, 'the second answer');
      expect(ids(fakes.calls.planReplyStep[1]!.messages)).toEqual([messageIdOf('b4')]);
      expect(fakes.calls.createOutbound[1]).toMatchObject({ inReplyTo: messageIdOf('b4'), covers: [messageIdOf('b4')] });
    });
  });

  it('a message arriving while the draft is generated cancels it (heartbeat) and the answer covers both', async () => {
    const engine = gate();
    await scenario(
      {
        overrides: {
          async planReplyStep(input, next, fakes) {
            if (fakes.calls.planReplyStep.length === 1) await heartbeatUntil(fakes, engine.promise);
            return next(input);
          },
        },
      },
      async (c, fakes) => {
        const t = Date.now();
        await c.send(textMessage('s1', t, 'where is my order'));
        await waitFor(() => fakes.calls.planReplyStep.length === 1, 'the first draft');
        expect(await c.state()).toMatchObject({ mode: 'bot_active', drafting: true, burst: 1, processed: 1, queued: 0, parkedSends: [] });

        await c.send(textMessage('s2', t + 1, 'order 1234'));
        await waitFor(() => fakes.sent.length === 1, 'the answer');
        await waitFor(() => fakes.cancelledSteps === 1, 'the superseded engine step to see its cancellation');

        expect(fakes.calls.planReplyStep.map((i) => ids(i.messages))).toEqual([[messageIdOf('s1')], [messageIdOf('s1'), messageIdOf('s2')]]);
        expect(fakes.calls.createOutbound).toHaveLength(1);
        expect(fakes.calls.createOutbound[0]).toMatchObject({ text: 'answer to where is my order + order 1234', inReplyTo: messageIdOf('s2'), covers: [messageIdOf('s1'), messageIdOf('s2')] });
        expect(fakes.calls.sendOutbound).toHaveLength(1);
        const s = await c.state();
        expect(s).toMatchObject({ mode: 'bot_active', drafting: false, burst: 0, processed: 2, queued: 0, parkedSends: [], seenKeys: 2, lastHumanAt: null });
        expect(s.lastCustomerAt).toBe(t + 1);
      },
    );
  });

  it('a draft that misses the turn deadline is cancelled and the polite fallback is sent', async () => {
    const never = gate();
    await scenario(
      {
        settings: { turnDeadlineMs: 1000 },
        overrides: {
          async planReplyStep(_input, _next, fakes) {
            await heartbeatUntil(fakes, never.promise);
            throw new Error('unreachable: the gate never opens');
          },
        },
      },
      async (c, fakes) => {
        await c.send(textMessage('slow', Date.now()));
        await waitFor(() => fakes.sent.length === 1, 'the fallback');
        expect(fakes.calls.createOutbound.map((i) => i.text)).toEqual([FALLBACK_REPLY]);
        await waitFor(() => fakes.cancelledSteps === 1, 'the engine step to be cancelled');
        expect(fakes.calls.planReplyStep).toHaveLength(1);
      },
    );
  });

  it('sends the polite fallback when the engine fails, and answers the next message normally', async () => {
    await scenario(
      {
        overrides: {
          async planReplyStep(input, next) {
            if (input.messages.some((m) => m.text === 'boom')) throw ApplicationFailure.create({ message: 'model not found', type: 'ReplyEngineRejected', nonRetryable: true });
            return next(input);
          },
        },
      },
      async (c, fakes) => {
        await c.send(textMessage('f1', Date.now(), 'boom'));
        await waitFor(() => fakes.sent.length === 1, 'the fallback');
        await c.send(textMessage('f2', Date.now(), 'hello again'));
        await waitFor(() => fakes.sent.length === 2, 'the second answer');
        expect(fakes.calls.createOutbound.map((i) => i.text)).toEqual([FALLBACK_REPLY, 'answer to hello again']);
        expect((await c.handle().describe()).status.name).toBe('RUNNING');
      },
    );
  });

  it('processes an event signalled three times (same dedupeKey) once', async () => {
    await scenario({}, async (c, fakes) => {
      const event = textMessage('dup', Date.now());
      const first = await c.send(event);
      const runId = (await first.describe()).runId;
      await c.send({ ...event });
      await c.send({ ...event });
      // A later, distinct event is a barrier: signals are handled in order, so any duplicate would come first.
      await c.send(textMessage('after', Date.now()));

      expect(await processed(c, 2)).toMatchObject({ queued: 0, processed: 2, seenKeys: 2 });
      expect((await c.handle().describe()).runId).toBe(runId);
      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual(['mid:dup', 'mid:after']);
      // One answer or two (the quiet window may close between them): each message covered once.
      await waitFor(() => fakes.calls.createOutbound.flatMap((i) => i.covers).length === 2 && fakes.sent.length === fakes.calls.createOutbound.length, 'the answers');
      expect(fakes.calls.createOutbound.flatMap((i) => i.covers)).toEqual([messageIdOf('dup'), messageIdOf('after')]);
    });
  });

  it('stores events that arrive out of order while one is in flight in timestamp order', async () => {
    const g = gate();
    await scenario(
      {
        overrides: {
          async recordInbound(input, next) {
            if (input.event.dedupeKey === 'mid:o1') await g.promise;
            return next(input);
          },
        },
      },
      async (c, fakes) => {
        const t = Date.now();
        await c.send(textMessage('o1', t + 1));
        await waitFor(() => fakes.calls.recordInbound.length === 1, 'the first recordInbound');
        for (const [mid, dt] of [['o4', 4], ['o2', 2], ['o5', 5], ['o3', 3]] as const) await c.send(textMessage(mid, t + dt));
        expect(await c.state()).toMatchObject({ queued: 4, processed: 0, seenKeys: 5 });

        g.release();
        await waitFor(() => fakes.sent.length === 1, 'the answer');
        expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual(['mid:o1', 'mid:o2', 'mid:o3', 'mid:o4', 'mid:o5']);
        expect(fakes.calls.planReplyStep.map((i) => i.messages.map((m) => m.timestamp))).toEqual([[t + 1, t + 2, t + 3, t + 4, t + 5]]);
        expect(fakes.calls.createOutbound[0]).toMatchObject({ inReplyTo: messageIdOf('o5') });
      },
    );
  });
});

describe('conversationWorkflow: human handoff', () => {
  it('by the handoff_to_human tool: the handoff reply is sent, then the bot stays silent', async () => {
    await scenario(
      {
        overrides: {
          async planReplyStep(input) {
            if (input.exchanges.length === 0) return { kind: 'tool_calls', calls: [{ id: 'call_1', name: 'handoff_to_human', arguments: { reason: 'asked for a person' } }] };
            return { kind: 'reply', text: 'A colleague will be with you shortly.' };
          },
        },
      },
      async (c, fakes) => {
        const h = await c.send(textMessage('p1', Date.now(), 'I want to talk to a person'));
        await waitFor(() => fakes.sent.length === 1, 'the handoff reply');

        expect(fakes.calls.handoffToHumanTool).toEqual([{ ref: c.ref, conversationId: CONVERSATION_ID, call: { id: 'call_1', name: 'handoff_to_human', arguments: { reason: 'asked for a person' } } }]);
        expect(fakes.calls.setConversationMode).toEqual([{ ref: c.ref, mode: 'human_active', reason: 'tool:handoff_to_human' }]);
        // The second step saw the tool's result.
        expect(fakes.calls.planReplyStep[1]!.exchanges).toEqual([
          { calls: [{ id: 'call_1', name: 'handoff_to_human', arguments: { reason: 'asked for a person' } }], results: [{ callId: 'call_1', name: 'handoff_to_human', ok: true, content: { handedOff: true } }] },
        ]);
        expect(fakes.calls.createOutbound.map((i) => [i.author, i.text])).toEqual([['bot', 'A colleague will be with you shortly.']]);
        expect(await c.state()).toMatchObject({ mode: 'human_active' });
        await waitFor(async () => (await stateAttribute(h)) === 'human_active', 'ConversationState=human_active');

        // Later messages are stored, not answered.
        await c.send(textMessage('p2', Date.now(), 'hello?'));
        await processed(c, 2);
        expect(fakes.calls.recordInbound).toHaveLength(2);
        expect(fakes.calls.planReplyStep).toHaveLength(2);
        expect(fakes.calls.sendOutbound).toHaveLength(1);
        expect(await c.state()).toMatchObject({ mode: 'human_active', burst: 0 });
      },
    );
  });

  it('by the tool with no text from the engine: the standard handoff reply is sent', async () => {
    await scenario(
      {
        overrides: {
          async planReplyStep(input) {
            if (input.exchanges.length === 0) return { kind: 'tool_calls', calls: [{ id: 'c1', name: 'handoff_to_human', arguments: {} }] };
            return { kind: 'reply', text: '  ' };
          },
        },
      },
      async (c, fakes) => {
        await c.send(textMessage('q1', Date.now(), 'human please'));
        await waitFor(() => fakes.sent.length === 1, 'the handoff reply');
        expect(fakes.calls.createOutbound.map((i) => i.text)).toEqual([HANDOFF_REPLY]);
      },
    );
  });

  it('by an echo without our metadata (someone answered in the Meta inbox); our own echo changes nothing', async () => {
    await scenario({}, async (c, fakes) => {
      const h = await c.send(textMessage('e1', Date.now(), 'hi'));
      await waitFor(() => fakes.sent.length === 1, 'the answer');
      const ours = [...fakes.outbound.values()][0]!;

      // The echo of our own send carries our metadata: recorded as ours, still bot_active.
      await c.send(echo('echo_ours', Date.now(), ours.text, `sb:out:${ours.id}`));
      await processed(c, 2);
      expect(fakes.calls.recordEcho).toHaveLength(1);
      expect(fakes.calls.setConversationMode).toHaveLength(0);
      expect(await stateAttribute(h)).toBe('bot_active');

      // A human typed in the inbox: the bot steps aside.
      const humanAt = Date.now();
      await c.send(echo('echo_human', humanAt, 'Hi, Anna here from the shop!'));
      await processed(c, 3);
      expect(fakes.calls.recordEcho.map((i) => i.event.dedupeKey)).toEqual(['mid:echo_ours', 'mid:echo_human']);
      expect(fakes.calls.recordEcho[1]).toEqual({ ref: c.ref, event: expect.objectContaining({ mid: 'echo_human' }) });
      expect(fakes.calls.setConversationMode).toEqual([{ ref: c.ref, mode: 'human_active', reason: 'inbox_reply' }]);
      expect(await c.state()).toMatchObject({ mode: 'human_active', lastHumanAt: humanAt });
      await waitFor(async () => (await stateAttribute(h)) === 'human_active', 'ConversationState=human_active');

      await c.send(textMessage('e2', Date.now(), 'thanks Anna'));
      await processed(c, 4);
      expect(fakes.calls.recordInbound).toHaveLength(2);
      expect(fakes.calls.planReplyStep).toHaveLength(1);
      expect(fakes.calls.sendOutbound).toHaveLength(1);
    });
  });

  it('by an operator: hand off, send as a human agent (a repeated requestId is ignored), hand back at once', async () => {
    await scenario({}, async (c, fakes) => {
      const h = await c.send(textMessage('o1', Date.now(), 'hello'));
      await waitFor(() => fakes.sent.length === 1, 'the bot answer');
      expect(await stateAttribute(h)).toBe('bot_active');

      await c.command({ kind: 'handoff', requestId: 'req-1', operator: 'op-7', to: 'human_active', reason: 'VIP customer' });
      await waitFor(() => fakes.calls.setConversationMode.length === 1, 'the mode change to be stored');
      expect((await c.state()).mode).toBe('human_active');
      expect(fakes.calls.setConversationMode).toEqual([{ ref: c.ref, mode: 'human_active', reason: 'operator: VIP customer', operator: 'op-7', requestId: 'req-1' }]);
      await waitFor(async () => (await stateAttribute(h)) === 'human_active', 'ConversationState=human_active');

      const send = { kind: 'send' as const, requestId: 'req-2', operator: 'op-7', text: 'Hi, this is Sam from the shop.' };
      await c.command(send);
      await c.command({ ...send }); // the admin API retried: same requestId
      await waitFor(() => fakes.sent.length === 2, 'the human agent message');
      expect(fakes.calls.createOutbound[1]).toEqual({ ref: c.ref, conversationId: CONVERSATION_ID, author: 'human_agent', text: send.text, clientRef: 'req-2' });
      const humanRow = fakes.calls.sendOutbound[1]!;
      expect(humanRow).toEqual({ tenantId: TENANT, channelId: CHANNEL, outboundId: expect.any(String), customerId: c.input.customerId, messagingType: 'RESPONSE', round: 0 });
      expect(fakes.calls.touchHumanActivity).toEqual([{ tenantId: TENANT, conversationId: CONVERSATION_ID, at: expect.any(Number) }]);

      // The customer answers the human: stored, not answered by the bot.
      await c.send(textMessage('o2', Date.now(), 'great, thanks Sam'));
      await processed(c, 2);
      expect(fakes.calls.planReplyStep).toHaveLength(1);

      await c.command({ kind: 'handoff', requestId: 'req-3', operator: 'op-7', to: 'bot_active' });
      await waitFor(() => fakes.calls.setConversationMode.length === 2, 'the return to be stored');
      expect((await c.state()).mode).toBe('bot_active');
      expect(fakes.calls.setConversationMode[1]).toEqual({ ref: c.ref, mode: 'bot_active', reason: 'operator', operator: 'op-7', requestId: 'req-3' });
      await waitFor(async () => (await stateAttribute(h)) === 'bot_active', 'ConversationState=bot_active');

      await c.send(textMessage('o3', Date.now(), 'one more question'));
      await waitFor(() => fakes.sent.length === 3, 'the bot answer after the return');
      expect(ids(fakes.calls.planReplyStep[1]!.messages)).toEqual([messageIdOf('o3')]);
      // One createOutbound per decision: the duplicate command did not make a second row or send.
      expect(fakes.calls.createOutbound.map((i) => i.author)).toEqual(['bot', 'human_agent', 'bot']);
      expect(fakes.calls.sendOutbound).toHaveLength(3);
    });
  });
});

describe('conversationWorkflow: ambiguous sends', () => {
  it('an echo with our metadata confirms an ambiguous send: no second send', async () => {
    await scenario({ overrides: { sendOutbound: async (input, next, f) => (f.sendAttempts(input.outboundId) === 1 ? Promise.reject(graphFailures.ambiguous()) : next(input)) } }, async (c, fakes) => {
      await c.send(textMessage('a1', Date.now(), 'hi'));
      const parked = await waitFor(async () => (await c.state()).parkedSends[0], 'the send to wait for its echo');
      const row = [...fakes.outbound.values()][0]!;
      expect(parked).toEqual({ outboundId: row.id, author: 'bot', waitingUntil: expect.any(Number), reason: 'awaiting_echo' });

      await c.send(echo('a1_echo', Date.now(), row.text, `sb:out:${row.id}`));
      // recordEcho runs after the send decision finished (the loop is sequential), so no resend can follow.
      await waitFor(() => fakes.calls.recordEcho.length === 1, 'the echo to be recorded');
      expect(fakes.calls.recordEcho[0]).toEqual({ ref: c.ref, event: expect.objectContaining({ metadata: `sb:out:${row.id}` }) });
      expect(fakes.calls.sendOutbound).toHaveLength(1);
      expect(fakes.calls.markOutboundFailed).toHaveLength(0);
      expect(await c.state()).toMatchObject({ mode: 'bot_active', parkedSends: [] });
      expect(row.status).toBe('sent');
    });
  });

  it('an echo without metadata but with the same text confirms it too, and is not mistaken for a human', async () => {
    await scenario({ overrides: { sendOutbound: async (input, next, f) => (f.sendAttempts(input.outboundId) === 1 ? Promise.reject(graphFailures.ambiguous()) : next(input)) } }, async (c, fakes) => {
      const h = await c.send(textMessage('a2', Date.now(), 'hi'));
      await waitFor(async () => (await c.state()).parkedSends[0]?.reason === 'awaiting_echo', 'the send to wait for its echo');
      const row = [...fakes.outbound.values()][0]!;

      await c.send(echo('a2_echo', Date.now(), row.text));
      await waitFor(() => fakes.calls.recordEcho.length === 1, 'the echo to be recorded');
      expect(fakes.calls.recordEcho[0]).toEqual({ ref: c.ref, event: expect.objectContaining({ mid: 'a2_echo' }), matchedOutboundId: row.id });
      expect(fakes.calls.sendOutbound).toHaveLength(1);
      expect(fakes.calls.setConversationMode).toHaveLength(0);
      expect(await c.state()).toMatchObject({ mode: 'bot_active', parkedSends: [] });
      expect(await stateAttribute(h)).toBe('bot_active');
    });
  });

  it('an echo without metadata that overtakes the ambiguous failure (it arrives while the send is in flight) confirms it', async () => {
    const inFlight = gate();
    await scenario(
      {
        overrides: {
          async sendOutbound(input, next, f) {
            if (f.sendAttempts(input.outboundId) > 1) return next(input);
            await inFlight.promise; // Meta delivered and echoed; our connection dropped before the answer came
            throw graphFailures.ambiguous();
          },
        },
      },
      async (c, fakes) => {
        await c.send(textMessage('a3', Date.now(), 'hi'));
        await waitFor(() => fakes.calls.sendOutbound.length === 1, 'the send to start');
        const row = [...fakes.outbound.values()][0]!;
        await c.send(echo('a3_echo', Date.now(), row.text));
        await waitFor(async () => (await c.state()).queued === 1, 'the echo to be queued');
        inFlight.release();

        await waitFor(() => fakes.calls.recordEcho.length === 1, 'the echo to be recorded (not after a 20 s echo wait)');
        expect(fakes.calls.recordEcho[0]).toMatchObject({ matchedOutboundId: row.id });
        expect(fakes.calls.sendOutbound).toHaveLength(1);
        expect(fakes.calls.setConversationMode).toHaveLength(0);
        expect((await c.state()).mode).toBe('bot_active');
      },
    );
  });
});

describe('conversationWorkflow: failures', () => {
  it('a non-retryable auth failure marks the channel for reauth and parks the reply; the next reply waits behind it untried', async () => {
    await scenario({ overrides: { sendOutbound: async (input, next, f) => (f.calls.sendOutbound.length === 1 ? Promise.reject(graphFailures.authExpired()) : next(input)) } }, async (c, fakes) => {
      await c.send(textMessage('auth', Date.now()));
      await waitFor(() => fakes.calls.markOutboundParked.length === 1, 'the reply to be parked');
      const row = [...fakes.outbound.values()][0]!;
      expect(fakes.calls.sendOutbound).toHaveLength(1);
      expect(fakes.calls.markChannelReauthRequired).toEqual([{ tenantId: TENANT, channelId: CHANNEL, reason: expect.stringContaining('GraphAuthExpired') }]);
      expect(fakes.calls.markChannelReauthRequired[0]!.reason).toContain('190');
      expect(fakes.calls.markOutboundParked).toEqual([{ tenantId: TENANT, outboundId: row.id, error: { type: 'GraphAuthExpired', reason: 'reauth_required', code: 190, subcode: 463 } }]);
      expect(fakes.calls.markOutboundFailed).toHaveLength(0);
      expect(row.status).toBe('parked');
      await waitFor(async () => (await c.state()).parkedSends.length === 1, 'the query to show it');
      expect((await c.state()).parkedSends).toEqual([{ outboundId: row.id, author: 'bot', waitingUntil: null, reason: 'reauth_required' }]);

      // The conversation goes on: the next answer is drafted and parked behind the first, untried.
      await c.send(textMessage('auth_next', Date.now()));
      await waitFor(() => fakes.calls.markOutboundParked.length === 2, 'the next reply to be parked');
      const second = [...fakes.outbound.values()][1]!;
      expect(fakes.calls.markOutboundParked[1]).toEqual({ tenantId: TENANT, outboundId: second.id, error: { type: 'ChannelReauthRequired', reason: 'reauth_required' } });
      expect(fakes.calls.sendOutbound).toHaveLength(1);
      expect(fakes.calls.markChannelReauthRequired).toHaveLength(1);
      expect((await c.state()).parkedSends.map((p) => p.outboundId)).toEqual([row.id, second.id]);
      expect((await c.handle().describe()).status.name).toBe('RUNNING');
    });
  });

  it('after the reconnect signal the parked replies go out in order; one that meets 190 again parks again, with the rest behind it', async () => {
    // The channel dies on the first send, and again on the first send after the first reconnect.
    const failOn = new Set([1, 2]);
    await scenario(
      {
        overrides: {
          async sendOutbound(input, next, f) {
            if (failOn.has(f.calls.sendOutbound.length)) {
              f.db.channelStatus = 'reauth_required';
              throw graphFailures.authExpired();
            }
            return next(input);
          },
        },
      },
      async (c, fakes) => {
        await c.send(textMessage('p1', Date.now(), 'one'));
        await waitFor(() => fakes.calls.markOutboundParked.length === 1, 'the first reply to be parked');
        await c.send(textMessage('p2', Date.now(), 'two'));
        await waitFor(() => fakes.calls.markOutboundParked.length === 2, 'the second reply to be parked');
        const [first, second] = [...fakes.outbound.values()];
        expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([first!.id]);

        // Reconnected; the new token fails at once: the first goes back to the front, the second stays untried.
        fakes.db.channelStatus = 'active';
        await c.handle().signal(channelReconnectedSignal, { channelId: CHANNEL, reconnectedAt: Date.now() });
        await waitFor(() => fakes.calls.markOutboundParked.length === 3, 'the first reply to be parked again');
        expect(fakes.calls.unparkOutbound.map((i) => i.outboundId)).toEqual([first!.id]);
        expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([first!.id, first!.id]);
        await waitFor(async () => (await c.state()).parkedSends.length === 2, 'both parked');
        expect((await c.state()).parkedSends.map((p) => p.outboundId)).toEqual([first!.id, second!.id]);

        // A signal for another channel is not this conversation's: the next reply still parks, nothing is sent.
        await c.handle().signal(channelReconnectedSignal, { channelId: '00000000-0000-4000-8000-000000000000', reconnectedAt: Date.now() });
        await c.send(textMessage('p3', Date.now(), 'three'));
        await waitFor(() => fakes.calls.markOutboundParked.length === 4, 'the third reply to be parked');
        const third = [...fakes.outbound.values()][2]!;
        expect(fakes.calls.sendOutbound).toHaveLength(2);

        fakes.db.channelStatus = 'active';
        await c.handle().signal(channelReconnectedSignal, { channelId: CHANNEL, reconnectedAt: Date.now() });
        await waitFor(() => fakes.sent.length === 3, 'the three replies');
        expect(fakes.sent.map((s) => s.outboundId)).toEqual([first!.id, second!.id, third.id]);
        expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([first!.id, first!.id, first!.id, second!.id, third.id]);
        expect((await c.state()).parkedSends).toEqual([]);
        expect([first!.status, second!.status, third.status]).toEqual(['sent', 'sent', 'sent']);
      },
    );
  });

  it('survives an activity that gives up, and handles the next event', async () => {
    await scenario(
      { overrides: { applyConversationEvent: async () => Promise.reject(ApplicationFailure.create({ message: 'constraint violated', type: 'Broken', nonRetryable: true })) } },
      async (c, fakes) => {
        const t = Date.now();
        await c.send({ kind: 'reaction', platform: 'messenger', accountId: PAGE_A, customerId: '0', timestamp: t, dedupeKey: 'reaction:x', mid: 'm_x', action: 'react', reaction: 'love' });
        await c.send(textMessage('after_broken', t + 1));
        await waitFor(() => fakes.sent.length === 1, 'the answer');
        expect(fakes.calls.applyConversationEvent).toHaveLength(1);
        expect((await c.state()).processed).toBe(2);
        expect((await c.handle().describe()).status.name).toBe('RUNNING');
      },
    );
  });

  it('completes after the idle timeout; the next event starts a new run', async () => {
    await scenario({ idleTimeoutMs: 1500 }, async (c, fakes) => {
      const first = await c.send(textMessage('i1', Date.now()));
      const firstRun = (await first.describe()).runId;
      await waitFor(() => fakes.sent.length === 1, 'the answer');
      expect(await client.workflow.getHandle(c.workflowId, firstRun).result()).toEqual({ processed: 1 });

      const second = await c.send(textMessage('i2', Date.now()));
      const secondRun = (await second.describe()).runId;
      expect(secondRun).not.toBe(firstRun);
      expect(await client.workflow.getHandle(c.workflowId, secondRun).result()).toEqual({ processed: 1 });
      expect(fakes.calls.loadConversationSnapshot).toHaveLength(2);
      expect(fakes.sent).toHaveLength(2);
    });
  }, 20_000);
});

// ---- every event kind from the fixtures ------------------------------------------------------

/** Fixture events, their timestamps moved so the newest is `now` (the 24-hour window is real). */
function fixtureEvents(files: string[], now = Date.now()): InboundEvent[] {
  const events = files.flatMap((f) => parseWebhookPayload(JSON.parse(fixture(f).bytes.toString('utf8'))).events);
  const newest = Math.max(...events.map((e) => e.timestamp));
  return events.map((e) => ({ ...e, timestamp: e.timestamp - newest + now }));
}

function referralEvent(now: number): InboundEvent {
  const body = {
    object: 'page',
    entry: [{ id: PAGE_A, time: now, messaging: [{ sender: { id: '7291845503617724' }, recipient: { id: PAGE_A }, timestamp: now, referral: { ref: 'winter-sale-2026', source: 'SHORTLINK', type: 'OPEN_THREAD' } }] }],
  };
  const [event] = parseWebhookPayload(body).events;
  return event!;
}

describe('conversationWorkflow: every event kind', () => {
  it.each([
    ['messenger', ['messenger-echo.json', 'messenger-read-and-delivery.json'], true],
    ['instagram', ['ig-reaction.json', 'ig-seen.json', 'ig-deleted-message.json', 'ig-echo.json'], false],
  ] as const)('%s: echoes go to recordEcho, reactions/reads/deliveries/deletions/referrals to applyConversationEvent; none is answered', async (_platform, files, withReferral) => {
    await scenario({}, async (c, fakes) => {
      const now = Date.now();
      const events = [...fixtureEvents([...files], now - 1000), ...(withReferral ? [referralEvent(now)] : [])];
      for (const e of events) await c.send(e);
      await processed(c, events.length);

      // Which activity each kind reaches; the order of events queued together is the test above's subject.
      const keys = (list: Array<{ event: InboundEvent }>) => list.map((i) => `${i.event.kind}:${i.event.dedupeKey}`).sort();
      const expected = (echo: boolean) => events.filter((e) => (e.kind === 'echo') === echo).map((e) => `${e.kind}:${e.dedupeKey}`).sort();
      expect(keys(fakes.calls.recordEcho)).toEqual(expected(true));
      expect(keys(fakes.calls.applyConversationEvent)).toEqual(expected(false));
      expect(new Set(fakes.calls.applyConversationEvent.map((i) => i.event.kind))).toEqual(new Set(withReferral ? ['delivery', 'read', 'referral'] : ['reaction', 'read', 'message_deleted']));
      expect(fakes.calls.recordInbound).toHaveLength(0);
      expect(fakes.calls.planReplyStep).toHaveLength(0);
      expect(fakes.calls.createOutbound).toHaveLength(0);
      expect(fakes.calls.sendOutbound).toHaveLength(0);
    });
  });

  it('text, image, postback and quick reply go to recordInbound and get one answer that considers all four', async () => {
    await scenario({ settings: { debounceMs: 800 } }, async (c, fakes) => {
      const events = fixtureEvents(['messenger-text.json', 'messenger-image-attachment.json', 'messenger-postback.json', 'messenger-quick-reply.json']);
      for (const e of events) await c.send(e);
      await waitFor(() => fakes.sent.length === 1, 'the answer');

      expect(fakes.calls.recordInbound.map((i) => i.event.kind)).toEqual(['message', 'message', 'postback', 'message']);
      expect(fakes.calls.planReplyStep).toHaveLength(1);
      const messages = fakes.calls.planReplyStep[0]!.messages;
      expect(messages.map((m) => m.kind)).toEqual(['text', 'attachment', 'postback', 'quick_reply']);
      expect(messages[0]).toMatchObject({ text: 'Hallo! Habt ihr die Jacke noch in Größe M? 🧥' });
      expect(messages[1]!.attachments).toEqual([{ type: 'image', url: expect.stringMatching(/^https:\/\/scontent\.xx\.fbcdn\.net\//) }]);
      expect(messages[2]).toMatchObject({ text: 'Get Started', payload: 'GET_STARTED' });
      expect(messages[3]).toMatchObject({ text: 'Talk to a person', payload: 'HANDOFF_HUMAN' });
      expect(fakes.calls.createOutbound[0]!.covers).toEqual(messages.map((m) => m.messageId));
      expect(fakes.calls.sendOutbound).toHaveLength(1);
    });
  });

  it('Instagram text, image, story reply and story mention are answered together when the tenant answers stories', async () => {
    await scenario({ settings: { storyReplies: 'answer', debounceMs: 800 } }, async (c, fakes) => {
      for (const e of fixtureEvents(['ig-text-dm.json', 'ig-image-dm.json', 'ig-story-reply.json', 'ig-story-mention.json'])) await c.send(e);
      await waitFor(() => fakes.sent.length === 1, 'the answer');
      expect(fakes.calls.recordInbound).toHaveLength(4);
      const messages = fakes.calls.planReplyStep[0]!.messages;
      expect(messages.map((m) => m.kind)).toEqual(['text', 'attachment', 'story_reply', 'story_mention']);
      expect(messages[0]!.text).toBe('Oi! Vocês entregam em Porto Alegre?');
      expect(messages[1]!.attachments).toEqual([{ type: 'image', url: expect.stringMatching(/^https:\/\/lookaside\.fbsbx\.com\/ig_messaging_cdn\//) }]);
      expect(messages[2]!.text).toBe('Essa cor é linda 😍 tem no tamanho P?');
      for (const m of messages.slice(2)) expect(m.storyUrl).toMatch(/^https:\/\/lookaside\.fbsbx\.com\/ig_messaging_cdn\//);
      // The mention's story is its link, not an attachment the engine would be told about.
      expect(messages[3]!.attachments).toEqual([]);
      expect(fakes.calls.createOutbound[0]!.covers).toEqual(messages.map((m) => m.messageId));
    });
  });

  it('Instagram story replies and mentions are stored but not answered when the tenant ignores them', async () => {
    await scenario({ settings: { storyReplies: 'ignore' } }, async (c, fakes) => {
      const now = Date.now();
      const [reply, mention] = fixtureEvents(['ig-story-reply.json', 'ig-story-mention.json'], now - 1000);
      const [dm] = fixtureEvents(['ig-text-dm.json'], now);
      for (const e of [reply!, mention!, dm!]) await c.send(e);
      await waitFor(() => fakes.sent.length === 1, 'the answer to the DM');
      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual([reply!.dedupeKey, mention!.dedupeKey, dm!.dedupeKey]);
      expect(fakes.calls.planReplyStep.map((i) => i.messages.map((m) => m.kind))).toEqual([['text']]);
      expect(fakes.calls.createOutbound[0]!.covers).toEqual([`msg:${dm!.dedupeKey}`]);
    });
  });
});

// ---- continue-as-new ---------------------------------------------------------------------------

describe('conversationWorkflow: continue-as-new in the middle of a burst', () => {
  it('a run started with the burst and pending events that continue-as-new carries answers them in one turn (input built by hand)', async () => {
    // This builds the continued run's input by hand (as continueAsNew passes it); the next test
    // makes the server really suggest continue-as-new.
    await scenario({ settings: { debounceMs: 300 } }, async (c, fakes) => {
      const t = Date.now();
      const carried: TurnMessage[] = [
        { messageId: messageIdOf('c1'), kind: 'text', text: 'first', attachments: [], timestamp: t - 200 },
        { messageId: messageIdOf('c2'), kind: 'text', text: 'second', attachments: [], timestamp: t - 100 },
      ];
      const pending: MessageEvent = textMessage('c3', t, 'third');
      const input: ConversationInput = {
        ...c.input,
        seenKeys: ['mid:c1', 'mid:c2', 'mid:c3'],
        burst: carried.map((message) => ({ message, joinedAt: t - 50 })),
        pending: [{ ...pending, customerId: c.input.customerId }],
      };
      await client.workflow.start('conversationWorkflow', { workflowId: c.workflowId, taskQueue: c.taskQueue, args: [input] });
      await waitFor(() => fakes.sent.length === 1, 'the answer');
      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual(['mid:c3']);
      expect(fakes.calls.planReplyStep.map((i) => ids(i.messages))).toEqual([[messageIdOf('c1'), messageIdOf('c2'), messageIdOf('c3')]]);
      expect(fakes.calls.createOutbound[0]).toMatchObject({ inReplyTo: messageIdOf('c3'), covers: [messageIdOf('c1'), messageIdOf('c2'), messageIdOf('c3')] });
      // A redelivery of a key the previous run had seen is ignored.
      await c.send(pending);
      await c.send(textMessage('c4', Date.now()));
      await waitFor(() => fakes.sent.length === 2, 'the second answer');
      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey)).toEqual(['mid:c3', 'mid:c4']);
    });
  });
});

describe('conversationWorkflow: continue-as-new suggested by the server', () => {
  // A dev server of its own whose history limit suggests continue-as-new after 20 events (the
  // default is 4 Ki), so a short burst really crosses a run boundary.
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    const path = resolveTemporalCli();
    if (!path) throw new Error('Temporal CLI not found: run `node scripts/setup.js --test`');
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path },
        searchAttributes: CUSTOM_SEARCH_ATTRIBUTES,
        extraArgs: ['--log-level', 'error', '--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=20'],
      },
    });
  }, 60_000);
  afterAll(async () => {
    await env?.teardown();
  });

  it('a burst split across runs loses nothing: every message is covered by exactly one answer', async () => {
    const fakes = createConversationFakes({ settings: { debounceMs: 1500 } });
    await withConversationWorker({ nativeConnection: env.nativeConnection, bundleCode }, fakes.activities, async (taskQueue, track) => {
      const c = conversation(env.client, taskQueue);
      track(c);
      const t = Date.now();
      const mids = Array.from({ length: 12 }, (_, i) => `n${i}`);
      const first = await c.send(textMessage(mids[0]!, t, 'message 0'));
      const firstRunId = (await first.describe()).runId;
      for (const [i, mid] of mids.entries()) if (i > 0) await c.send(textMessage(mid, t + i, `message ${i}`));

      const covered = () => fakes.calls.createOutbound.flatMap((i) => i.covers ?? []);
      await waitFor(() => covered().length >= mids.length && fakes.sent.length === fakes.calls.createOutbound.length, 'every message to be answered');

      const firstRun = env.client.workflow.getHandle(c.workflowId, firstRunId);
      expect((await firstRun.describe()).status.name).toBe('CONTINUED_AS_NEW');
      const history = await firstRun.fetchHistory();
      const last = history.events!.at(-1)!;
      const carried = defaultPayloadConverter.fromPayload<ConversationInput>(last.workflowExecutionContinuedAsNewEventAttributes!.input!.payloads![0]!);
      // The run ended while the burst was still gathering (the quiet window had not passed).
      expect(carried.burst!.length).toBeGreaterThan(0);
      expect(carried.seenKeys!.length).toBeGreaterThanOrEqual(carried.burst!.length);

      expect([...covered()].sort()).toEqual(mids.map(messageIdOf).sort());
      expect(fakes.calls.recordInbound.map((i) => i.event.dedupeKey).sort()).toEqual(mids.map((m) => `mid:${m}`).sort());
      expect(fakes.calls.loadConversationSnapshot.length).toBeGreaterThanOrEqual(2);
      expect((await c.handle().describe()).status.name).toBe('RUNNING');
    });
  });
});
