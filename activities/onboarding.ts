import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../src/audit/log';
import type { AuditAction } from '../src/audit/types';
import { ChannelConflictError, connectChannel, findChannelByAccount, loadChannelCredentials } from '../src/db/channels';
import {
  activateOnboardingChannels,
  channelTokenExpiries,
  cryptoShredTenantSecrets,
  deactivateOnboardingChannels,
  deleteGrant,
  existingChannelIds,
  grantState,
  loadGrant,
  markWebhookSubscription,
  ONBOARDING_PENDING_REASON,
  removeOnboardingChannels,
  saveGrant,
  type CryptoShredResult,
  type OAuthFlow,
} from '../src/db/onboarding';
import { loadTenantSettings, SettingsError, tenantSettingsPatchSchema, updateTenantSettings } from '../src/db/tenant-settings';
import { classifyGraphError, GraphApiError, GraphNetworkError } from '../src/meta/graph-errors';
import { OAuthNotConfiguredError, type MetaOAuthClient, type SubscriptionTarget } from '../src/meta/oauth-client';
import type { Logger } from '../src/logger';
import type { Platform } from '../src/shared/types';
import type { AssistantConfiguration, GrantedAsset, OnboardingProblem } from '../workflows/onboarding-definitions';
import { problem, type ProblemCode } from '../workflows/onboarding-problems';
import type { ActivityDeps } from './index';

/**
 * The onboarding saga's steps and compensations (workflows/onboarding.ts, docs/onboarding.md).
 * Tokens never leave these activities: the code exchange seals the user token into an
 * `onboarding_grants` row and answers only that the row exists; later steps decrypt it (counted
 * and audited) or re-fetch Page tokens with it. Every step is idempotent under retries, and every
 * compensation is idempotent and tolerates what never happened.
 *
 * Failures the business owner can act on are non-retryable `ApplicationFailure`s whose first
 * detail is `{ problem: { code, message } }` in the owner's words: the workflow shows it in the
 * portal and returns to the OAuth step. Transient Graph errors are retryable (throttling with
 * Meta's delay) and carry a problem too, for when the retries run out.
 */

/** Messaging fields of a Page subscription (contract §5.5). */
export const PAGE_SUBSCRIBED_FIELDS = ['messages', 'message_echoes', 'messaging_postbacks', 'message_reactions', 'message_reads', 'message_deliveries', 'messaging_referrals'] as const;
/** Messaging fields of an Instagram-Login subscription (§5.5 without `comments`: comments are not handled, so not asked for). */
export const INSTAGRAM_SUBSCRIBED_FIELDS = ['messages', 'messaging_postbacks', 'messaging_seen', 'message_reactions'] as const;

/** Page tasks that let the user's Page token subscribe the app and answer messages. */
const MESSAGING_TASKS = new Set(['MESSAGING', 'MODERATE', 'MANAGE']);
const PROFESSIONAL_ACCOUNT_TYPES = new Set(['BUSINESS', 'MEDIA_CREATOR', 'CREATOR']);

export interface FailureDetails {
  problem: OnboardingProblem;
}

export function fail(type: string, code: ProblemCode, message: string): never {
  throw ApplicationFailure.create({ message, type, nonRetryable: true, details: [{ problem: problem(code) } satisfies FailureDetails] });
}

export type Stage = 'exchange' | 'assets' | 'store' | 'subscribe';

/** Graph/OAuth errors → the failure the workflow acts on. Anything else is rethrown (retried by the policy). */
function metaFailure(err: unknown, stage: Stage): never {
  if (err instanceof OAuthNotConfiguredError) fail('OAuthNotConfigured', 'flow_unavailable', err.message);
  if (!(err instanceof GraphApiError || err instanceof GraphNetworkError)) throw err;
  const c = classifyGraphError(err);
  if (c.retryable) {
    throw ApplicationFailure.create({
      message: err.message,
      type: c.failureType,
      nonRetryable: false,
      details: [{ problem: problem('meta_unavailable') } satisfies FailureDetails],
      ...(c.retryAfterMs !== undefined && { nextRetryDelay: c.retryAfterMs }),
    });
  }
  if (stage === 'exchange' && (c.errorClass === 'bad_request' || c.errorClass === 'auth')) fail('OAuthCodeRejected', 'code_rejected', err.message);
  if (c.errorClass === 'auth') fail('GraphAuthExpired', 'token_invalid', err.message);
  if (stage === 'subscribe') fail('SubscriptionFailed', 'subscription_failed', err.message);
  if (c.errorClass === 'permission') fail('GraphPermissionDenied', 'permission_missing', err.message);
  fail(c.failureType, 'meta_rejected', err.message);
}

