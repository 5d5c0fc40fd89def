import { defineQuery, defineUpdate } from '@temporalio/workflow';

/**
 * The onboarding saga's contract (issue 7), shared by the workflow (workflows/onboarding.ts), its
 * activities (activities/onboarding.ts) and the portal (src/portal/): the workflow id, its input,
 * its Updates and the query the portal polls. Nothing here carries a token or an OAuth code in
 * clear beyond the one Update that must deliver the code to the workflow (payloads are encrypted
 * in Temporal history by the project's codec).
 */

export const onboardingWorkflowId = (tenantId: string): string => `onboarding/${tenantId.toLowerCase()}`;

/** Facebook Login (for Business): Pages and their linked Instagram accounts. Instagram Login: one professional account. */
export type LoginFlow = 'facebook' | 'instagram';

/**
 * Where the saga is. The portal's four-step bar maps these to: 1 account created, 2 connect
 * Instagram / Facebook (awaiting_oauth … subscribing), 3 configure AI, 4 live.
 */
export type OnboardingStep =
  | 'awaiting_oauth'
  | 'exchanging_code'
  | 'selecting_assets'
  | 'storing_tokens'
  | 'subscribing'
  | 'configuring_assistant'
  | 'going_live'
  | 'live'
  | 'compensating'
  | 'abandoned'
  | 'failed'
  | 'cancelled';

export const PORTAL_STEP: Readonly<Record<OnboardingStep, 1 | 2 | 3 | 4>> = {
  awaiting_oauth: 2,
  exchanging_code: 2,
  selecting_assets: 2,
  storing_tokens: 2,
  subscribing: 2,
  configuring_assistant: 3,
  going_live: 4,
  live: 4,
  compensating: 2,
  abandoned: 2,
  failed: 2,
  cancelled: 2,
};

export interface OnboardingInput {
  tenantId: string;
  /** How long the saga waits for the OAuth callback before it compensates and is abandoned (default 7 days). */
  oauthTimeoutMs?: number;
  /** How long it waits for the asset choice and for the assistant configuration (default 7 days each). */
  stepTimeoutMs?: number;
}

/** An account the client granted, as listed after the code exchange. */
export interface GrantedAsset {
  /** The routing key: Page id (Messenger) or Instagram professional account id (`user_id`). */
  accountId: string;
  platform: 'messenger' | 'instagram';
  /** Which Graph host its token belongs to. */
  graphApi: 'facebook' | 'instagram';
  /** Page name or Instagram username, for the picker. */
  name: string;
  /**
   * For a Page: its linked Instagram professional account, if any (connectable as `instagram` too,
   * by putting its `accountId` in the selection; `connectedElsewhere` as for the Page itself).
   */
  linkedInstagram?: { accountId: string; username?: string; connectedElsewhere?: boolean };
  /** Already connected to another tenant: shown, not selectable. */
  connectedElsewhere: boolean;
}

/** A problem shown to the business owner: `code` for tests and logs, `message` in their words, with what to do next. */
export interface OnboardingProblem {
  code: string;
  message: string;
}

export interface OnboardingStatus {
  tenantId: string;
  step: OnboardingStep;
  portalStep: 1 | 2 | 3 | 4;
  /** `waiting`: the saga waits for the client (the portal shows the form); `working`: an activity runs ("waiting for Meta…"). */
  status: 'waiting' | 'working' | 'done' | 'failed';
  flow?: LoginFlow;
  /** Epoch ms by which the current wait ends (OAuth callback, asset choice, configuration). */
  waitingUntil?: number;
  assets?: GrantedAsset[];
  /** Channels stored so far (ids), and those live. */
  channels: Array<{ channelId: string; platform: 'messenger' | 'instagram'; accountId: string; live: boolean }>;
  /** The last problem (denied consent, an account of another tenant, a failed step). */
  problem?: OnboardingProblem;
  /** Epoch ms. */
  startedAt: number;
  finishedAt?: number;
}

/**
 * The portal starts an OAuth attempt: it stored the hashed `state` (and PKCE verifier where the
 * flow supports it) bound to the session and the tenant, and tells the saga which hash to expect.
 * A later attempt replaces an earlier one (the client clicked "connect" again).
 */
export interface BeginOAuth {
  flow: LoginFlow;
  /** base64url SHA-256 of the state. */
  stateHash: string;
  /** Epoch ms (10 minutes after it was issued). */
  expiresAt: number;
}
export const beginOAuthUpdate = defineUpdate<void, [BeginOAuth]>('beginOAuth');

/**
 * The OAuth callback arrived. The validator rejects (no history event) a state hash that is not
 * the current attempt's, an expired one, or one already used; a denied consent is delivered as
 * `error` and returns the saga to awaiting_oauth with a problem.
 */
export type OAuthCallback =
  | { stateHash: string; code: string; codeVerifier?: string }
  | { stateHash: string; error: string; errorReason?: string; errorDescription?: string };
export const oauthCallbackUpdate = defineUpdate<OnboardingStatus, [OAuthCallback]>('oauthCallback');

/** The client picked which granted accounts to connect (only when more than one was granted). */
export interface AssetSelection {
  accountIds: string[];
}
export const selectAssetsUpdate = defineUpdate<OnboardingStatus, [AssetSelection]>('selectAssets');

/** The assistant's configuration from the portal's step 3 (the catalog is imported by the portal before this). */
export interface AssistantConfiguration {
  persona: string;
  language: 'en' | 'de' | 'es' | 'fr' | 'pt';
  businessName?: string;
  /** The catalog was imported (rows), for the audit trail. */
  catalogRows?: number;
}
export const configureAssistantUpdate = defineUpdate<OnboardingStatus, [AssistantConfiguration]>('configureAssistant');

export const onboardingStatusQuery = defineQuery<OnboardingStatus>('getOnboardingStatus');
