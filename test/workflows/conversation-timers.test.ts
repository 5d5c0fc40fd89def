import { readFileSync } from 'node:fs';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DAY_MS, HOUR_MS } from '../../src/shared/outbound';
import type { SendSlot } from '../../src/shared/types';
import { CONVERSATION_STATE } from '../../src/temporal/search-attributes';
import { ECHO_WAIT_MS, MAX_AMBIGUOUS_ATTEMPTS, type ConversationState } from '../../workflows/definitions';
import {
  TENANT,
  CHANNEL,
  conversation,
  createConversationFakes,
  echo,
  graphFailures,
  messageIdOf,
  textMessage,
  waitFor,
  withConversationWorker,
  type ConversationFakes,
  type FakeOptions,
  type TestConversation,
} from '../support/conversation-fakes';
import { installQuietRuntime, required } from '../support/stack';
import { startTimeSkippingEnv } from '../support/time-skipping';

/**
 * The conversation workflow's timers on Temporal's time-skipping test server: the messaging
 * window (23 h 59 m, 24 h 01 m, 7 days), the handoff's idle return, the 20 s echo wait of an
 * ambiguous send, and durable budget / throttling waits. Time stands still (runs at wall-clock
 * speed) until a test calls `env.sleep(…)`, so what the workflow shows while it waits can be
 * queried without a race. Event timestamps are taken from the server's clock.
 */

const MINUTE_MS = 60_000;


let bundleCode: string;
/** The current test's server. */
let env: TestWorkflowEnvironment;

beforeAll(() => {
  installQuietRuntime();
  bundleCode = readFileSync(required('TEST_WORKFLOW_BUNDLE'), 'utf8');
});

/**
 * One test server per test: its clock is global, and a workflow terminated while one of its
 * workflow tasks is in flight leaves the server's time-skipping locked (a later `env.sleep`
 * then waits in real time), so tests must not share a server.
 */
async function scenario(options: FakeOptions & { idleTimeoutMs?: number }, fn: (c: TestConversation, fakes: ConversationFakes) => Promise<void>): Promise<void> {
  env = await startTimeSkippingEnv();
  try {
    const fakes = createConversationFakes(options);
    await withConversationWorker({ nativeConnection: env.nativeConnection, bundleCode }, fakes.activities, async (taskQueue, track) => {
      const c = conversation(env.client, taskQueue, { idleTimeoutMs: options.idleTimeoutMs ?? 30 * DAY_MS });
      track(c);
      await fn(c, fakes);
    });
  } finally {
    await env.teardown();
  }
}

const serverNow = () => env.currentTimeMs();

async function processed(c: TestConversation, n: number): Promise<ConversationState> {
  return waitFor(async () => {
    const s = await c.state();
    return s.processed >= n && s.queued === 0 ? s : undefined;
  }, `${n} processed events`);
}

async function parked(c: TestConversation, reason: string): Promise<ConversationState['parkedSends'][number]> {
  return waitFor(async () => (await c.state()).parkedSends.find((p) => p.reason === reason), `a send parked for ${reason}`);
}

