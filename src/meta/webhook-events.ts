/**
 * Turns a signature-verified Meta webhook body (Messenger `object: "page"` and Instagram
 * `object: "instagram"`) into normalized `InboundEvent`s plus `UnsupportedEvent`s
 * (meta-api-contract §2, §8).
 *
 * Policy:
 * - Schemas are strict on the fields we read and loose everywhere else, because Meta adds fields
 *   without versioning them (contract §2.1).
 * - Anything valid that we do not handle (unknown `object`, `standby`, `changes`, unknown
 *   `messaging` keys such as `optin` or `policy_enforcement`) becomes an `UnsupportedEvent`, so the
 *   gateway can still answer 200: a non-200 makes Meta retry and eventually unsubscribe the app
 *   (contract §1.3).
 * - A broken envelope, or a broken item of a kind we do handle (a `message` without `mid`, a
 *   missing `sender`), throws `WebhookPayloadError`. Meta never sends those, so a 400 is the
 *   honest answer and the message names the offending path.
 * - Timestamps: `messaging[].timestamp ?? entry[].time ?? 0`. The item timestamp is optional
 *   (Meta's delivery example has none); 0 only happens for payloads Meta does not document and
 *   keeps the parser total instead of inventing a clock reading.
 */
import { z } from 'zod';
import type {
  Attachment,
  InboundEvent,
  ParsedWebhook,
  Platform,
  Referral,
  UnsupportedEvent,
} from '../shared/types';

export class WebhookPayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookPayloadError';
  }
}

type PathSegment = PropertyKey;

function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}

function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  basePath: readonly PathSegment[],
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const message = result.error.issues
    .map((issue) => {
      // zod 4 prefixes type errors with "Invalid input: ", which adds nothing next to a path.
      const text = issue.message.replace(/^Invalid input: /, '');
      return `${formatPath([...basePath, ...issue.path])}: ${text}`;
    })
    .join('; ');
  throw new WebhookPayloadError(message);
}

/** Drops keys whose value is undefined, so events serialize (and compare) without noise. */
function compact<T extends object>(obj: T): T {
  for (const key of Object.keys(obj) as (keyof T)[]) {
    if (obj[key] === undefined) delete obj[key];
  }
  return obj;
}

// ---------------------------------------------------------------------------------------------
// Schemas

const envelopeSchema = z.looseObject({
  object: z.string(),
  entry: z.array(z.unknown()),
});

// Entries of objects we don't handle are only recorded, so only what the record needs is checked.
const foreignEntrySchema = z.looseObject({
  id: z.string(),
});

const messagingEntrySchema = z.looseObject({
  id: z.string(),
  time: z.number().optional(),
  messaging: z.array(z.unknown()).optional(),
  standby: z.array(z.unknown()).optional(),
  changes: z.array(z.unknown()).optional(),
});

const changeSchema = z.looseObject({ field: z.string() });

const participantSchema = z.looseObject({ id: z.string() });

const itemBaseSchema = z.looseObject({
  sender: participantSchema,
  timestamp: z.number().optional(),
});

const itemShapeSchema = z.looseObject({ timestamp: z.number().optional() });

const referralSchema = z.looseObject({
  ref: z.string().optional(),
  source: z.string().optional(),
  type: z.string().optional(),
  ad_id: z.string().optional(),
});

const attachmentSchema = z.looseObject({
  type: z.string(),
  // Legacy Messenger `fallback` attachments carry `payload: null`.
  payload: z
    .looseObject({
      url: z.string().optional(),
      title: z.string().optional(),
    })
    .nullish(),
});

const messageSchema = z.looseObject({
  mid: z.string(),
  text: z.string().optional(),
  attachments: z.array(attachmentSchema).optional(),
  is_echo: z.boolean().optional(),
  is_deleted: z.boolean().optional(),
  is_unsupported: z.boolean().optional(),
  app_id: z.union([z.number(), z.string()]).optional(),
  metadata: z.string().optional(),
  quick_reply: z.looseObject({ payload: z.string() }).optional(),
  reply_to: z
    .looseObject({
      mid: z.string().optional(),
      story: z
        .looseObject({
          url: z.string().optional(),
          id: z.string().optional(),
        })
        .optional(),
    })
    .optional(),
  referral: referralSchema.optional(),
});

const messageItemSchema = itemBaseSchema.extend({ message: messageSchema });

const echoItemSchema = messageItemSchema.extend({ recipient: participantSchema });

const postbackItemSchema = itemBaseSchema.extend({
  postback: z.looseObject({
    mid: z.string().optional(),
    title: z.string().optional(),
    payload: z.string().optional(),
    referral: referralSchema.optional(),
  }),
});