export async function meta<T>(stage: Stage, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    metaFailure(err, stage);
  }
}

/**
 * The token each planned channel will use, from a sealed grant (decrypted by the caller): Facebook
 * Login fetches the Page tokens again with the user token (they never pass through a workflow)
 * and checks each with `debug_token`; Instagram Login's channel uses the grant's own token. An
 * account the grant no longer covers is `asset_missing`. Tokens stay inside the activity.
 */
export async function channelTokensFromGrant(
  c: MetaOAuthClient,
  grant: { flow: OAuthFlow; token: string; expiresAt: Date | null },
  planned: ReadonlyArray<Pick<PlannedChannel, 'channelId' | 'accountId' | 'platform' | 'pageId'>>,
): Promise<Map<string, { token: string; expiresAt: Date | null }>> {
  const tokens = new Map<string, { token: string; expiresAt: Date | null }>();
  if (grant.flow === 'facebook') {
    const pages = await meta('store', () => c.listPages(grant.token));
    for (const p of planned) {
      const pageId = p.pageId ?? p.accountId;
      const page = pages.find((x) => x.id === pageId);
      if (!page) fail('AssetGone', 'asset_missing', `Page ${pageId} is no longer in the grant`);
      if (p.platform === 'instagram' && page.instagram?.id !== p.accountId) fail('AssetGone', 'asset_missing', `Instagram account ${p.accountId} is no longer linked to Page ${pageId}`);
      const debug = await meta('store', () => c.debugToken(page.accessToken));
      if (!debug.isValid) fail('GraphAuthExpired', 'token_invalid', `the Page token of ${pageId} is not valid`);
      tokens.set(p.channelId, { token: page.accessToken, expiresAt: debug.expiresAt ? new Date(debug.expiresAt * 1000) : null });
    }
  } else {
    const profile = await meta('store', () => c.instagramProfile(grant.token));
    for (const p of planned) {
      if (profile.userId !== p.accountId) fail('AssetGone', 'asset_missing', `the grant is for Instagram account ${profile.userId}, not ${p.accountId}`);
      tokens.set(p.channelId, { token: grant.token, expiresAt: grant.expiresAt });
    }
  }
  return tokens;
}

/** Epoch-seconds lifetime → the moment it ends (null: Meta gave none, or 0 = never). */
const expiryFrom = (expiresInSeconds: number | undefined, now = Date.now()): Date | null =>
  expiresInSeconds && expiresInSeconds > 0 ? new Date(now + expiresInSeconds * 1000) : null;

export interface ExchangeCodeInput {
  tenantId: string;
  /** Chosen by the workflow before the step, so its compensation can name the row. */
  grantId: string;
  flow: OAuthFlow;
  code: string;
  codeVerifier?: string;
}

/** A channel the saga is about to store: its id is chosen by the workflow (the compensation names it). */
export interface PlannedChannel {
  channelId: string;
  accountId: string;
  platform: Platform;
  graphApi: 'facebook' | 'instagram';
  /** Instagram through Facebook Login: the Page whose token it uses. */
  pageId?: string;
}

export interface StoredChannel {
  channelId: string;
  accountId: string;
  platform: Platform;
  graphApi: 'facebook' | 'instagram';
  /** False for a channel the tenant had already (a reconnect): compensations leave it alone. */
  created: boolean;
  /** Epoch ms; null = never expires (Page tokens from a long-lived user token) or unknown. */
  tokenExpiresAt: number | null;
}

/** One subscription: the account to subscribe (a Page id, or `me` for Instagram Login) and the channels it serves. */
export interface SubscriptionPlan {
  target: SubscriptionTarget;
  /** The channel whose stored token makes the call. */
  tokenChannelId: string;
  channelIds: string[];
}

export type OnboardingOutcome = 'abandoned' | 'cancelled' | 'failed';

function workflowRun(): { workflowId: string; runId: string } | undefined {
  try {
    const wf = Context.current().info.workflowExecution;
    return wf ? { workflowId: wf.workflowId, runId: wf.runId } : undefined;
  } catch {
    return undefined;
  }
}

