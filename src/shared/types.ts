/**
 * Types shared by the gateway, workflows and activities. Workflow code imports this module,
 * so it must stay free of runtime imports (types and plain constants only).
 */

export type Platform = 'messenger' | 'instagram';

export interface Attachment {
  /** Meta's attachment type: image, video, audio, file, story_mention, share, sticker, fallback, … */
  type: string;
  /** CDN URL; it expires, so it is a pointer, not the content. */
  url?: string;
  title?: string;
}

export interface Referral {
  ref?: string;
  source?: string;
  type?: string;
  adId?: string;
}

interface EventBase {
  platform: Platform;
  /** `entry[].id`: the Page ID or the Instagram professional account ID that received the event. */
  accountId: string;
  /** PSID / IGSID of the customer: `sender.id` for inbound events, `recipient.id` for echoes. */
  customerId: string;
  /** Epoch milliseconds: `messaging[].timestamp`, else `entry[].time`. */
  timestamp: number;
  /** Idempotency key per meta-api-contract §8 (mid for messages, echoes and postbacks). */
  dedupeKey: string;
}

export interface MessageEvent extends EventBase {
  kind: 'message';
  mid: string;
  text?: string;
  attachments: Attachment[];
  quickReplyPayload?: string;
  replyTo?: { mid?: string; story?: { url?: string; id?: string } };
  referral?: Referral;
  isUnsupported?: boolean;
}

export interface EchoEvent extends EventBase {
  kind: 'echo';
  mid: string;
  text?: string;
  attachments: Attachment[];
  /** The `metadata` string we passed to the Send API; absent when a human replied from Meta's inbox. */
  metadata?: string;
  appId?: string;
}

export interface PostbackEvent extends EventBase {
  kind: 'postback';
  mid?: string;
  title?: string;
  payload?: string;
  referral?: Referral;
}

export interface ReactionEvent extends EventBase {
  kind: 'reaction';
  /** The message reacted to. */
  mid: string;
  action: 'react' | 'unreact';
  reaction?: string;
  emoji?: string;
}

export interface ReadEvent extends EventBase {
  kind: 'read';
  /** Messenger: every message before the watermark was read. */
  watermark?: number;
  /** Instagram (`messaging_seen`): the one message that was seen. */
  mid?: string;
}

export interface DeliveryEvent extends EventBase {
  kind: 'delivery';
  watermark: number;
  mids: string[];
}

export interface MessageDeletedEvent extends EventBase {
  kind: 'message_deleted';
  mid: string;
}

export interface ReferralEvent extends EventBase {
  kind: 'referral';
  referral: Referral;
}

/** One customer-scoped event from a Meta webhook, normalized across Messenger and Instagram. */
export type InboundEvent =
  | MessageEvent
  | EchoEvent
  | PostbackEvent
  | ReactionEvent
  | ReadEvent
  | DeliveryEvent
  | MessageDeletedEvent
  | ReferralEvent;

export type InboundEventKind = InboundEvent['kind'];

/** Something valid in the delivery that we do not handle (yet): recorded, acknowledged, not routed. */
export interface UnsupportedEvent {
  /** The envelope's `object` (`page`, `instagram`, or anything else Meta may send). */
  object: string;
  platform?: Platform;
  accountId: string;
  /** e.g. `changes:comments`, `messaging:policy_enforcement`, `object:whatsapp_business_account`. */
  eventType: string;
  timestamp: number;
  raw: unknown;
}

export interface ParsedWebhook {
  object: string;
  events: InboundEvent[];
  unsupported: UnsupportedEvent[];
}

/** Identifies one conversation: the unit of a conversation workflow. */
export interface ConversationRef {
  tenantId: string;
  channelId: string;
  customerId: string;
}

/** Details attached to a failed send (also stored on the message row). */
export interface SendFailureDetails {
  errorClass: string;
  reauth: boolean;
  code?: number;
  subcode?: number;
  fbtraceId?: string;
  /** Throttled sends (`GraphRateLimited`): how long Meta asked us to stay away. */
  retryAfterMs?: number;
}

