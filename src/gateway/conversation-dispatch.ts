import type { Client } from '@temporalio/client';
import type { ChannelRoute } from '../db/channels';
import type { InboundEvent } from '../shared/types';
import { conversationWorkflowId } from '../temporal/ids';
import { CHANNEL_ID, PLATFORM, TENANT_ID } from '../temporal/search-attributes';
import { inboundEventSignal, operatorCommandSignal, type ConversationInput, type OperatorCommand } from '../../workflows/definitions';
import { channelReconnectedSignal } from '../../workflows/token-lifecycle-definitions';

export interface DispatchOptions {
  taskQueue: string;
  idleTimeoutMs: number;
}

/** How every writer starts a conversation workflow when no run is open (signalWithStart). */
function startOptions(opts: DispatchOptions, channel: ChannelRoute, customerId: string) {
  const input: ConversationInput = {
    tenantId: channel.tenantId,
    channelId: channel.id,
    platform: channel.platform,
    customerId,
    idleTimeoutMs: opts.idleTimeoutMs,
  };
  return {
    workflowId: conversationWorkflowId(channel.tenantId, channel.id, customerId),
    taskQueue: opts.taskQueue,
    args: [input] as [ConversationInput],
    typedSearchAttributes: [
      { key: TENANT_ID, value: channel.tenantId },
      { key: CHANNEL_ID, value: channel.id },
      { key: PLATFORM, value: channel.platform },
    ],
  };
}

/** Hands one Meta event to its conversation workflow. */
export async function dispatchToConversation(client: Client, opts: DispatchOptions, channel: ChannelRoute, event: InboundEvent): Promise<void> {
  await client.workflow.signalWithStart('conversationWorkflow', {
    ...startOptions(opts, channel, event.customerId),
    signal: inboundEventSignal,
    signalArgs: [event],
  });
}

/** Hands an operator's command (send as a human agent, hand off / return) to the conversation. */
export async function dispatchOperatorCommand(client: Client, opts: DispatchOptions, channel: ChannelRoute, customerId: string, command: OperatorCommand): Promise<void> {
  await client.workflow.signalWithStart('conversationWorkflow', {
    ...startOptions(opts, channel, customerId),
    signal: operatorCommandSignal,
    signalArgs: [command],
  });
}

/**
 * Tells a conversation its channel was reconnected, so it delivers the replies it parked while
 * the channel needed reauthorization. A conversation whose run has ended starts a new run, which
 * reloads its parked replies from the database.
 */
export async function dispatchChannelReconnected(client: Client, opts: DispatchOptions, channel: ChannelRoute, customerId: string, reconnectedAt: number): Promise<void> {
  await client.workflow.signalWithStart('conversationWorkflow', {
    ...startOptions(opts, channel, customerId),
    signal: channelReconnectedSignal,
    signalArgs: [{ channelId: channel.id, reconnectedAt }],
  });
}