/** Idempotency key of an audit event this run writes once (`step`), whatever the retries. */
export function runAuditKey(step: string): string | undefined {
  const run = workflowRun();
  if (!run) return undefined;
  const id = `${run.workflowId}:${run.runId}`;
  return `wf:${id.length > 150 ? `sha256-${createHash('sha256').update(id).digest('hex')}` : id}:${step}`;
}

/**
 * How a saga (onboarding, reconnect) ended without reaching its goal: `<saga>.abandoned`,
 * `.cancelled` or `.failed` (the reconnect's as `channel.reconnect_*`), once per run and outcome,
 * and a warning for operators. The problem is recorded by its code only.
 */
export async function recordSagaEnd(
  pool: Pool,
  logger: Logger,
  input: { saga: 'onboarding' | 'reconnect'; tenantId: string; resource: string; outcome: 'abandoned' | 'cancelled' | 'failed'; step: string; reason: string; problem?: OnboardingProblem; channelId?: string },
): Promise<void> {
  const action: AuditAction = input.saga === 'onboarding' ? `onboarding.${input.outcome}` : `channel.reconnect_${input.outcome}`;
  await appendAuditEvent(
    pool,
    {
      tenantId: input.tenantId,
      actor: { type: 'system', id: input.saga },
      action,
      resource: input.resource,
      outcome: input.outcome === 'failed' ? 'failure' : 'success',
      reason: input.reason,
      details: { step: input.step, ...(input.problem && { problem: input.problem.code }) },
    },
    { idempotencyKey: runAuditKey(input.outcome) },
  );
  logger.warn({ tenantId: input.tenantId, ...(input.channelId && { channelId: input.channelId }), outcome: input.outcome, step: input.step, reason: input.reason }, `${input.saga} ${input.outcome}`);
}

