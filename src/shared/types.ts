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
}
