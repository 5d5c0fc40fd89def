import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DAY_MS, HOUR_MS } from '../../src/shared/outbound';
import { channelReconnectedSignal } from '../../workflows/token-lifecycle-definitions';
import {
  CHANNEL,
  TENANT,
  conversation,
  createConversationFakes,
  textMessage,
  waitFor,
  withConversationWorker,
  type ConversationFakes,
  type FakeOptions,
  type TestConversation,
} from '../support/conversation-fakes';
import { loadWorkflowBundle } from '../support/saga-harness';
import { startTimeSkippingEnv } from '../support/time-skipping';

/**
 * The messaging window of replies parked while the channel needed reauthorization, decided again
 * when the reconnect delivers them: days pass here, so this runs on the time-skipping server with
 * the recording fakes (test/support/conversation-fakes.ts). The real activities, the gateway and
 * a bot reply whose 24-hour window closes while parked are in parked-sends.test.ts.
 */

let bundleCode: string;
let env: TestWorkflowEnvironment;

beforeAll(() => {
  bundleCode = loadWorkflowBundle();
});

/** One test server per test (see conversation-timers.test.ts: its clock is global). */
async function scenario(options: FakeOptions, fn: (c: TestConversation, fakes: ConversationFakes) => Promise<void>): Promise<void> {
  env = await startTimeSkippingEnv();
  try {
    const fakes = createConversationFakes(options);
    await withConversationWorker({ nativeConnection: env.nativeConnection, bundleCode }, fakes.activities, async (taskQueue, track) => {
      const c = conversation(env.client, taskQueue, { idleTimeoutMs: 30 * DAY_MS });
      track(c);
      await fn(c, fakes);
    });
  } finally {
    await env.teardown();
  }
}

const serverNow = () => env.currentTimeMs();
const PARKED_REASON = 'parked while the channel needed reauthorization, and the messaging window closed meanwhile';

async function reconnect(c: TestConversation, fakes: ConversationFakes): Promise<void> {
  fakes.db.channelStatus = 'active';
  await c.handle().signal(channelReconnectedSignal, { channelId: CHANNEL, reconnectedAt: await serverNow() });
}

describe('parked replies and the messaging window', () => {
  it('two days later: the bot reply is expired with the parking reason, the human agent message goes with HUMAN_AGENT, in order', async () => {
    await scenario({ initial: { channelStatus: 'reauth_required' } }, async (c, fakes) => {
      await c.send(textMessage('w1', await serverNow(), 'where is my parcel?'));
      await waitFor(() => fakes.calls.markOutboundParked.length === 1, 'the bot reply to be parked');
      await env.sleep(HOUR_MS);
      await c.command({ kind: 'send', requestId: 'op-r1', operator: 'op-1', text: 'Let me check that for you.' });
      await waitFor(() => fakes.calls.markOutboundParked.length === 2, 'the agent message to be parked');
      const [bot, agent] = [...fakes.outbound.values()];
      expect((await c.state()).parkedSends.map((p) => [p.outboundId, p.reason])).toEqual([
        [bot!.id, 'reauth_required'],
        [agent!.id, 'reauth_required'],
      ]);
      // The first reached the activity (which refused: the channel needs reauthorization); the second waited behind it, untried.
      expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([bot!.id]);

      await env.sleep(2 * DAY_MS);
      await reconnect(c, fakes);
      await waitFor(() => fakes.sent.length === 1, 'the agent message');
      expect(fakes.calls.unparkOutbound.map((i) => i.outboundId)).toEqual([bot!.id, agent!.id]);
      expect(fakes.calls.markOutboundOutsideWindow).toEqual([
        { tenantId: TENANT, outboundId: bot!.id, reason: expect.stringContaining(PARKED_REASON) },
      ]);
      expect(fakes.calls.markOutboundOutsideWindow[0]!.reason).toContain('24-hour window is closed');
      expect(fakes.sent).toEqual([expect.objectContaining({ outboundId: agent!.id, messagingType: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' })]);
      expect([bot!.status, agent!.status]).toEqual(['outside_window', 'sent']);
      expect((await c.state()).parkedSends).toEqual([]);
    });
  });

  it('past 7 days: a parked human agent message is expired with the parking reason and never sent', async () => {
    // The customer wrote just now (an earlier run stored it): the snapshot carries the window.
    await scenario({ initial: { channelStatus: 'reauth_required', lastCustomerAt: Date.now() } }, async (c, fakes) => {
      await c.command({ kind: 'send', requestId: 'op-r2', operator: 'op-1', text: 'We are on it.' });
      await waitFor(() => fakes.calls.markOutboundParked.length === 1, 'the agent message to be parked');
      const [agent] = [...fakes.outbound.values()];

      await env.sleep(7 * DAY_MS + HOUR_MS);
      await reconnect(c, fakes);
      await waitFor(() => fakes.calls.markOutboundOutsideWindow.length === 1, 'the expiry');
      expect(fakes.calls.markOutboundOutsideWindow[0]).toEqual({ tenantId: TENANT, outboundId: agent!.id, reason: expect.stringContaining(PARKED_REASON) });
      expect(fakes.calls.markOutboundOutsideWindow[0]!.reason).toContain('7-day HUMAN_AGENT window');
      expect(fakes.calls.sendOutbound.map((i) => i.outboundId)).toEqual([agent!.id]);
      expect(fakes.sent).toEqual([]);
      expect(agent!.status).toBe('outside_window');
    });
  });
});