export function createOnboardingActivities({ pool, vault, logger, oauth }: Pick<ActivityDeps, 'pool' | 'vault' | 'logger' | 'oauth'>) {
  const client = (): MetaOAuthClient => {
    if (!oauth) fail('OAuthNotConfigured', 'flow_unavailable', 'no Meta OAuth client configured on this worker');
    return oauth;
  };
  const actor = { type: 'system' as const, id: 'onboarding' };

  async function grantToken(tenantId: string, grantId: string, purpose: string) {
    const grant = await loadGrant(pool, vault, tenantId, grantId, purpose);
    // Gone: discarded by a compensation, swept, or its data key destroyed. The client signs in again.
    if (!grant) fail('GrantMissing', 'code_rejected', `onboarding grant ${grantId} does not exist`);
    return grant;
  }

  return {
    /** Step 2a: the code → a short-lived user token, sealed in the grant row. A retry after success does nothing (the code is single use). */
    async exchangeOAuthCode(input: ExchangeCodeInput): Promise<{ kind: 'short' | 'long' }> {
      const existing = await grantState(pool, input.tenantId, input.grantId);
      if (existing) return { kind: existing.kind };
      const c = client();
      const grant = await meta('exchange', () => (input.flow === 'facebook' ? c.exchangeFacebookCode(input.code, input.codeVerifier) : c.exchangeInstagramCode(input.code)));
      await saveGrant(pool, vault, { tenantId: input.tenantId, grantId: input.grantId, flow: input.flow, kind: 'short', token: grant.accessToken, expiresAt: expiryFrom(grant.expiresIn) });
      logger.info({ tenantId: input.tenantId, grantId: input.grantId, flow: input.flow }, 'onboarding: code exchanged');
      return { kind: 'short' };
    },

    /** Step 2b: short-lived → long-lived user token (Facebook `fb_exchange_token`, Instagram `ig_exchange_token`), replacing the sealed one. */
    async extendOAuthGrant(input: { tenantId: string; grantId: string }): Promise<{ expiresAt: number | null }> {
      const grant = await grantToken(input.tenantId, input.grantId, 'onboarding.exchange');
      if (grant.kind === 'long') return { expiresAt: grant.expiresAt?.getTime() ?? null };
      const c = client();
      const long = await meta('exchange', () => (grant.flow === 'facebook' ? c.exchangeFacebookLongLived(grant.token) : c.exchangeInstagramLongLived(grant.token)));
      const expiresAt = expiryFrom(long.expiresIn);
      await saveGrant(pool, vault, { tenantId: input.tenantId, grantId: input.grantId, flow: grant.flow, kind: 'long', token: long.accessToken, expiresAt });
      return { expiresAt: expiresAt?.getTime() ?? null };
    },

    /** Compensation of step 2 (and the clean-up after step 4): the sealed user token goes. */
    async discardOAuthGrant(input: { tenantId: string; grantId: string }): Promise<{ deleted: boolean }> {
      return { deleted: await deleteGrant(pool, input.tenantId, input.grantId) };
    },

    /**
     * Step 3: the accounts the grant covers, each marked `connectedElsewhere` when another tenant
     * owns it (the allow-listed `route_channel()` lookup). No token in the answer.
     */
    async listGrantedAssets(input: { tenantId: string; grantId: string }): Promise<{ assets: GrantedAsset[] }> {
      const grant = await grantToken(input.tenantId, input.grantId, 'onboarding.assets');
      const c = client();
      const elsewhere = async (platform: Platform, accountId: string) => {
        const owner = await findChannelByAccount(pool, platform, accountId);
        return owner !== null && owner.tenantId !== input.tenantId.toLowerCase();
      };
      if (grant.flow === 'instagram') {
        const profile = await meta('assets', () => c.instagramProfile(grant.token));
        if (profile.accountType && !PROFESSIONAL_ACCOUNT_TYPES.has(profile.accountType.toUpperCase())) {
          fail('NotProfessionalAccount', 'not_professional', `Instagram account type ${profile.accountType}`);
        }
        return {
          assets: [
            {
              accountId: profile.userId,
              platform: 'instagram',
              graphApi: 'instagram',
              name: profile.username ?? profile.userId,
              connectedElsewhere: await elsewhere('instagram', profile.userId),
            },
          ],
        };
      }
      const pages = await meta('assets', () => c.listPages(grant.token));
      if (pages.length === 0) fail('NoPages', 'no_pages', 'the grant covers no Page');
      // Tasks are absent for some token types: only a list that lacks every messaging task excludes a Page.
      const usable = pages.filter((p) => p.tasks.length === 0 || p.tasks.some((t) => MESSAGING_TASKS.has(t)));
      if (usable.length === 0) fail('NotPageAdmin', 'not_page_admin', 'no granted Page allows messaging');
      const assets: GrantedAsset[] = [];
      for (const p of usable) {
        assets.push({
          accountId: p.id,
          platform: 'messenger',
          graphApi: 'facebook',
          name: p.name,
          connectedElsewhere: await elsewhere('messenger', p.id),
          ...(p.instagram && {
            linkedInstagram: { accountId: p.instagram.id, ...(p.instagram.username && { username: p.instagram.username }), connectedElsewhere: await elsewhere('instagram', p.instagram.id) },
          }),
        });
      }
      return { assets };
    },

    /**
     * Step 4: each chosen account stored as a channel, its token sealed by the vault with its
     * expiry, NOT live (`disabled`, reason `onboarding`) until go-live. Facebook: the Page tokens
     * are fetched again here with the sealed user token (they never pass through the workflow) and
     * checked with `debug_token`. Channels this step already stored (a retry) are skipped.
     */
    async storeOnboardingChannels(input: { tenantId: string; grantId: string; channels: PlannedChannel[] }): Promise<{ channels: StoredChannel[] }> {
      const done = await existingChannelIds(pool, input.tenantId, input.channels.map((p) => p.channelId));
      const todo = input.channels.filter((p) => !done.has(p.channelId));
      const stored: StoredChannel[] = [];
      if (todo.length > 0) {
        const grant = await grantToken(input.tenantId, input.grantId, 'onboarding.store');
        const tokens = await channelTokensFromGrant(client(), grant, todo);
        for (const p of todo) {
          const t = tokens.get(p.channelId)!;
          try {
            const r = await connectChannel(
              pool,
              vault,
              { tenantId: input.tenantId, platform: p.platform, accountId: p.accountId, accessToken: t.token, graphApi: p.graphApi, id: p.channelId, pendingReason: ONBOARDING_PENDING_REASON, tokenExpiresAt: t.expiresAt },
              { actor },
            );
            stored.push({ channelId: r.id, accountId: p.accountId, platform: p.platform, graphApi: p.graphApi, created: r.id === p.channelId, tokenExpiresAt: t.expiresAt?.getTime() ?? null });
          } catch (err) {
            if (err instanceof ChannelConflictError) fail('AccountConnectedElsewhere', 'connected_elsewhere', err.message);
            throw err;
          }
        }
      }
      // What an earlier attempt of this step stored (it chose these ids, so it created them).
      const earlier = input.channels.filter((p) => done.has(p.channelId));
      const expiries = await channelTokenExpiries(pool, input.tenantId, earlier.map((p) => p.channelId));
      for (const p of earlier) {
        stored.push({ channelId: p.channelId, accountId: p.accountId, platform: p.platform, graphApi: p.graphApi, created: true, tokenExpiresAt: expiries.get(p.channelId) ?? null });
      }
      const order = new Map(input.channels.map((p, i) => [p.accountId, i]));
      stored.sort((a, b) => (order.get(a.accountId) ?? 0) - (order.get(b.accountId) ?? 0));
      logger.info({ tenantId: input.tenantId, channels: stored.map((s) => s.channelId) }, 'onboarding: channels stored');
      return { channels: stored };
    },

    /** Compensation of step 4: the channels the saga created, and their tokens, are deleted (audited). */
    async removeOnboardingChannels(input: { tenantId: string; channelIds: string[]; reason: string }): Promise<{ removed: number }> {
      return { removed: await removeOnboardingChannels(pool, input.tenantId, input.channelIds, input.reason) };
    },

    /**
     * Step 5: `POST subscribed_apps` with the messaging fields for each account, then `GET` to
     * verify the app is listed with every field; the channels record the outcome
     * (`webhook_subscribed`, `webhook_checked_at`). A subscription Meta accepted but does not list
     * yet is retried.
     */
    async subscribeOnboardingChannels(input: { tenantId: string; plans: SubscriptionPlan[] }): Promise<{ verified: string[] }> {
      const c = client();
      const verified: string[] = [];
      for (const plan of input.plans) {
        const creds = await loadChannelCredentials(pool, vault, { tenantId: input.tenantId, channelId: plan.tokenChannelId }, 'graph.subscribe', { actor });
        const fields = plan.target.graphApi === 'instagram' ? INSTAGRAM_SUBSCRIBED_FIELDS : PAGE_SUBSCRIBED_FIELDS;
        await meta('subscribe', () => c.subscribeApp(plan.target, creds.accessToken, fields));
        const apps = await meta('subscribe', () => c.subscribedApps(plan.target, creds.accessToken));
        const appId = c.appId(plan.target.graphApi);
        const ours = apps.find((a) => a.id === appId);
        const missing = ours ? fields.filter((f) => !ours.subscribedFields.includes(f)) : [...fields];
        if (missing.length > 0) {
          await markWebhookSubscription(pool, input.tenantId, plan.channelIds, false);
          throw ApplicationFailure.create({
            message: `subscription of ${plan.target.accountId} not verified: ${ours ? `fields missing: ${missing.join(',')}` : 'app not listed'}`,
            type: 'SubscriptionNotVerified',
            nonRetryable: false,
            details: [{ problem: problem('subscription_failed') } satisfies FailureDetails],
          });
        }
        await markWebhookSubscription(pool, input.tenantId, plan.channelIds, true);
        await appendAuditEvent(
          pool,
          {
            tenantId: input.tenantId,
            actor,
            action: 'webhook.subscribed',
            resource: `channel:${plan.tokenChannelId}`,
            outcome: 'success',
            details: { account: plan.target.accountId, graphApi: plan.target.graphApi, fields: [...fields], channels: plan.channelIds },
          },
          { idempotencyKey: runAuditKey(`subscribed:${plan.tokenChannelId}`) },
        );
        verified.push(...plan.channelIds);
      }
      return { verified };
    },

    /**
     * Compensation of step 5: `DELETE subscribed_apps` for each account. A token Meta no longer
     * accepts cannot unsubscribe (and removing the app revokes its subscriptions anyway): logged
     * and skipped; a channel already gone is skipped; transient errors are retried.
     */
    async unsubscribeOnboardingChannels(input: { tenantId: string; plans: SubscriptionPlan[] }): Promise<{ unsubscribed: number }> {
      const c = client();
      let unsubscribed = 0;
      for (const plan of input.plans) {
        const present = await existingChannelIds(pool, input.tenantId, [plan.tokenChannelId]);
        if (!present.has(plan.tokenChannelId)) continue;
        const creds = await loadChannelCredentials(pool, vault, { tenantId: input.tenantId, channelId: plan.tokenChannelId }, 'graph.subscribe', { actor });
        try {
          await c.unsubscribeApp(plan.target, creds.accessToken);
          unsubscribed += 1;
        } catch (err) {
          if (!(err instanceof GraphApiError || err instanceof GraphNetworkError)) throw err;
          const cls = classifyGraphError(err);
          if (cls.retryable) throw err;
          logger.warn({ tenantId: input.tenantId, channelId: plan.tokenChannelId, errorClass: cls.errorClass, code: err instanceof GraphApiError ? err.code : undefined }, 'onboarding: unsubscribe refused by Meta; skipped');
        }
        await markWebhookSubscription(pool, input.tenantId, plan.channelIds, false);
        await appendAuditEvent(
          pool,
          { tenantId: input.tenantId, actor, action: 'webhook.unsubscribed', resource: `channel:${plan.tokenChannelId}`, outcome: 'success', details: { account: plan.target.accountId, graphApi: plan.target.graphApi } },
          { idempotencyKey: runAuditKey(`unsubscribed:${plan.tokenChannelId}`) },
        );
      }
      return { unsubscribed };
    },

    /** Step 6: the assistant's persona, language and business name into the tenant's settings (other assistant facts kept). */
    async configureOnboardingAssistant(input: { tenantId: string; configuration: AssistantConfiguration }): Promise<void> {
      const current = await loadTenantSettings(pool, input.tenantId);
      const { persona, language, businessName } = input.configuration;
      const parsed = tenantSettingsPatchSchema.safeParse({ assistant: { ...current.assistant, persona, language, ...(businessName !== undefined && { businessName }) } });
      if (!parsed.success) fail('InvalidConfiguration', 'invalid_configuration', parsed.error.issues.map((i) => i.path.join('.')).join(', '));
      try {
        await updateTenantSettings(pool, vault, input.tenantId, parsed.data, { actor });
      } catch (err) {
        if (err instanceof SettingsError) fail('InvalidConfiguration', 'invalid_configuration', err.message);
        throw err;
      }
    },

    /** Step 7: the saga's channels go live, with the final `onboarding.completed` audit event in the same transaction. */
    async goLiveOnboarding(input: { tenantId: string; channelIds: string[]; flow: OAuthFlow; catalogRows?: number }): Promise<{ activated: number }> {
      const r = await activateOnboardingChannels(pool, {
        tenantId: input.tenantId,
        channelIds: input.channelIds,
        idempotencyKey: runAuditKey('completed'),
        details: { flow: input.flow, ...(input.catalogRows !== undefined && { catalogRows: input.catalogRows }) },
      });
      logger.info({ tenantId: input.tenantId, channels: input.channelIds, activated: r.activated }, 'onboarding: live');
      return r;
    },

    /** Compensation of step 7: the channels stop answering. */
    async deactivateOnboardingChannels(input: { tenantId: string; channelIds: string[] }): Promise<{ deactivated: number }> {
      return { deactivated: await deactivateOnboardingChannels(pool, input.tenantId, input.channelIds) };
    },

    /** After an abandoned onboarding's compensations: crypto-shreds the tenant's secrets (tenant and users stay). */
    async cryptoShredAbandonedTenant(input: { tenantId: string; reason: string }): Promise<CryptoShredResult> {
      const r = await cryptoShredTenantSecrets(pool, input.tenantId, input.reason);
      vault.evictTenant(input.tenantId);
      if (!r.shredded) logger.warn({ tenantId: input.tenantId, channelsRemaining: r.channelsRemaining }, 'onboarding abandoned: tenant still has channels, nothing shredded');
      return r;
    },

    /**
     * How an onboarding ended without going live: the audit event (once per run and outcome) and
     * a log line for operators.
     */
    async recordOnboardingOutcome(input: { tenantId: string; outcome: OnboardingOutcome; step: string; reason: string; problem?: OnboardingProblem }): Promise<void> {
      await recordSagaEnd(pool, logger, { ...input, saga: 'onboarding', resource: `tenant:${input.tenantId}` });
    },
  };
}
