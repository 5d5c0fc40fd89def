import type { AssistantProfile } from '../db/tenant-settings';
import type { TurnMessage } from '../shared/types';

/**
 * What the LLM engine is told: a system prompt built from the tenant's assistant profile, and
 * customer messages rendered as plain text (the model gets what was sent, never the bytes).
 */

/** `de` → `German`; an unknown tag is passed through as written. */
export function languageName(tag: string): string {
  try {
    return new Intl.DisplayNames(['en'], { type: 'language' }).of(tag) ?? tag;
  } catch {
    return tag;
  }
}

export function buildSystemPrompt(profile: AssistantProfile, language: string): string {
  const business = profile.businessName ?? 'the business';
  const lines: string[] = [
    profile.persona ?? `You are the friendly customer assistant of ${business}, answering customers on Messenger and Instagram.`,
    ...(profile.businessName ? [`Business: ${profile.businessName}.`] : []),
    `Answer in ${languageName(language)} unless the customer writes in another language; then answer in theirs.`,
    '',
    'Rules:',
    '- Be brief: one to three short sentences, plain text, no markdown tables.',
    '- Never invent prices, stock, products, opening hours or policies. Use search_products before stating any price or availability, and get_business_info for hours, address and policies.',
    '- If a product is out of stock, say so clearly. If nothing matches, ask for the product name.',
    '- When the customer asks for a person (or you cannot help), call handoff_to_human and tell them a member of the team will reply.',
    '- Lines in square brackets such as [the customer sent an image] describe what the customer sent.',
  ];
  if (profile.facts && profile.facts.length > 0) {
    lines.push('', 'Facts about the business you may use:', ...profile.facts.map((f) => `- ${f}`));
  }
  return lines.join('\n');
}

const ARTICLE: Record<string, string> = { image: 'an image', video: 'a video', audio: 'a voice message', file: 'a file', sticker: 'a sticker', share: 'a link', location: 'a location' };

export function describeAttachment(type: string): string {
  return `[the customer sent ${ARTICLE[type] ?? `an attachment (${type})`}]`;
}

/** One customer message of the turn as the text of a `user` message. */
export function renderTurnMessage(m: TurnMessage): string {
  const parts: string[] = [];
  if (m.kind === 'story_reply') parts.push('[replying to your story]');
  if (m.kind === 'story_mention') parts.push('[the customer mentioned you in their story]');
  if (m.text) parts.push(m.text);
  if (m.payload && (m.kind === 'quick_reply' || m.kind === 'postback')) parts.push(`[button: ${m.payload}]`);
  for (const a of m.attachments) parts.push(describeAttachment(a.type));
  return parts.join(' ') || '[the customer sent an empty message]';
}
