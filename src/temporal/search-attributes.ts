import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes. Values are opaque IDs only: no names, texts or tokens ever reach
 * Temporal's visibility store. The dev server registers these at start (`--search-attribute`).
 */
export const TENANT_ID = defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD);
export const CHANNEL_ID = defineSearchAttributeKey('ChannelId', SearchAttributeType.KEYWORD);
export const PLATFORM = defineSearchAttributeKey('Platform', SearchAttributeType.KEYWORD);

/** `bot_active` / `human_active`: operators find handed-off conversations in the Temporal UI. */
export const CONVERSATION_STATE = defineSearchAttributeKey('ConversationState', SearchAttributeType.KEYWORD);

/** Where a tenant's onboarding saga is (`awaiting_oauth`, …, `live`): operators find stuck onboardings in the Temporal UI. */
export const ONBOARDING_STEP = defineSearchAttributeKey('OnboardingStep', SearchAttributeType.KEYWORD);

export const CUSTOM_SEARCH_ATTRIBUTES = [TENANT_ID, CHANNEL_ID, PLATFORM, CONVERSATION_STATE, ONBOARDING_STEP];

/** `--search-attribute` arguments for `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  return CUSTOM_SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]);
}
