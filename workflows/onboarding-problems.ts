import type { OnboardingProblem } from './onboarding-definitions';

/**
 * What the portal tells a business owner when an onboarding step cannot go on, in their words and
 * with what to do next. Shared by the saga (workflows/onboarding.ts) and its activities
 * (activities/onboarding.ts); `code` is for tests and logs.
 */
export const PROBLEMS = {
  oauth_denied: 'You cancelled the connection in the Meta window. Switchboard needs the permissions it asks for to answer your customers: click “Connect” when you are ready.',
  code_rejected: 'Meta did not accept the sign-in (it may have expired or been used already). Click “Connect” to try again.',
  permission_missing: 'Some permissions Switchboard needs were not granted. Click “Connect” again and allow every permission in the Meta window.',
  flow_unavailable: 'This way of connecting is not available right now. Try the other login option, or contact support.',
  no_pages: "We didn't receive any Facebook Page you manage. Make sure you are an admin of your Page and tick it in the Facebook window, then click “Connect” again.",
  not_page_admin: 'You need full control of the Page (permission to manage its messages) to connect it. Ask the Page owner for that role, then click “Connect” again.',
  not_professional: "Your Instagram account is a personal account. Switch it to a professional (business or creator) account in the Instagram app's settings, then click “Connect” again.",
  connected_elsewhere: 'This account is already connected to another business on Switchboard. Disconnect it there first, or choose another account.',
  asset_missing: "We can't find the account you picked in your Meta sign-in any more. Click “Connect” to try again.",
  token_invalid: 'Meta says the sign-in is no longer valid. Click “Connect” to sign in again.',
  subscription_failed:
    "We couldn't switch on message delivery for your account. Make sure you have full control of the Page or Instagram account, then click “Connect” to try again.",
  meta_rejected: 'Meta refused the request. Please click “Connect” to try again; if it keeps happening, contact support.',
  meta_unavailable: "Meta isn't answering right now. Please try again in a few minutes.",
  invalid_configuration: 'Some of the assistant settings are not valid. Check the form and save again.',
  timed_out: 'This setup waited too long for the next step and was stopped. Sign in again to start over.',
  internal: 'Something went wrong on our side while setting up your account. Our team has been told; please try again later.',
} as const satisfies Record<string, string>;

export type ProblemCode = keyof typeof PROBLEMS;

export const problem = (code: ProblemCode): OnboardingProblem => ({ code, message: PROBLEMS[code] });
