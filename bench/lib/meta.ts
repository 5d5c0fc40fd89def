import { randomInt } from 'node:crypto';
import { signPayload } from '../../src/meta/signature';

/** Builders for what Meta would deliver: a signed single-message Messenger webhook. */

/** A fresh numeric id: `lead` followed by `digits` random digits (no leading zero problem: lead is 1–9). */
export function numericId(lead: number, digits: number): string {
  let s = String(lead);
  for (let i = 0; i < digits; i++) s += String(randomInt(10));
  return s;
}

export const CUSTOMER_TEXTS = [
  'Do you have the rain jacket?',
  'hello',
  'how much are the trail shoes?',
  'is the wool beanie in stock?',
  'do you sell red umbrellas?',
] as const;

export interface SignedDelivery {
  body: Buffer;
  signature: string;
}

export function messengerDelivery(secret: string, pageId: string, customerId: string, mid: string, text: string, timestamp: number): SignedDelivery {
  const body = Buffer.from(
    JSON.stringify({
      object: 'page',
      entry: [
        {
          id: pageId,
          time: timestamp,
          messaging: [{ sender: { id: customerId }, recipient: { id: pageId }, timestamp, message: { mid, text } }],
        },
      ],
    }),
    'utf8',
  );
  return { body, signature: signPayload(secret, body) };
}

/** Meta timestamps in ms, strictly increasing across the run so a conversation's order is its send order. */
export function monotonicClock(): () => number {
  let last = 0;
  return () => {
    last = Math.max(Date.now(), last + 1);
    return last;
  };
}

/** One signed `object: page` delivery of a single messaging item (shapes of meta-fixtures/ig-reaction.json and messenger-read-and-delivery.json). */
function signedItem(secret: string, pageId: string, time: number, item: Record<string, unknown>): SignedDelivery {
  const body = Buffer.from(JSON.stringify({ object: 'page', entry: [{ id: pageId, time, messaging: [item] }] }), 'utf8');
  return { body, signature: signPayload(secret, body) };
}

/** The customer reacts to one of their own messages (Meta names the reacted message by its mid). */
export function messengerReaction(secret: string, pageId: string, customerId: string, mid: string, timestamp: number): SignedDelivery {
  return signedItem(secret, pageId, timestamp, {
    sender: { id: customerId },
    recipient: { id: pageId },
    timestamp,
    reaction: { mid, action: 'react', reaction: 'love', emoji: '\u2764\ufe0f' },
  });
}

/** A delivery receipt as Meta sends it: no item timestamp, the delivered mids and a watermark. */
export function messengerDeliveryReceipt(secret: string, pageId: string, customerId: string, mids: string[], watermark: number, time: number): SignedDelivery {
  return signedItem(secret, pageId, time, { sender: { id: customerId }, recipient: { id: pageId }, delivery: { mids, watermark } });
}

/** A read receipt: everything we sent up to the watermark was seen. */
export function messengerReadReceipt(secret: string, pageId: string, customerId: string, watermark: number, timestamp: number): SignedDelivery {
  return signedItem(secret, pageId, timestamp, { sender: { id: customerId }, recipient: { id: pageId }, timestamp, read: { watermark } });
}