// ---------------------------------------------------------------------------------------------
// The conversation agent (issue 5)

/** Who answers the customer: the bot, or a human agent (the bot stays silent). */
export type ConversationMode = 'bot_active' | 'human_active';

export type ReplyEngineKind = 'catalog' | 'openai-compatible';

/** The per-tenant settings the conversation workflow decides with (no secrets). */
export interface AgentSettings {
  engine: ReplyEngineKind;
  /** Quiet window that gathers a burst into one answer (0–3000 ms). */
  debounceMs: number;
  /** The whole turn (every engine step and tool call) must finish within this, else the fallback is sent. */
  turnDeadlineMs: number;
  /** Story replies and mentions: answered, or stored only. */
  storyReplies: 'answer' | 'ignore';
  /** A handed-off conversation returns to the bot after this long without human activity. */
  handoffIdleMs: number;
  /** BCP 47 language the assistant answers in by default (e.g. `en`, `de`). */
  language: string;
}

/** What a conversation workflow run needs from the database to start deciding. */
export interface ConversationSnapshot {
  conversationId: string;
  mode: ConversationMode;
  /** Epoch ms of the last mode change. */
  modeSince: number;
  /** Epoch ms (Meta timestamp) of the customer's last message: the 24-hour window. */
  lastCustomerAt?: number;
  /** Epoch ms of a human agent's last message (inbox echo or operator send). */
  lastHumanAt?: number;
  settings: AgentSettings;
}

/** One customer message of a turn, as the reply engine sees it. */
export interface TurnMessage {
  messageId: string;
  kind: 'text' | 'attachment' | 'quick_reply' | 'postback' | 'story_reply' | 'story_mention';
  text?: string;
  /** Attachment types (image, video, audio, file, …): the engine is told what was sent, not given the bytes. */
  attachments: Array<{ type: string; url?: string }>;
  /** Quick reply or postback payload. */
  payload?: string;
  /** The story replied to or mentioned in. */
  storyUrl?: string;
  /** Epoch ms. */
  timestamp: number;
}

export type ToolName = 'search_products' | 'get_business_info' | 'handoff_to_human';

export interface ToolCall {
  /** The engine's call id (Chat Completions `tool_calls[].id`), echoed back with the result. */
  id: string;
  name: ToolName;
  arguments: Record<string, unknown>;
}

export interface ToolResult {
  callId: string;
  name: ToolName;
  /** JSON the engine reads; on failure `{ error: "…" }`. */
  content: unknown;
  ok: boolean;
}

/** One round of tool use: what the engine asked for and what the tools answered. */
export interface ToolExchange {
  calls: ToolCall[];
  results: ToolResult[];
  /** Text the engine said alongside its tool calls, if any. */
  assistantText?: string;
}

export interface TurnRequest {
  tenantId: string;
  conversationId: string;
  /** The customer's messages this answer covers (a debounced burst), oldest first. */
  messages: TurnMessage[];
  exchanges: ToolExchange[];
  /** No more tool rounds allowed: the engine must answer with text. */
  final: boolean;
}

export type EngineStep = { kind: 'reply'; text: string } | { kind: 'tool_calls'; calls: ToolCall[]; assistantText?: string };

/** Messaging policy decided by the workflow (meta-api-contract §3). */
export type SendPolicy =
  | { send: true; messagingType: 'RESPONSE' }
  | { send: true; messagingType: 'MESSAGE_TAG'; tag: 'HUMAN_AGENT' }
  | { send: false; reason: string };

export interface SendOutboundInput {
  tenantId: string;
  channelId: string;
  outboundId: string;
  customerId: string;
  messagingType: 'RESPONSE' | 'MESSAGE_TAG';
  tag?: 'HUMAN_AGENT';
  /** 0 for the first send of a decision; +1 after each unconfirmed ambiguous send. */
  round?: number;
}

/** A send-budget reservation: granted now, or wait this long (the workflow waits durably). */
export type SendSlot = { granted: true } | { granted: false; waitMs: number; reason: 'budget' | 'paused' };
