import type { LoginFlow, OnboardingProblem, OnboardingStatus, OnboardingStep } from '../../workflows/onboarding-definitions';
import type { ProblemCode } from '../../workflows/onboarding-problems';
import type { ReconnectStatus, ReconnectStep } from '../../workflows/token-lifecycle-definitions';

/**
 * What the portal says, in a business owner's words, with what to do next. The saga names each
 * problem with a `code` (workflows/onboarding.ts); the words are chosen here, so the portal stays
 * consistent whatever wording an activity used. An unknown code falls back to the saga's own
 * message, which is written for the same reader.
 */

export const platformName = (flow: LoginFlow | undefined): string => (flow === 'instagram' ? 'Instagram' : 'Facebook');

export function deniedMessage(flow: LoginFlow | undefined): string {
  return `You cancelled the connection on ${platformName(flow)}. To connect, click the button again and choose Allow.`;
}

const again = (flow: LoginFlow | undefined) => `click Connect with ${platformName(flow)} again`;
const Again = (flow: LoginFlow | undefined) => `Click Connect with ${platformName(flow)} again`;

/** Every code the saga emits (workflows/onboarding-problems.ts): the type makes a new code fail to compile until it has words here. */
const PROBLEM_MESSAGES: Record<ProblemCode, (flow: LoginFlow | undefined) => string> = {
  oauth_denied: deniedMessage,
  code_rejected: (flow) => `${platformName(flow)} didn't accept the connection: it may have taken too long. To try again, ${again(flow)}.`,
  permission_missing: (flow) => `${platformName(flow)} didn't give Switchboard every permission it needs. ${Again(flow)} and keep every permission switched on.`,
  flow_unavailable: (flow) => `Connecting with ${platformName(flow)} isn't available right now. Use the other button, or try again later.`,
  no_pages: () =>
    "Facebook didn't share any Page with Switchboard. If your Instagram account isn't linked to a Facebook Page, link it in Instagram settings, then try again; otherwise click Connect with Facebook again and tick your business's Page when Facebook asks which Pages to share.",
  not_page_admin: () => "You aren't an admin of that Facebook Page. Ask the Page's owner to give you full control (Page settings → Page access), then click Connect with Facebook again.",
  not_professional: () =>
    'Your Instagram account is a personal account. Switch it to a business or creator account in the Instagram app (Settings → Account type and tools), then click Connect with Instagram again.',
  connected_elsewhere: () => 'This account is already connected to another business on Switchboard. Disconnect it there first (or ask whoever connected it), or connect a different account.',
  asset_missing: (flow) => `The account you picked is no longer among those ${platformName(flow)} shared with us. To choose again, ${again(flow)}.`,
  token_invalid: (flow) => `${platformName(flow)} says the sign-in is no longer valid. To sign in again, ${again(flow)}.`,
  subscription_failed: (flow) =>
    `${platformName(flow)} didn't switch on message delivery for your account. Check that you have full control of the Page or Instagram account, then ${again(flow)}.`,
  meta_rejected: (flow) => `${platformName(flow)} refused the request. ${Again(flow)}; if it keeps happening, contact support.`,
  meta_unavailable: (flow) => `${platformName(flow)} isn't answering right now. Wait a few minutes, then ${again(flow)}.`,
  invalid_configuration: () => "Some of the assistant's settings aren't valid. Check the form below and save again.",
  timed_out: () => "Your setup waited too long for the next step, so we paused it. Click Start again to pick up where you left off: it only takes a few minutes.",
  internal: () => 'Something went wrong on our side while setting up your account. Our team has been told; please try again in a few minutes.',
};

export const PROBLEM_CODES = Object.keys(PROBLEM_MESSAGES) as ProblemCode[];

/** The problem to show, in the portal's words. */
export function problemMessage(problem: OnboardingProblem | undefined, flow: LoginFlow | undefined): string | undefined {
  if (!problem) return undefined;
  const fixed = Object.hasOwn(PROBLEM_MESSAGES, problem.code) ? PROBLEM_MESSAGES[problem.code as ProblemCode] : undefined;
  return fixed ? fixed(flow) : problem.message;
}

/** What "waiting for Meta…" is waiting for, per step. */
export const WORKING_TEXT: Partial<Record<OnboardingStep, string>> = {
  awaiting_oauth: 'Getting ready…',
  exchanging_code: 'Confirming your connection with Meta…',
  selecting_assets: 'Checking the accounts you shared…',
  storing_tokens: 'Saving your connection securely…',
  subscribing: 'Switching on message delivery for your account…',
  configuring_assistant: "Saving your assistant's settings…",
  going_live: 'Going live…',
  compensating: 'Undoing the unfinished connection…',
};

export const STEP_LABELS = ['Account created', 'Connect Instagram or Facebook', 'Set up your assistant', 'Go live'] as const;

