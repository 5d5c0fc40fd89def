import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ConversationMode, InboundEvent, Platform, TurnMessage } from '../src/shared/types';

/** Signals, queries and inputs of the conversation workflow, shared by the gateway and the workflow. */

export const inboundEventSignal = defineSignal<[InboundEvent]>('inboundEvent');

/** What an operator asks of a conversation through the admin API. `requestId` makes a resend a no-op. */
export type OperatorCommand =
  | { kind: 'send'; requestId: string; operator: string; text: string }
  | { kind: 'handoff'; requestId: string; operator: string; to: ConversationMode; reason?: string };

export const operatorCommandSignal = defineSignal<[OperatorCommand]>('operatorCommand');

/**
 * A decided send waiting for its turn (budget, throttling, an unconfirmed ambiguous send), or
 * parked until its channel is reauthorized (`reauth_required`: in order, until the reconnect's
 * `channelReconnected` signal; the row is `parked` in the database meanwhile).
 */
export interface ParkedSend {
  outboundId: string;
  author: 'bot' | 'human_agent';
  /** Epoch ms until which it waits; null: until the channel is reconnected. */
  waitingUntil: number | null;
  reason: 'budget' | 'paused' | 'rate_limited' | 'awaiting_echo' | 'reauth_required';
}

/** A burst item waiting for the quiet window to close (carried through continue-as-new). */
export interface BurstItem {
  message: TurnMessage;
  /** Workflow time it joined the burst: the quiet window runs from the newest. */
  joinedAt: number;
}

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
  commands?: OperatorCommand[];
  burst?: BurstItem[];
  /** Operator request ids already handled. */
  seenRequests?: string[];
}

export interface ConversationState {
  mode: ConversationMode;
  /** Epoch ms. */
  modeSince: number;
  lastCustomerAt: number | null;
  lastHumanAt: number | null;
  /** Events received and not yet processed. */
  queued: number;
  /** Customer messages waiting for the quiet window (or being answered). */
  burst: number;
  /** A reply is being generated right now. */
  drafting: boolean;
  parkedSends: ParkedSend[];
  processed: number;
  seenKeys: number;
}

export const conversationStateQuery = defineQuery<ConversationState>('getState');

/** The dedupe set is bounded so a long conversation's history stays small across continue-as-new. */
export const MAX_SEEN_KEYS = 2000;

/** Sent when the reply engine fails or misses its deadline: never silence, never a stack trace. */
export const FALLBACK_REPLY = "Thanks for your message! We'll get back to you shortly.";

/** Sent when the customer asked for a person and the handoff happened but the engine said nothing. */
export const HANDOFF_REPLY = "I've asked a member of our team to take over. They'll reply here soon.";

/** How long an ambiguous send waits for its echo before it is sent again. */
export const ECHO_WAIT_MS = 20_000;
/** Ambiguous sends of one message before it is recorded as failed. */
export const MAX_AMBIGUOUS_ATTEMPTS = 3;
