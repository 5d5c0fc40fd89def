import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { InboundEvent, Platform } from '../src/shared/types';

/** Signals, queries and inputs of the conversation workflow, shared by the gateway and the workflow. */

export const inboundEventSignal = defineSignal<[InboundEvent]>('inboundEvent');

export interface ConversationInput {
  tenantId: string;
  channelId: string;
  platform: Platform;
  customerId: string;
  /** The run completes after this long without events; the next message starts a new run. */
  idleTimeoutMs: number;
  /** Carried through continue-as-new. */
  seenKeys?: string[];
  pending?: InboundEvent[];
}

export interface ConversationState {
  queued: number;
  processed: number;
  seenKeys: number;
}

export const conversationStateQuery = defineQuery<ConversationState>('getState');

/** The dedupe set is bounded so a long conversation's history stays small across continue-as-new. */
export const MAX_SEEN_KEYS = 2000;

/** Sent when the reply engine fails: never silence, never a stack trace. */
export const FALLBACK_REPLY = "Thanks for your message! We'll get back to you shortly.";