const reactionItemSchema = itemBaseSchema.extend({
  reaction: z.looseObject({
    mid: z.string(),
    action: z.enum(['react', 'unreact']),
    reaction: z.string().optional(),
    emoji: z.string().optional(),
  }),
});

const readItemSchema = itemBaseSchema.extend({
  read: z
    .looseObject({
      watermark: z.number().optional(),
      mid: z.string().optional(),
    })
    .refine((r) => r.watermark !== undefined || r.mid !== undefined, {
      message: 'expected watermark (Messenger) or mid (Instagram)',
    }),
});

const deliveryItemSchema = itemBaseSchema.extend({
  delivery: z.looseObject({
    watermark: z.number(),
    mids: z.array(z.string()).optional(),
  }),
});

const referralItemSchema = itemBaseSchema.extend({ referral: referralSchema });

// ---------------------------------------------------------------------------------------------
// Normalization

function toReferral(r: z.output<typeof referralSchema>): Referral {
  return compact({ ref: r.ref, source: r.source, type: r.type, adId: r.ad_id });
}

function toAttachments(list: z.output<typeof attachmentSchema>[] | undefined): Attachment[] {
  return (list ?? []).map((a) =>
    compact({ type: a.type, url: a.payload?.url ?? undefined, title: a.payload?.title ?? undefined }),
  );
}

/** Keys every messaging item carries; the remaining key names the event. */
const ITEM_ENVELOPE_KEYS = new Set(['sender', 'recipient', 'timestamp']);

interface EntryContext {
  object: string;
  platform: Platform;
  accountId: string;
  entryTime: number | undefined;
}

function parseMessagingItem(
  item: unknown,
  ctx: EntryContext,
  path: readonly PathSegment[],
): InboundEvent | UnsupportedEvent {
  const shape = parseOrThrow(itemShapeSchema, item, path);
  const timestamp = shape.timestamp ?? ctx.entryTime ?? 0;
  const base = { platform: ctx.platform, accountId: ctx.accountId, timestamp };

  if ('message' in shape) {
    // Peek before validating: an echo must also carry `recipient`, the customer it went to.
    const peek = shape.message as { is_echo?: unknown } | null | undefined;
    if (typeof peek === 'object' && peek !== null && peek.is_echo === true) {
      const it = parseOrThrow(echoItemSchema, item, path);
      const m = it.message;
      return compact({
        kind: 'echo' as const,
        ...base,
        customerId: it.recipient.id,
        dedupeKey: `mid:${m.mid}`,
        mid: m.mid,
        text: m.text,
        attachments: toAttachments(m.attachments),
        metadata: m.metadata,
        appId: m.app_id === undefined ? undefined : String(m.app_id),
      });
    }
    const it = parseOrThrow(messageItemSchema, item, path);
    const m = it.message;
    const customerId = it.sender.id;
    if (m.is_deleted === true) {
      return { kind: 'message_deleted' as const, ...base, customerId, dedupeKey: `deleted:${m.mid}`, mid: m.mid };
    }
    const story = m.reply_to?.story;
    return compact({
      kind: 'message' as const,
      ...base,
      customerId,
      dedupeKey: `mid:${m.mid}`,
      mid: m.mid,
      text: m.text,
      attachments: toAttachments(m.attachments),
      quickReplyPayload: m.quick_reply?.payload,
      replyTo: m.reply_to
        ? compact({
            mid: m.reply_to.mid,
            story: story ? compact({ url: story.url, id: story.id }) : undefined,
          })
        : undefined,
      referral: m.referral ? toReferral(m.referral) : undefined,
      isUnsupported: m.is_unsupported,
    });
  }

  if ('postback' in shape) {
    const it = parseOrThrow(postbackItemSchema, item, path);
    const p = it.postback;
    const customerId = it.sender.id;
    return compact({
      kind: 'postback' as const,
      ...base,
      customerId,
      // `mid` only exists since v11 and postbacks on standby lack a payload (contract §2.2).
      dedupeKey: p.mid ? `mid:${p.mid}` : `postback:${customerId}:${timestamp}:${p.payload ?? ''}`,
      mid: p.mid,
      title: p.title,
      payload: p.payload,
      referral: p.referral ? toReferral(p.referral) : undefined,
    });
  }

  if ('reaction' in shape) {
    const it = parseOrThrow(reactionItemSchema, item, path);
    const r = it.reaction;
    const customerId = it.sender.id;
    return compact({
      kind: 'reaction' as const,
      ...base,
      customerId,
      // The same message can be reacted to, unreacted and re-reacted: the timestamp tells them apart.
      dedupeKey: `reaction:${r.mid}:${r.action}:${r.reaction ?? ''}:${timestamp}`,
      mid: r.mid,
      action: r.action,
      reaction: r.reaction,
      emoji: r.emoji,
    });
  }

  if ('read' in shape) {
    const it = parseOrThrow(readItemSchema, item, path);
    const r = it.read;
    const customerId = it.sender.id;
    return compact({
      kind: 'read' as const,
      ...base,
      customerId,
      dedupeKey: `read:${customerId}:${r.watermark ?? r.mid}`,
      watermark: r.watermark,
      mid: r.mid,
    });
  }

  if ('delivery' in shape) {
    const it = parseOrThrow(deliveryItemSchema, item, path);
    const d = it.delivery;
    const customerId = it.sender.id;
    return {
      kind: 'delivery' as const,
      ...base,
      customerId,
      dedupeKey: `delivery:${customerId}:${d.watermark}`,
      watermark: d.watermark,
      mids: d.mids ?? [],
    };
  }

  if ('referral' in shape) {
    const it = parseOrThrow(referralItemSchema, item, path);
    const customerId = it.sender.id;
    return {
      kind: 'referral' as const,
      ...base,
      customerId,
      dedupeKey: `referral:${customerId}:${timestamp}`,
      referral: toReferral(it.referral),
    };
  }

  // Not validated further: e.g. policy_enforcement has no sender, and we only record these.
  const eventKey = Object.keys(shape).find((k) => !ITEM_ENVELOPE_KEYS.has(k)) ?? 'unknown';
  return {
    object: ctx.object,
    platform: ctx.platform,
    accountId: ctx.accountId,
    eventType: `messaging:${eventKey}`,
    timestamp,
    raw: item,
  };
}

