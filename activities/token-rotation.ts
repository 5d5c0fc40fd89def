import { ApplicationFailure, Context } from '@temporalio/activity';
import { loadChannelCredentials } from '../src/db/channels';
import { acquireGraphCall } from '../src/db/graph-call-budget';
import { channelTokenState, recordTokenCheckFailed, recordTokenValidated, storeRefreshedToken, tokenSweepCandidates, type ChannelTokenState } from '../src/db/token-sweep';
import { classifyGraphError, GraphApiError, GraphNetworkError } from '../src/meta/graph-errors';
import { OAuthNotConfiguredError, type MetaOAuthClient, type SubscriptionTarget } from '../src/meta/oauth-client';
import { noteTokenExpiring, requireReauth, temporalNotificationStarter, type NotificationStarter } from '../src/notifications/reauth';
import { tokenAlert, tokenCheckPlan, type TokenAlert } from '../src/shared/token-policy';
import { TOKEN_ROTATION_BUDGET, type TokenCandidate, type TokenCheckInput, type TokenCheckOutcome, type TokenCheckResult } from '../workflows/token-lifecycle-definitions';
import type { ActivityDeps } from './index';
import { PAGE_SUBSCRIBED_FIELDS } from './onboarding';

/**
 * The token sweep's activities (workflows/token-rotation.ts, docs/token-lifecycle.md "Scheduled
 * rotation"). One check per channel: an Instagram-Login token is refreshed with
 * `ig_refresh_token` when due; a Page token is validated with `debug_token` and its
 * `subscribed_apps` entry re-created when Meta dropped it. Decisions use the sweep's `asOf`,
 * never the database clock, so a test can move time. Tokens are loaded here (counted, audited
 * decrypts) and never leave: nothing returned, logged or audited carries one.
 *
 * Every Graph call first takes a token from the shared budget (`graph_call_budgets`,
 * TOKEN_ROTATION_BUDGET): however many workers and retries run, the sweep stays within
 * TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE.
 *
 * Failures: a dead token (190 from any call, a refresh Meta refuses, `debug_token` invalid or
 * without the messaging scopes) makes the channel `reauth_required` through `requireReauth`, the
 * one path for that. Transient failures (network, 5xx, throttling) are thrown retryable for the
 * child's bounded retry policy; after it, `recordTokenCheckFailure` counts the failure and the next
 * sweep tries again.
 */

/** TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE's default, for a check started without a budget in its input. */
export const DEFAULT_GRAPH_CALLS_PER_MINUTE = 3000;

/** What a Page token must still grant for the channel to work (contract §5.4): messaging, and managing the subscription. */
export const REQUIRED_PAGE_SCOPES: Record<'messenger' | 'instagram', readonly string[]> = {
  messenger: ['pages_messaging', 'pages_manage_metadata'],
  instagram: ['instagram_basic', 'instagram_manage_messages', 'pages_manage_metadata'],
};

/** A budget wait is cut into slices of at most this, with a heartbeat after each. */
const MAX_WAIT_SLICE_MS = 5_000;

const actor = { type: 'system' as const, id: 'token-rotation' };

/** `code 190/460`: what Meta said, by number only (never its text). */
const codeOf = (err: GraphApiError): string => `code ${err.code ?? 'none'}${err.subcode !== undefined ? `/${err.subcode}` : ''}`;

/** Graph/OAuth errors → a Temporal failure: retryable (throttling with Meta's delay) or not. Anything else is rethrown for the retry policy. */
function checkFailure(err: unknown): never {
  if (err instanceof OAuthNotConfiguredError) throw ApplicationFailure.nonRetryable(err.message, 'OAuthNotConfigured');
  if (!(err instanceof GraphApiError || err instanceof GraphNetworkError)) throw err;
  const c = classifyGraphError(err);
  throw ApplicationFailure.create({
    message: err.message,
    type: c.failureType,
    nonRetryable: !c.retryable,
    ...(c.retryAfterMs !== undefined && { nextRetryDelay: c.retryAfterMs }),
  });
}

/** A Graph answer that says the token itself is dead (as opposed to Meta being unavailable). */
function deadToken(err: unknown, opts: { oauthExceptionIsDead?: boolean; permissionIsDead?: boolean } = {}): GraphApiError | undefined {
  if (!(err instanceof GraphApiError)) return undefined;
  const c = classifyGraphError(err);
  if (c.reauth) return err;
  if (c.retryable) return undefined;
  if (opts.oauthExceptionIsDead && err.errorType === 'OAuthException') return err;
  if (opts.permissionIsDead && c.errorClass === 'permission') return err;
  return undefined;
}

