import type { SendPolicy } from './types';

/**
 * Outbound rules the workflow decides with. Pure and import-free: the workflow bundle imports
 * this module, and so do the activities and the database layer.
 */

/** Prefix of the Send API `metadata` we attach, so our own echoes are recognised. */
export const OUTBOUND_METADATA_PREFIX = 'sb:out:';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The outbound row an echo's metadata names, if it is one of ours. */
export function outboundIdFromMetadata(metadata: string | undefined): string | undefined {
  if (!metadata?.startsWith(OUTBOUND_METADATA_PREFIX)) return undefined;
  const id = metadata.slice(OUTBOUND_METADATA_PREFIX.length);
  return UUID.test(id) ? id : undefined;
}

export const HOUR_MS = 60 * 60 * 1000;
export const DAY_MS = 24 * HOUR_MS;
const HUMAN_AGENT_WINDOW_MS = 7 * DAY_MS;

/**
 * Meta's messaging policy (meta-api-contract §3): within 24 h of the customer's last message
 * anything may answer (`RESPONSE`); a human agent may answer until 7 days with the `HUMAN_AGENT`
 * tag; a bot never uses a tag. Past that the message is not sent.
 */
export function decideSendPolicy(author: 'bot' | 'human_agent', now: number, lastCustomerAt: number | undefined): SendPolicy {
  if (lastCustomerAt === undefined) return { send: false, reason: 'the customer has not written yet: no messaging window is open' };
  const age = now - lastCustomerAt;
  if (age <= DAY_MS) return { send: true, messagingType: 'RESPONSE' };
  const hours = Math.floor(age / HOUR_MS);
  if (author === 'bot') return { send: false, reason: `the customer's last message is ${hours} h old: the 24-hour window is closed and a bot may not use a message tag` };
  if (age <= HUMAN_AGENT_WINDOW_MS) return { send: true, messagingType: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' };
  return { send: false, reason: `the customer's last message is ${hours} h old: past the 7-day HUMAN_AGENT window` };
}
