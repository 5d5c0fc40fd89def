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
