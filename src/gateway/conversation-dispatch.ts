import type { Client } from '@temporalio/client';
import type { ChannelRoute } from '../db/channels';
import type { InboundEvent } from '../shared/types';
import { conversationWorkflowId } from '../temporal/ids';
import { CHANNEL_ID, PLATFORM, TENANT_ID } from '../temporal/search-attributes';
import { inboundEventSignal, type ConversationInput } from '../../workflows/definitions';

export interface DispatchOptions {
  taskQueue: string;
  idleTimeoutMs: number;
}

/** Hands one event to its conversation workflow, starting the workflow if no run is open. */
export async function dispatchToConversation(client: Client, opts: DispatchOptions, channel: ChannelRoute, event: InboundEvent): Promise<void> {
  const input: ConversationInput = {
    tenantId: channel.tenantId,
    channelId: channel.id,
    platform: channel.platform,
    customerId: event.customerId,
    idleTimeoutMs: opts.idleTimeoutMs,
  };
  await client.workflow.signalWithStart('conversationWorkflow', {
    workflowId: conversationWorkflowId(channel.tenantId, channel.id, event.customerId),
    taskQueue: opts.taskQueue,
    args: [input],
    signal: inboundEventSignal,
    signalArgs: [event],
    typedSearchAttributes: [
      { key: TENANT_ID, value: channel.tenantId },
      { key: CHANNEL_ID, value: channel.id },
      { key: PLATFORM, value: channel.platform },
    ],
  });
}