function isUnsupported(e: InboundEvent | UnsupportedEvent): e is UnsupportedEvent {
  return 'eventType' in e;
}

function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Reads a timestamp from an item we don't validate, without failing on odd shapes. */
function looseTimestamp(item: unknown): number | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  return finiteNumber((item as { timestamp?: unknown }).timestamp);
}

function platformOf(object: string): Platform | undefined {
  if (object === 'page') return 'messenger';
  if (object === 'instagram') return 'instagram';
  return undefined;
}

const ENTRY_ENVELOPE_KEYS = new Set(['id', 'time']);

export function parseWebhookPayload(body: unknown): ParsedWebhook {
  const envelope = parseOrThrow(envelopeSchema, body, []);
  const { object } = envelope;
  const platform = platformOf(object);
  const events: InboundEvent[] = [];
  const unsupported: UnsupportedEvent[] = [];

  envelope.entry.forEach((rawEntry, i) => {
    const entryPath = ['entry', i] as const;

    if (platform === undefined) {
      const entry = parseOrThrow(foreignEntrySchema, rawEntry, entryPath);
      unsupported.push({
        object,
        accountId: entry.id,
        eventType: `object:${object}`,
        timestamp: finiteNumber(entry['time']) ?? 0,
        raw: rawEntry,
      });
      return;
    }

    const entry = parseOrThrow(messagingEntrySchema, rawEntry, entryPath);
    if (entry.messaging === undefined && entry.standby === undefined && entry.changes === undefined) {
      // A shape Meta has not documented yet: recorded rather than dropped, so it is visible.
      const key = Object.keys(entry).find((k) => !ENTRY_ENVELOPE_KEYS.has(k)) ?? 'empty';
      unsupported.push({
        object,
        platform,
        accountId: entry.id,
        eventType: `entry:${key}`,
        timestamp: entry.time ?? 0,
        raw: rawEntry,
      });
      return;
    }

    const ctx: EntryContext = { object, platform, accountId: entry.id, entryTime: entry.time };

    entry.messaging?.forEach((item, j) => {
      const event = parseMessagingItem(item, ctx, [...entryPath, 'messaging', j]);
      if (isUnsupported(event)) unsupported.push(event);
      else events.push(event);
    });

    entry.standby?.forEach((item) => {
      unsupported.push({
        object,
        platform,
        accountId: entry.id,
        eventType: 'standby',
        timestamp: looseTimestamp(item) ?? entry.time ?? 0,
        raw: item,
      });
    });

    entry.changes?.forEach((item, j) => {
      const change = parseOrThrow(changeSchema, item, [...entryPath, 'changes', j]);
      unsupported.push({
        object,
        platform,
        accountId: entry.id,
        eventType: `changes:${change.field}`,
        // `entry.time` may be in seconds for `changes` (contract §9 #8); it is only recorded here.
        timestamp: entry.time ?? 0,
        raw: item,
      });
    });
  });

  return { object, events, unsupported };
}
