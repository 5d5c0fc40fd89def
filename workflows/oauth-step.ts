import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  TemporalFailure,
  condition,
  isCancellation,
  proxyActivities,
  setHandler,
  uuid4,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from '../activities';
import { workflowNow } from './clock';
import { beginOAuthUpdate, type BeginOAuth, type GrantedAsset, type LoginFlow, type OAuthCallback, type OnboardingProblem } from './onboarding-definitions';
import { problem, type ProblemCode } from './onboarding-problems';

/*
 * The OAuth step both sagas share (the onboarding, workflows/onboarding.ts, and the reconnect,
 * workflows/reconnect.ts): the `beginOAuth` and `oauthCallback` Updates with their validators,
 * the wait for the callback, and the code exchange with the listing of what was granted. Each
 * saga keeps its own status, steps and compensations; it tells this module when it is at its
 * OAuth step and hears back through hooks.
 */

// A cancelled saga waits for a running step to end before undoing it: a step still running could
// otherwise write after its compensation ran (WAIT_CANCELLATION_COMPLETED).
export const STEP = { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED } as const;

// Meta calls: transient errors (5xx, timeouts, throttling — the activity passes Meta's delay) are
// retried with backoff; what the client must fix is non-retryable and comes back as a problem.
export const META_RETRY = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' } as const;
// The code is single use: a retry after Meta consumed it can only fail, so few attempts.
const exchangeActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '30 seconds', retry: { ...META_RETRY, maximumAttempts: 6 } });
const assetActs = proxyActivities<Activities>({ ...STEP, startToCloseTimeout: '1 minute', retry: { ...META_RETRY, maximumAttempts: 8 } });

export const STATE_HASH = /^[A-Za-z0-9_-]{43}$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * What a failed activity tells the owner; undefined for a cancellation or anything that is not an
 * activity failing. `timedOut`: what a step that ran out of time means (Meta's steps: Meta is slow).
 */
export function problemOf(err: unknown, timedOut: ProblemCode = 'meta_unavailable'): OnboardingProblem | undefined {
  if (!(err instanceof TemporalFailure) || isCancellation(err)) return undefined;
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    const details = cause.details?.[0] as { problem?: OnboardingProblem } | undefined;
    if (details?.problem && typeof details.problem.code === 'string') return details.problem;
    return problem('internal');
  }
  // A timeout past every attempt.
  return problem(timedOut);
}