/** Problems of the OAuth callback, before anything reaches the saga. */
export const STATE_PROBLEMS = {
  missing: {
    title: 'This link is incomplete',
    message: "The answer from Meta didn't say which connection it belongs to. Go back to your setup and click the Connect button again.",
  },
  unknown: {
    title: "We don't recognise this connection",
    message: "This connection doesn't belong to your current sign-in or business. Go back to your setup and click the Connect button again.",
  },
  expired: {
    title: 'This connection link expired',
    message: 'A connection must be finished within 10 minutes of clicking the Connect button. Go back to your setup and click the Connect button again.',
  },
  used: {
    title: 'This connection link was already used',
    message: 'Each link works once. If you refreshed the page or went back, your connection may already be under way: go back to your setup to see where it stands.',
  },
  other_session: {
    title: 'This connection was started elsewhere',
    message: 'The connection was started in another browser or sign-in. Go back to your setup in this browser and click the Connect button again.',
  },
  refused: {
    title: 'This connection is no longer current',
    message: 'Your setup has moved on since this link was made (perhaps you clicked Connect again). Go back to your setup and, if needed, click the Connect button again.',
  },
  signed_out: {
    title: "You're signed out",
    message: 'Sign in again, then click the Connect button once more: for your security, a connection only completes in the browser that started it.',
  },
} as const;
export type StateProblem = keyof typeof STATE_PROBLEMS;

export const UNAVAILABLE_MESSAGE = "We can't reach our setup service right now. Nothing was lost: wait a moment, then try again.";

/** A compact key of what the page shows: when it changes, the live page re-renders. */
export function statusKey(status: OnboardingStatus | undefined): string {
  if (!status) return 'unavailable';
  return [status.step, status.status, status.problem?.code ?? '', status.assets?.length ?? 0, status.channels.filter((c) => c.live).length].join('|');
}

// ---- reconnecting a channel ------------------------------------------------------------------------

/**
 * The saga's problems as a reconnect words them: the way forward is the Reconnect button. The
 * reconnect's own problems (`wrong_account`, which names the accounts, and `channel_unavailable`)
 * and anything unknown keep the saga's message.
 */
const RECONNECT_PROBLEM_MESSAGES: Partial<Record<ProblemCode, (flow: LoginFlow | undefined) => string>> = {
  oauth_denied: (flow) => `You cancelled the reconnection on ${platformName(flow)}. To reconnect, click Reconnect again and choose Allow.`,
  code_rejected: (flow) => `${platformName(flow)} didn't accept the reconnection: it may have taken too long. Click Reconnect to try again.`,
  permission_missing: (flow) => `${platformName(flow)} didn't give Switchboard every permission it needs. Click Reconnect and keep every permission switched on.`,
  flow_unavailable: (flow) => `Reconnecting with ${platformName(flow)} isn't available right now. Try again later, or contact support.`,
  no_pages: () => "Facebook didn't share any Page with Switchboard. Click Reconnect and tick your business's Page when Facebook asks which Pages to share.",
  not_page_admin: () => "You aren't an admin of that Facebook Page any more. Ask the Page's owner to give you full control (Page settings → Page access), then click Reconnect.",
  not_professional: () => 'Your Instagram account is a personal account now. Switch it back to a business or creator account in the Instagram app, then click Reconnect.',
  connected_elsewhere: () => 'This account is now connected to another business on Switchboard. Disconnect it there first, then click Reconnect.',
  asset_missing: (flow) => `The account is no longer among those ${platformName(flow)} shared with us. Click Reconnect and make sure it is ticked.`,
  token_invalid: (flow) => `${platformName(flow)} says the sign-in is no longer valid. Click Reconnect to sign in again.`,
  subscription_failed: (flow) => `${platformName(flow)} didn't switch message delivery back on for the account. Check that you have full control of it, then click Reconnect.`,
  meta_rejected: (flow) => `${platformName(flow)} refused the request. Click Reconnect to try again; if it keeps happening, contact support.`,
  meta_unavailable: (flow) => `${platformName(flow)} isn't answering right now. Wait a few minutes, then click Reconnect.`,
  timed_out: () => 'This reconnection waited too long for you to finish it, so we stopped it. Click Reconnect to start again.',
  internal: () => 'Something went wrong on our side while reconnecting. Our team has been told; please try again in a few minutes.',
};

export function reconnectProblemMessage(problem: OnboardingProblem | undefined, flow: LoginFlow | undefined): string | undefined {
  if (!problem) return undefined;
  const fixed = Object.hasOwn(RECONNECT_PROBLEM_MESSAGES, problem.code) ? RECONNECT_PROBLEM_MESSAGES[problem.code as ProblemCode] : undefined;
  return fixed ? fixed(flow) : problem.message;
}

/** What "Reconnecting…" is waiting for, per step. */
export const RECONNECT_WORKING_TEXT: Partial<Record<ReconnectStep, string>> = {
  awaiting_oauth: 'Getting ready…',
  exchanging_code: 'Confirming your sign-in with Meta…',
  storing_token: 'Saving the new connection securely…',
  subscribing: 'Checking message delivery for the account…',
  resuming: 'Sending the replies that were waiting…',
  compensating: 'Undoing the unfinished reconnection…',
};

/** "3 replies are waiting", "1 reply is waiting". */
export function waitingReplies(n: number): string {
  return n === 1 ? '1 reply is waiting' : `${n === 0 ? 'no' : n} replies are waiting`;
}

/** "Reconnected — 3 waiting replies are being sent". */
export function reconnectedMessage(parked: number): string {
  if (parked === 0) return 'Reconnected — no replies were waiting.';
  return `Reconnected — ${parked === 1 ? '1 waiting reply is' : `${parked} waiting replies are`} being sent.`;
}

/** The page's key with a reconnect shown on it: when either changes, the live page re-renders. */
export function pageKey(status: OnboardingStatus | undefined, reconnect: ReconnectStatus | undefined): string {
  const base = statusKey(status);
  return reconnect ? `${base}|reconnect:${reconnect.step}:${reconnect.status}:${reconnect.problem?.code ?? ''}` : base;
}