/** Only a type name crosses from the workflow into the failure's reason. */
const safeType = (s: string | undefined): string => (s && /^[A-Za-z0-9_.-]{1,64}$/.test(s) ? s : 'unknown');

export function createTokenRotationActivities({ pool, vault, logger, oauth }: Pick<ActivityDeps, 'pool' | 'vault' | 'logger' | 'oauth'>) {
  const client = (): MetaOAuthClient => {
    if (!oauth) throw ApplicationFailure.nonRetryable('no Meta OAuth client configured on this worker', 'OAuthNotConfigured');
    return oauth;
  };
  const starter = (): NotificationStarter => {
    const ctx = Context.current();
    return temporalNotificationStarter(ctx.client, ctx.info.taskQueue);
  };

  /** Waits for one call from the shared budget, heartbeating. */
  async function takeBudget(perMinute: number): Promise<void> {
    const ctx = Context.current();
    for (;;) {
      const grant = await acquireGraphCall(pool, TOKEN_ROTATION_BUDGET, perMinute);
      if (grant.granted) return;
      ctx.heartbeat({ waitingForBudgetMs: grant.waitMs });
      await ctx.sleep(Math.min(grant.waitMs, MAX_WAIT_SLICE_MS));
    }
  }

  async function noteExpiring(c: { tenantId: string; channelId: string }, alert: TokenAlert, expiresAt: number | null): Promise<void> {
    if (alert === 'none' || expiresAt === null) return;
    const at = new Date(expiresAt);
    await noteTokenExpiring(pool, starter(), { tenantId: c.tenantId, channelId: c.channelId, level: alert, reason: `token_expiring (expires ${at.toISOString()})`, expiresAt: at });
  }

  return {
    /** One page of the sweep's work list: active channels after `after`, in id order, without tokens. */
    async listTokenCandidates(input: { after?: string | null; limit: number }): Promise<TokenCandidate[]> {
      return tokenSweepCandidates(pool, input.after ?? null, input.limit);
    },

    /** Checks one channel's token (see the module comment); the outcome is audited once per sweep. */
    async checkChannelToken(input: TokenCheckInput): Promise<TokenCheckResult> {
      const { candidate, policy, asOf, sweepId } = input;
      const { tenantId, channelId } = candidate;
      const perMinute = input.graphCallsPerMinute ?? DEFAULT_GRAPH_CALLS_PER_MINUTE;
      let graphCalls = 0;
      const graph = async <T>(fn: () => Promise<T>): Promise<T> => {
        await takeBudget(perMinute);
        graphCalls++;
        return fn();
      };
      const result = (outcome: TokenCheckOutcome, tokenExpiresAt: number | null, alert: TokenAlert = tokenAlert(tokenExpiresAt, policy, asOf)): TokenCheckResult => ({
        channelId,
        outcome,
        tokenExpiresAt,
        alert,
        graphCalls,
      });

      // The row as it is now: a reconnect or an earlier attempt of this check may have changed it.
      const state = await channelTokenState(pool, tenantId, channelId);
      if (!state || state.status === 'disabled') return result('not_due', state?.tokenExpiresAt ?? null, 'none');
      if (state.status === 'reauth_required') return result('reauth_required', state.tokenExpiresAt, 'critical');

      const dead = async (reason: string): Promise<TokenCheckResult> => {
        await recordTokenCheckFailed(pool, { tenantId, channelId, outcome: 'reauth_required', reason, sweepId, details: { graphCalls } });
        await requireReauth(pool, starter(), logger, { tenantId, channelId, reason, actor });
        return result('reauth_required', state.tokenExpiresAt, 'critical');
      };

      const plan = tokenCheckPlan(state, policy, asOf);
      if (plan === 'skip' || plan === 'watch') {
        const alert = tokenAlert(state.tokenExpiresAt, policy, asOf);
        await noteExpiring({ tenantId, channelId }, alert, state.tokenExpiresAt);
        return result('not_due', state.tokenExpiresAt, alert);
      }
      const c = client();
      if (plan === 'refresh') return refresh(c, state);
      return validate(c, state);

      async function refresh(c: MetaOAuthClient, s: ChannelTokenState): Promise<TokenCheckResult> {
        const creds = await loadChannelCredentials(pool, vault, { tenantId, channelId }, 'graph.refresh', { actor });
        let grant;
        try {
          grant = await graph(() => c.refreshInstagramToken(creds.accessToken));
        } catch (err) {
          const gone = deadToken(err, { oauthExceptionIsDead: true });
          if (gone) return dead(`token_refresh_failed (${codeOf(gone)})`);
          checkFailure(err);
        }
        const expiresAt = grant.expiresIn && grant.expiresIn > 0 ? asOf + grant.expiresIn * 1000 : null;
        const stored = await storeRefreshedToken(pool, vault, {
          tenantId,
          channelId,
          accessToken: grant.accessToken,
          issuedAt: asOf,
          expiresAt,
          expectedIssuedAt: s.tokenIssuedAt,
          sweepId,
          details: { graphCalls },
        });
        if (!stored) {
          // Reconnected (or disabled) while Meta refreshed: the newer token stays; nothing to do this sweep.
          logger.info({ tenantId, channelId }, 'token sweep: channel changed during its refresh; kept the newer token');
          return result('not_due', s.tokenExpiresAt, 'none');
        }
        logger.info({ tenantId, channelId, expiresAt }, 'token sweep: Instagram token refreshed');
        const alert = tokenAlert(expiresAt, policy, asOf);
        await noteExpiring({ tenantId, channelId }, alert, expiresAt);
        return result('refreshed', expiresAt, alert);
      }

      async function validate(c: MetaOAuthClient, s: ChannelTokenState): Promise<TokenCheckResult> {
        const creds = await loadChannelCredentials(pool, vault, { tenantId, channelId }, 'graph.validate', { actor });
        let debug;
        try {
          debug = await graph(() => c.debugToken(creds.accessToken));
        } catch (err) {
          // debug_token is asked with the app's token: its errors are about the app or Meta, never this channel.
          checkFailure(err);
        }
        if (!debug.isValid) return dead('debug_token_invalid');
        const missingScopes = REQUIRED_PAGE_SCOPES[s.platform].filter((scope) => !debug.scopes.includes(scope));
        if (missingScopes.length > 0) return dead(`scopes_missing (${missingScopes.join(',')})`);
        const expiresAt = debug.expiresAt ? debug.expiresAt * 1000 : null;

        // An Instagram channel on Facebook Login uses its Page's token and subscription: `me` is that Page.
        const target: SubscriptionTarget = { graphApi: 'facebook', accountId: s.platform === 'messenger' ? s.accountId : 'me' };
        let outcome: 'valid' | 'resubscribed' = 'valid';
        let missingFields: string[] = [];
        try {
          const apps = await graph(() => c.subscribedApps(target, creds.accessToken));
          const ours = apps.find((a) => a.id === c.appId('facebook'));
          missingFields = PAGE_SUBSCRIBED_FIELDS.filter((f) => !ours?.subscribedFields.includes(f));
          if (missingFields.length > 0) {
            await graph(() => c.subscribeApp(target, creds.accessToken, PAGE_SUBSCRIBED_FIELDS));
            outcome = 'resubscribed';
          }
        } catch (err) {
          // A refused subscription (code 200: no longer admin/moderator) is a lost role: reconnect.
          const gone = deadToken(err, { permissionIsDead: true });
          if (gone) return dead(`token_invalid (${codeOf(gone)})`);
          checkFailure(err);
        }
        await recordTokenValidated(pool, {
          tenantId,
          channelId,
          outcome,
          tokenExpiresAt: expiresAt,
          webhookSubscribed: true,
          sweepId,
          details: { graphCalls, ...(outcome === 'resubscribed' && { fieldsMissing: missingFields }) },
        });
        if (outcome === 'resubscribed') logger.warn({ tenantId, channelId, fieldsMissing: missingFields }, 'token sweep: webhook subscription was gone; re-created');
        const alert = tokenAlert(expiresAt, policy, asOf);
        await noteExpiring({ tenantId, channelId }, alert, expiresAt);
        return result(outcome, expiresAt, alert);
      }
    },

    /**
     * After `checkChannelToken` ran out of retries: `token.check_failed`, one more in
     * `token_check_failures`, and the expiry alert from what the sweep knew (a token that keeps
     * failing to refresh must still be told about). The next sweep tries again.
     */
    async recordTokenCheckFailure(input: TokenCheckInput & { failureType?: string }): Promise<TokenCheckResult> {
      const { candidate, policy, asOf, sweepId } = input;
      const reason = `check_failed (${safeType(input.failureType)})`;
      const { failures } = await recordTokenCheckFailed(pool, { tenantId: candidate.tenantId, channelId: candidate.channelId, outcome: 'transient_failure', reason, sweepId });
      logger.warn({ tenantId: candidate.tenantId, channelId: candidate.channelId, reason, failures }, 'token sweep: check failed; the next sweep tries again');
      const alert = tokenAlert(candidate.tokenExpiresAt, policy, asOf);
      await noteExpiring(candidate, alert, candidate.tokenExpiresAt);
      return { channelId: candidate.channelId, outcome: 'transient_failure', tokenExpiresAt: candidate.tokenExpiresAt, alert, graphCalls: 0 };
    },
  };
}