export function failureType(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

/** The client's answer that carries a code (a denial never leaves the Update handler). */
export interface OAuthCode {
  flow: LoginFlow;
  code: string;
  codeVerifier?: string;
}

export interface OAuthStepHooks<S> {
  /** Is the saga at its OAuth step? Both Updates are refused otherwise. */
  awaiting(): boolean;
  /** The saga's step, named in a refusal. */
  step(): string;
  /** A new attempt replaced any earlier one. */
  begun(flow: LoginFlow): void;
  /** A code arrived: the saga works on it from now on (its status says so before the Update returns). */
  received(flow: LoginFlow): void;
  /** The client said no: the saga keeps waiting, with the problem shown. */
  denied(): void;
  /** What the `oauthCallback` Update answers. */
  snapshot(): S;
}

/** The part of a saga's status the OAuth step shows the client (the onboarding's and the reconnect's both have it). */
export interface OAuthStepStatus {
  step: string;
  flow?: LoginFlow;
  problem?: OnboardingProblem;
}

/**
 * The hooks for a saga whose status has the OAuth step's fields: at `awaiting_oauth` it takes an
 * attempt, a new attempt or a code clears the last problem, a code moves the saga on
 * (`exchanging`, the saga's own step change), a denial shows `oauth_denied`. Both sagas answer
 * the client the same way, so the portal's pages read either status alike.
 */
export function statusOAuthHooks<S extends OAuthStepStatus>(status: S, snapshot: () => S, exchanging: () => void): OAuthStepHooks<S> {
  return {
    awaiting: () => status.step === 'awaiting_oauth',
    step: () => status.step,
    begun: (flow) => {
      status.flow = flow;
      delete status.problem;
    },
    received: () => {
      delete status.problem;
      exchanging();
    },
    denied: () => {
      status.problem = problem('oauth_denied');
    },
    snapshot,
  };
}

export interface OAuthStep {
  /**
   * The callback of the current attempt, or undefined when none came within `timeoutMs`. A
   * denied consent starts the wait over (the client came back); `waiting` hears each deadline.
   */
  awaitCallback(timeoutMs: number, waiting: (deadline: number) => void): Promise<OAuthCode | undefined>;
}

/**
 * Registers `beginOAuth` and `callbackUpdate` (the onboarding's `oauthCallback`, typed with the
 * saga's status). The validators run before anything is written: a callback for a state that is
 * not the current attempt's, already used, expired by workflow time, or out of step is refused
 * and leaves no history event.
 */
export function installOAuthStep<S>(callbackUpdate: UpdateDefinition<S, [OAuthCallback]>, hooks: OAuthStepHooks<S>): OAuthStep {
  let attempt: BeginOAuth | undefined;
  const usedStates = new Set<string>();
  let callback: OAuthCode | undefined;
  let denials = 0;

  setHandler(
    beginOAuthUpdate,
    (begin) => {
      attempt = { flow: begin.flow, stateHash: begin.stateHash, expiresAt: begin.expiresAt };
      hooks.begun(begin.flow);
    },
    {
      validator: (begin: BeginOAuth) => {
        if (!hooks.awaiting()) throw new Error(`not waiting for an OAuth attempt (step ${hooks.step()})`);
        if (begin?.flow !== 'facebook' && begin?.flow !== 'instagram') throw new Error('flow must be facebook or instagram');
        if (typeof begin.stateHash !== 'string' || !STATE_HASH.test(begin.stateHash)) throw new Error('stateHash must be a base64url SHA-256');
        if (usedStates.has(begin.stateHash)) throw new Error('this state was already used');
        if (typeof begin.expiresAt !== 'number' || begin.expiresAt <= workflowNow()) throw new Error('expiresAt must be in the future');
      },
    },
  );

  setHandler(
    callbackUpdate,
    (cb) => {
      const flow = attempt!.flow;
      usedStates.add(cb.stateHash);
      attempt = undefined;
      if ('code' in cb) {
        callback = { flow, code: cb.code, ...(cb.codeVerifier !== undefined && { codeVerifier: cb.codeVerifier }) };
        hooks.received(flow);
      } else {
        denials += 1;
        hooks.denied();
      }
      return hooks.snapshot();
    },
    {
      validator: (cb: OAuthCallback) => {
        if (typeof cb?.stateHash !== 'string') throw new Error('stateHash is required');
        if (usedStates.has(cb.stateHash)) throw new Error('state already used');
        if (!attempt || attempt.stateHash !== cb.stateHash) throw new Error('unknown state: not the current OAuth attempt');
        if (workflowNow() > attempt.expiresAt) throw new Error('state expired');
        if (!hooks.awaiting()) throw new Error(`not waiting for an OAuth callback (step ${hooks.step()})`);
        if ('code' in cb) {
          if (typeof cb.code !== 'string' || cb.code.length === 0 || cb.code.length > 4096) throw new Error('code must be a non-empty string');
          if (cb.codeVerifier !== undefined && (typeof cb.codeVerifier !== 'string' || cb.codeVerifier.length > 128)) throw new Error('codeVerifier must be a string');
        } else if (typeof cb.error !== 'string' || cb.error.length === 0) {
          throw new Error('a callback carries a code or an error');
        }
      },
    },
  );

  return {
    async awaitCallback(timeoutMs, waiting) {
      // Accepted while the saga was still getting ready (the reconnect reads its channel first).
      if (callback) {
        const cb = callback;
        callback = undefined;
        return cb;
      }
      let deadline = workflowNow() + timeoutMs;
      waiting(deadline);
      let seenDenials = denials;
      for (;;) {
        const remaining = deadline - workflowNow();
        const woke = remaining > 0 && (await condition(() => callback !== undefined || denials !== seenDenials, remaining));
        if (!woke) return undefined;
        if (callback) {
          const cb = callback;
          callback = undefined;
          return cb;
        }
        // The client came back (and said no): the wait starts over.
        seenDenials = denials;
        deadline = workflowNow() + timeoutMs;
        waiting(deadline);
      }
    },
  };
}

/**
 * The code → a long-lived user token sealed in a grant row whose id is chosen here, then what the
 * grant covers. `register` pushes the grant's compensation BEFORE the exchange runs (a step that
 * crashed half-way is still undone); `listing` marks the moment the saga moves on to the assets.
 */
export async function exchangeAndList(o: {
  tenantId: string;
  callback: OAuthCode;
  register: (grantId: string) => void;
  listing?: () => void;
}): Promise<{ grantId: string; assets: GrantedAsset[] }> {
  const { tenantId, callback: cb } = o;
  const grantId = uuid4();
  o.register(grantId);
  await exchangeActs.exchangeOAuthCode({ tenantId, grantId, flow: cb.flow, code: cb.code, ...(cb.codeVerifier !== undefined && { codeVerifier: cb.codeVerifier }) });
  await exchangeActs.extendOAuthGrant({ tenantId, grantId });
  o.listing?.();
  const { assets } = await assetActs.listGrantedAssets({ tenantId, grantId });
  return { grantId, assets };
}