describe('messaging window', () => {
  it('a bot answers a message 23 h 59 m old with RESPONSE', async () => {
    await scenario({}, async (c, fakes) => {
      await c.send(textMessage('w1', (await serverNow()) - (23 * HOUR_MS + 59 * MINUTE_MS)));
      await waitFor(() => fakes.sent.length === 1, 'the answer');
      expect(fakes.calls.sendOutbound).toEqual([expect.objectContaining({ messagingType: 'RESPONSE' })]);
      expect(fakes.calls.sendOutbound[0]!.tag).toBeUndefined();
      expect(fakes.calls.markOutboundOutsideWindow).toHaveLength(0);
    });
  });

  it('a bot does not answer a message 24 h 01 m old: the reply is recorded outside the window, never sent', async () => {
    await scenario({}, async (c, fakes) => {
      await c.send(textMessage('w2', (await serverNow()) - (24 * HOUR_MS + MINUTE_MS)));
      await waitFor(() => fakes.calls.markOutboundOutsideWindow.length === 1, 'the outside-window record');
      const row = [...fakes.outbound.values()][0]!;
      expect(fakes.calls.markOutboundOutsideWindow).toEqual([{ tenantId: TENANT, outboundId: row.id, reason: expect.stringContaining('24-hour window is closed') }]);
      expect(row.status).toBe('outside_window');
      expect(fakes.calls.reserveSendSlot).toHaveLength(0);
      expect(fakes.calls.sendOutbound).toHaveLength(0);
    });
  });

  it('a human agent answers with RESPONSE at 23 h 59 m, MESSAGE_TAG/HUMAN_AGENT at 24 h 01 m, and not at all at 7 days + 1 min', async () => {
    await scenario({}, async (c, fakes) => {
      const customerAt = await serverNow();
      await c.send(textMessage('h1', customerAt, 'is anyone there?'));
      await waitFor(() => fakes.sent.length === 1, 'the bot answer');

      const operatorSend = async (requestId: string, text: string) => c.command({ kind: 'send', requestId, operator: 'op-1', text });
      await env.sleep(23 * HOUR_MS + 59 * MINUTE_MS);
      await operatorSend('r1', 'Sorry for the wait!');
      await waitFor(() => fakes.sent.length === 2, 'the agent message at 23 h 59 m');

      await env.sleep(2 * MINUTE_MS);
      await operatorSend('r2', 'Your order shipped today.');
      await waitFor(() => fakes.sent.length === 3, 'the agent message at 24 h 01 m');

      await env.sleep(6 * DAY_MS);
      expect((await serverNow()) - customerAt).toBeGreaterThan(7 * DAY_MS);
      await operatorSend('r3', 'Anything else?');
      await waitFor(() => fakes.calls.markOutboundOutsideWindow.length === 1, 'the agent message past 7 days');

      expect(fakes.calls.createOutbound.map((i) => [i.author, i.clientRef])).toEqual([
        ['bot', undefined],
        ['human_agent', 'r1'],
        ['human_agent', 'r2'],
        ['human_agent', 'r3'],
      ]);
      expect(fakes.calls.sendOutbound.map((i) => [i.messagingType, i.tag])).toEqual([
        ['RESPONSE', undefined],
        ['RESPONSE', undefined],
        ['MESSAGE_TAG', 'HUMAN_AGENT'],
      ]);
      const last = fakes.calls.createOutbound.length;
      const lastRow = [...fakes.outbound.values()][last - 1]!;
      expect(fakes.calls.markOutboundOutsideWindow).toEqual([{ tenantId: TENANT, outboundId: lastRow.id, reason: expect.stringContaining('7-day HUMAN_AGENT window') }]);
      expect(fakes.calls.sendOutbound).toHaveLength(3);
    });
  });

  it("a run that starts with an operator's message takes the window from the snapshot's lastCustomerAt", async () => {
    await scenario({}, async (c, fakes) => {
      // The customer's last message is in the database from an earlier run, 24 h 01 m ago.
      fakes.db.lastCustomerAt = (await serverNow()) - (24 * HOUR_MS + MINUTE_MS);
      await c.command({ kind: 'send', requestId: 'snap-1', operator: 'op-1', text: 'Following up on your order.' });
      await waitFor(() => fakes.sent.length === 1, 'the agent message');
      expect(fakes.calls.sendOutbound).toEqual([expect.objectContaining({ messagingType: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' })]);
      expect(await c.state()).toMatchObject({ mode: 'human_active', lastCustomerAt: fakes.db.lastCustomerAt });
    });
  });
});

describe('handoff idle return', () => {
  it('returns to the bot after handoffIdleMs without human activity (each human message restarts the clock)', async () => {
    await scenario({ settings: { handoffIdleMs: 30 * MINUTE_MS }, idleTimeoutMs: 6 * HOUR_MS }, async (c, fakes) => {
      const h = await c.send(textMessage('r1', await serverNow(), 'hi'));
      await waitFor(() => fakes.sent.length === 1, 'the bot answer');

      await c.send(echo('human1', await serverNow(), 'Hi, Anna here.'));
      await waitFor(async () => (await c.state()).mode === 'human_active', 'human_active');
      expect((await h.describe()).typedSearchAttributes.get(CONVERSATION_STATE)).toBe('human_active');

      await env.sleep(20 * MINUTE_MS);
      await c.send(textMessage('r2', await serverNow(), 'thanks Anna'));
      await c.send(echo('human2', await serverNow(), 'You are welcome!'));
      await processed(c, 4);
      await env.sleep(25 * MINUTE_MS); // 45 min since the handoff, 25 since the human's last message
      expect(await c.state()).toMatchObject({ mode: 'human_active' });
      expect(fakes.calls.planReplyStep).toHaveLength(1);

      await env.sleep(6 * MINUTE_MS);
      await waitFor(async () => (await c.state()).mode === 'bot_active', 'the return to the bot');
      await waitFor(() => fakes.calls.setConversationMode.length === 2, 'the return to be stored');
      expect(fakes.calls.setConversationMode.map((i) => [i.mode, i.reason])).toEqual([
        ['human_active', 'inbox_reply'],
        ['bot_active', 'human_idle'],
      ]);
      expect((await h.describe()).typedSearchAttributes.get(CONVERSATION_STATE)).toBe('bot_active');

      await c.send(textMessage('r3', await serverNow(), 'one more question'));
      await waitFor(() => fakes.sent.length === 2, 'the bot answer after the return');
      // The message sent to the human is not answered by the bot afterwards.
      expect(fakes.calls.planReplyStep.map((i) => i.messages.map((m) => m.messageId))).toEqual([[messageIdOf('r1')], [messageIdOf('r3')]]);
    });
  });

  it('a handoff that expired while no run was open: the next message is answered by the bot (default 30 min idle timeout and handoff)', async () => {
    await scenario({ settings: { handoffIdleMs: 30 * MINUTE_MS }, idleTimeoutMs: 30 * MINUTE_MS }, async (c, fakes) => {
      const first = await c.send(textMessage('x1', await serverNow(), 'hi'));
      const firstRunId = (await first.describe()).runId;
      await waitFor(() => fakes.sent.length === 1, 'the bot answer');
      await c.command({ kind: 'send', requestId: 'x-op', operator: 'op-1', text: 'Sam here, I will take it from here.' });
      await waitFor(() => fakes.sent.length === 2, 'the agent message');
      expect(fakes.db.mode).toBe('human_active');

      await env.sleep(31 * MINUTE_MS);
      const firstRun = env.client.workflow.getHandle(c.workflowId, firstRunId);
      await waitFor(async () => (await firstRun.describe()).status.name !== 'RUNNING', 'the first run to end');

      await c.send(textMessage('x2', await serverNow(), 'hello? anyone?'));
      await waitFor(() => fakes.calls.recordInbound.length === 2, 'the message to be stored');
      await waitFor(() => fakes.sent.length === 3, 'the bot to answer once the handoff has expired');
      expect(fakes.calls.planReplyStep.map((i) => i.messages.map((m) => m.messageId))).toEqual([[messageIdOf('x1')], [messageIdOf('x2')]]);
      expect(fakes.calls.setConversationMode.map((i) => [i.mode, i.reason])).toEqual([
        ['human_active', 'operator_message'],
        ['bot_active', 'human_idle'],
      ]);
    });
  });
});

describe('ambiguous sends without an echo', () => {
  it(`sends again with the same outbound id after ${ECHO_WAIT_MS / 1000} s without an echo; one success`, async () => {
    await scenario({ overrides: { sendOutbound: async (input, next, f) => (f.sendAttempts(input.outboundId) === 1 ? Promise.reject(graphFailures.ambiguous()) : next(input)) } }, async (c, fakes) => {
      await c.send(textMessage('amb1', await serverNow()));
      const waiting = await parked(c, 'awaiting_echo');
      const row = [...fakes.outbound.values()][0]!;
      expect(waiting).toEqual({ outboundId: row.id, author: 'bot', waitingUntil: expect.any(Number), reason: 'awaiting_echo' });
      expect(waiting.waitingUntil! - (await serverNow())).toBeGreaterThan(ECHO_WAIT_MS - 5000);
      expect(fakes.calls.sendOutbound).toHaveLength(1);

      await env.sleep(ECHO_WAIT_MS + 1000);
      await waitFor(() => fakes.sent.length === 1, 'the second attempt');
      expect(fakes.calls.sendOutbound.map((i) => [i.outboundId, i.round])).toEqual([
        [row.id, 0],
        [row.id, 1],
      ]);
      expect(fakes.calls.createOutbound).toHaveLength(1);
      expect(fakes.calls.markOutboundFailed).toHaveLength(0);
      expect((await c.state()).parkedSends).toEqual([]);
    });
  });

  it(`records the message failed after ${MAX_AMBIGUOUS_ATTEMPTS} unconfirmed attempts`, async () => {
    await scenario({ overrides: { sendOutbound: async () => Promise.reject(graphFailures.ambiguous()) } }, async (c, fakes) => {
      await c.send(textMessage('amb2', await serverNow()));
      for (let attempt = 1; attempt <= MAX_AMBIGUOUS_ATTEMPTS; attempt++) {
        await waitFor(async () => fakes.calls.sendOutbound.length === attempt && (await c.state()).parkedSends.length === 1, `attempt ${attempt} to wait for its echo`);
        await env.sleep(ECHO_WAIT_MS + 1000);
      }
      await waitFor(() => fakes.calls.markOutboundFailed.length === 1, 'the failure to be recorded');
      const row = [...fakes.outbound.values()][0]!;
      expect(fakes.calls.sendOutbound.map((i) => [i.outboundId, i.round])).toEqual([
        [row.id, 0],
        [row.id, 1],
        [row.id, 2],
      ]);
      expect(fakes.calls.markOutboundFailed).toEqual([{ tenantId: TENANT, outboundId: row.id, error: { type: 'AmbiguousSend', reason: 'ambiguous' } }]);
      expect(fakes.calls.markChannelReauthRequired).toHaveLength(0);
      expect(fakes.sent).toHaveLength(0);
    });
  });
});

describe('send budget and throttling', () => {
  it('overflow waits durably, visible in getState, and goes out in order across bursts', async () => {
    const slots: SendSlot[] = [
      { granted: false, waitMs: 60_000, reason: 'budget' },
      { granted: true },
      { granted: false, waitMs: 120_000, reason: 'paused' },
      { granted: true },
      { granted: false, waitMs: 30_000, reason: 'budget' },
      { granted: true },
    ];
    await scenario({ overrides: { reserveSendSlot: async () => slots.shift() ?? { granted: true } } }, async (c, fakes) => {
      await c.send(textMessage('g1', await serverNow(), 'first'));
      const p1 = await parked(c, 'budget');
      const rows = () => [...fakes.outbound.values()];
      expect(p1).toEqual({ outboundId: rows()[0]!.id, author: 'bot', waitingUntil: expect.any(Number), reason: 'budget' });
      expect(p1.waitingUntil! - (await serverNow())).toBeGreaterThan(50_000);

      // Two more messages while the first answer waits: queued behind it.
      await c.send(textMessage('g2', await serverNow(), 'second'));
      await c.send(textMessage('g3', await serverNow(), 'third'));
      expect(await c.state()).toMatchObject({ queued: 2, parkedSends: [expect.objectContaining({ reason: 'budget' })] });
      expect(fakes.calls.sendOutbound).toHaveLength(0);

      await env.sleep(61_000);
      const p2 = await parked(c, 'paused');
      expect(p2.outboundId).toBe(rows()[1]!.id);
      expect(fakes.sent.map((s) => s.outboundId)).toEqual([rows()[0]!.id]);
      await c.send(textMessage('g4', await serverNow(), 'fourth'));

      await env.sleep(121_000);
      await parked(c, 'budget');
      await env.sleep(31_000);
      await waitFor(() => fakes.sent.length === 3, 'the third answer');

      expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual(rows().map((r) => r.id));
      expect(fakes.calls.createOutbound.map((i) => i.covers)).toEqual([[messageIdOf('g1')], [messageIdOf('g2'), messageIdOf('g3')], [messageIdOf('g4')]]);
      expect(fakes.calls.reserveSendSlot).toHaveLength(6);
      expect((await c.state()).parkedSends).toEqual([]);
    });
  });

  it('a bot reply parked past the end of the 24-hour window is not sent: the window is decided again after the wait', async () => {
    const slots: SendSlot[] = [{ granted: false, waitMs: 2 * HOUR_MS, reason: 'paused' }];
    await scenario({ overrides: { reserveSendSlot: async () => slots.shift() ?? { granted: true } } }, async (c, fakes) => {
      // The customer wrote 23 h ago: sendable when decided, closed after a 2 h pause.
      await c.send(textMessage('late1', (await serverNow()) - 23 * HOUR_MS));
      await parked(c, 'paused');
      await env.sleep(2 * HOUR_MS + MINUTE_MS);
      await waitFor(() => fakes.calls.markOutboundOutsideWindow.length === 1, 'the outside-window record');
      expect(fakes.calls.markOutboundOutsideWindow[0]).toMatchObject({ reason: expect.stringContaining('24-hour window is closed') });
      expect(fakes.calls.reserveSendSlot).toHaveLength(1);
      expect(fakes.calls.sendOutbound).toHaveLength(0);
    });
  });

  it('a send Meta throttles (GraphRateLimited) waits the retry-after durably, then goes out once', async () => {
    await scenario(
      { overrides: { sendOutbound: async (input, next, f) => (f.sendAttempts(input.outboundId) === 1 ? Promise.reject(graphFailures.rateLimited(5 * MINUTE_MS)) : next(input)) } },
      async (c, fakes) => {
        await c.send(textMessage('rl1', await serverNow()));
        const p = await parked(c, 'rate_limited');
        const row = [...fakes.outbound.values()][0]!;
        expect(p).toEqual({ outboundId: row.id, author: 'bot', waitingUntil: expect.any(Number), reason: 'rate_limited' });
        expect(p.waitingUntil! - (await serverNow())).toBeGreaterThan(4 * MINUTE_MS);

        await env.sleep(5 * MINUTE_MS + 1000);
        await waitFor(() => fakes.sent.length === 1, 'the send after the wait');
        expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([row.id, row.id]);
        expect(fakes.calls.markOutboundFailed).toHaveLength(0);
        expect(fakes.calls.sendOutbound[0]!.channelId).toBe(CHANNEL);
      },
    );
  });
});
