import Router from '@koa/router';
import { serveStaticAsset } from '../gateway/static-assets';
import type { Client, Connection } from '@temporalio/client';
import type { Context, Next } from 'koa';
import type { Pool } from 'pg';
import { auditRequest } from '../gateway/request-audit';
import { clearSessionCookie, setSessionCookie } from '../gateway/session-cookie';
import type { AuditEventInput } from '../audit/types';
import { attemptLogin } from '../auth/login';
import type { ThrottleLimits } from '../auth/login-throttle';
import { auditActorOf, can, type Principal } from '../auth/permissions';
import { csrfMatches, csrfTokenFor, revokeSession, type SessionLifetimes } from '../auth/sessions';
import { CatalogValidationError, formatFromFileName, formatProblem, importCatalog, MAX_CATALOG_BYTES, parseCatalog, type CatalogFormat } from '../catalog/import';
import type { Config } from '../config';
import type { SecretVault } from '../crypto/vault';
import { DASHBOARD_CSP } from '../dashboard/router';
import { channelCounts } from '../db/channel-health';
import { consumeOAuthState, createOAuthState } from '../db/onboarding';
import { withTenant } from '../db/tenant-scope';
import { getTenant } from '../db/tenants';
import { csrfSatisfied, denialAuditor, readForm } from '../gateway/principal';
import { readBodyOr413 } from '../gateway/raw-body';
import type { Logger } from '../logger';
import type { AssistantConfiguration, LoginFlow, OAuthCallback, OnboardingStatus } from '../../workflows/onboarding-definitions';
import { loadPortalAssets, type PortalAsset, type PortalAssetName } from './assets';
import { dialogUrl, flowAvailable, type DialogConfig } from './dialog-urls';
import { pageKey, problemMessage, reconnectProblemMessage, statusKey, UNAVAILABLE_MESSAGE, type StateProblem } from './messages';
import { OnboardingClient, OnboardingRefusedError, OnboardingUnavailableError } from './onboarding-client';
import { CHECKLIST, isPageWorking, LANGUAGES, loginPage, noticePage, portalPage, portalPanel, shortAccountLabel, signupPage, statePage, type FormProblem, type PortalAssets, type PortalView } from './pages';
import { portalChannel, portalChannels } from './channels';
import { ReconnectClient } from './reconnect-client';
import { signUp } from './signup';

/**
 * The onboarding portal under `/portal` (docs/onboarding.md, "Portal"): sign up, sign in, and the
 * four-step setup page driven by the onboarding saga's status query. Every change is a form post
 * with the session's CSRF token; the OAuth callback is a GET from Meta, bound to the session and
 * the tenant by the single-use `state`. Pages are plain HTML (the CSP of the dashboard: scripts
 * and styles from this origin only) and work without JavaScript.
 */

export type PortalConfig = DialogConfig &
  Pick<
    Config,
    | 'TEMPORAL_TASK_QUEUE'
    | 'TEMPORAL_RPC_TIMEOUT_MS'
    | 'ONBOARDING_OAUTH_TIMEOUT_MS'
    | 'SESSION_IDLE_TIMEOUT_MS'
    | 'SESSION_MAX_AGE_MS'
    | 'LOGIN_THROTTLE_WINDOW_MS'
    | 'LOGIN_MAX_FAILURES_PER_ACCOUNT'
    | 'LOGIN_MAX_FAILURES_PER_IP'
  >;

export interface PortalDeps {
  config: PortalConfig;
  pool: Pool;
  logger: Logger;
  temporal: { client: Client; connection: Connection };
  /** Seals the PKCE verifier of a Facebook Login attempt (src/db/onboarding.ts). */
  vault: SecretVault;
  /** Default: the files in src/portal/assets. */
  assets?: Record<PortalAssetName, PortalAsset>;
}

/** A multipart post carries at most the catalog and a few short fields. */
const MAX_CONFIGURE_BYTES = MAX_CATALOG_BYTES + 64 * 1024;
const ACCOUNT_ID = /^\d{1,32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FLOWS: readonly LoginFlow[] = ['facebook', 'instagram'];

type TenantPrincipal = Extract<Principal, { kind: 'tenant_user' }>;

declare module 'koa' {
  interface DefaultState {
    portalUser?: TenantPrincipal;
  }
}

/** A form from another site must not sign a browser up or in (login CSRF); browsers send Origin on every POST. */
function crossSite(ctx: Context): boolean {
  const origin = ctx.get('origin');
  if (!origin) return false;
  if (origin === 'null') return true;
  try {
    return new URL(origin).host !== ctx.host;
  } catch {
    return true;
  }
}

/**
 * The dashboard's policy (no inline script or style, nothing from elsewhere), except that a form
 * may lead to Meta's consent dialogs: browsers apply `form-action` to the redirect that follows a
 * post, and the connect button's post is answered with a redirect to the dialog.
 */
export function portalCsp(config: Pick<DialogConfig, 'FACEBOOK_DIALOG_BASE' | 'INSTAGRAM_DIALOG_BASE'>): string {
  const dialogs = [...new Set([config.FACEBOOK_DIALOG_BASE, config.INSTAGRAM_DIALOG_BASE].map((u) => new URL(u).origin))];
  return DASHBOARD_CSP.replace("form-action 'self'", ["form-action 'self'", ...dialogs].join(' '));
}

const isFlow = (v: unknown): v is LoginFlow => typeof v === 'string' && (FLOWS as readonly string[]).includes(v);
const firstQuery = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** Meta appends `#_` to Instagram redirects; it never reaches a server, but a pasted URL may carry it into the code. */
export function cleanCode(code: string): string {
  return code.replace(/(?:#_|%23_)+$/, '').trim();
}

export function portalRoutes(deps: PortalDeps): Router {
  const { pool, logger, config } = deps;
  const assets = deps.assets ?? loadPortalAssets();
  const pageAssets: PortalAssets = {
    js: `/portal/assets/portal.js?v=${assets['portal.js'].hash}`,
    css: `/portal/assets/portal.css?v=${assets['portal.css'].hash}`,
  };
  const onboarding = new OnboardingClient({
    client: deps.temporal.client,
    connection: deps.temporal.connection,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    rpcTimeoutMs: config.TEMPORAL_RPC_TIMEOUT_MS,
    oauthTimeoutMs: config.ONBOARDING_OAUTH_TIMEOUT_MS,
  });
  const reconnects = new ReconnectClient({
    client: deps.temporal.client,
    connection: deps.temporal.connection,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    rpcTimeoutMs: config.TEMPORAL_RPC_TIMEOUT_MS,
    oauthTimeoutMs: config.ONBOARDING_OAUTH_TIMEOUT_MS,
  });
  const lifetimes: SessionLifetimes = { idleMs: config.SESSION_IDLE_TIMEOUT_MS, absoluteMs: config.SESSION_MAX_AGE_MS };
  const throttle: ThrottleLimits = { windowMs: config.LOGIN_THROTTLE_WINDOW_MS, perAccount: config.LOGIN_MAX_FAILURES_PER_ACCOUNT, perIp: config.LOGIN_MAX_FAILURES_PER_IP };
  const denied = denialAuditor(pool, logger, 'portal');
  const router = new Router({ prefix: '/portal' });

  const send = (ctx: Context, status: number, body: string) => {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('cache-control', 'no-store');
    ctx.body = body;
  };
  const redirect = (ctx: Context, to: string) => {
    ctx.set('cache-control', 'no-store');
    ctx.status = 303;
    ctx.redirect(to);
  };

  /** Audits without ever changing the answer: a failed append is logged. */
  const audit = (ctx: Context, event: Omit<AuditEventInput, 'ip' | 'userAgent' | 'requestId'>) => auditRequest(pool, logger, ctx, event);

  const csp = portalCsp(config);
  router.use(async (ctx: Context, next: Next) => {
    ctx.set('content-security-policy', csp);
    ctx.set('x-content-type-options', 'nosniff');
    ctx.set('x-frame-options', 'DENY');
    // Not no-referrer: under it Chromium sends `Origin: null` on form posts, and the sign-up and
    // sign-in forms are checked by their Origin. same-origin still keeps the callback's URL (its
    // code and state) from ever reaching another site as a Referer.
    ctx.set('referrer-policy', 'same-origin');
    await next();
  });

  /** The setup pages are for a business's people signed in with a browser session. */
  const tenantUser = async (ctx: Context, next: Next) => {
    const p = ctx.state.principal;
    if (p?.kind === 'tenant_user' && p.credential === 'session' && ctx.state.sessionToken) {
      ctx.state.portalUser = p;
      return next();
    }
    if (p) {
      await denied(ctx, { tenantId: p.tenantId, reason: 'not_a_tenant_session' });
      return send(
        ctx,
        403,
        noticePage(pageAssets, {
          title: 'This page is for businesses',
          message: p.kind === 'operator' ? 'You are signed in as a platform operator. Operators work in the dashboard.' : 'Sign in with the account of a person in your business, in a browser.',
          action: { href: '/dashboard', label: 'Open the dashboard' },
        }),
      );
    }
    if (ctx.method === 'GET') return redirect(ctx, '/portal/login');
    await denied(ctx, { tenantId: null, reason: ctx.state.authProblem ?? 'missing_credentials' });
    return send(ctx, 401, noticePage(pageAssets, { title: "You're signed out", message: 'Sign in again, then repeat what you were doing.', action: { href: '/portal/login', label: 'Sign in' } }));
  };

  /** Urlencoded posts carry `_csrf` (read with the form); refused posts are audited. */
  const csrf = async (ctx: Context, next: Next) => {
    if (await csrfSatisfied(ctx)) return next();
    if (ctx.status === 413) return;
    await denied(ctx, { tenantId: ctx.state.portalUser!.tenantId, reason: 'csrf_token_invalid' });
    return send(ctx, 403, noticePage(pageAssets, { title: 'Please try again', message: 'This form was sent from a page that had expired. Go back to your setup and send it again.', action: { href: '/portal', label: 'Back to your setup' } }));
  };

  const forbidden = async (ctx: Context, permission: 'channels.manage' | 'settings.manage') => {
    const user = ctx.state.portalUser!;
    await denied(ctx, { tenantId: user.tenantId, reason: 'permission_denied', details: { permission } });
    send(ctx, 403, noticePage(pageAssets, { title: 'Not allowed', message: `Your role (${user.role}) can't do this. Ask the owner or an admin of your business.`, action: { href: '/portal', label: 'Back to your setup' } }));
  };

  const unavailable = (ctx: Context) => {
    ctx.set('retry-after', '5');
    send(ctx, 503, noticePage(pageAssets, { title: 'One moment', message: UNAVAILABLE_MESSAGE, action: { href: '/portal', label: 'Back to your setup' } }));
  };
  // Temporal not answering in time is one page for every route: try again in a moment.
  router.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof OnboardingUnavailableError) return unavailable(ctx);
      throw err;
    }
  });

  /**
   * The saga's status, starting it when the tenant has none and nothing is live (a sign-up whose
   * start failed, or a tenant created by an operator). A tenant whose onboarding finished and
   * aged out of Temporal's retention has live channels (active, or waiting to be reconnected),
   * and gets a "live" status instead.
   */
  async function currentStatus(tenantId: string): Promise<OnboardingStatus | undefined> {
    try {
      const status = await onboarding.status(tenantId);
      if (status) return status;
      const counts = await withTenant(pool, tenantId, (tx) => channelCounts(tx));
      // A channel waiting to be reconnected was live too: its page offers Reconnect, not a new setup.
      if (counts.active + counts.reauthRequired > 0) {
        return { tenantId, step: 'live', portalStep: 4, status: 'done', channels: [], startedAt: 0 };
      }
      await onboarding.start(tenantId);
      return await onboarding.status(tenantId);
    } catch (err) {
      if (err instanceof OnboardingUnavailableError) {
        logger.warn({ tenantId, err: { name: err.name, message: err.message } }, 'onboarding status unavailable');
        return undefined;
      }
      throw err;
    }
  }

  /**
   * A live tenant's channels, and the reconnect the page follows (`?reconnect=<channel id>`, one
   * of the tenant's own channels) with its saga's status.
   */
  async function liveParts(ctx: Context, tenantId: string, status: OnboardingStatus | undefined): Promise<Pick<PortalView, 'channels' | 'reconnect'>> {
    if (status?.step !== 'live') return {};
    const channels = await portalChannels(pool, tenantId);
    const wanted = firstQuery(ctx.query.reconnect);
    const followed = wanted && UUID.test(wanted) ? channels.find((c) => c.id === wanted.toLowerCase()) : undefined;
    if (!followed) return { channels };
    return { channels, reconnect: { channelId: followed.id, status: await reconnects.status(followed.id) } };
  }

  async function view(ctx: Context, extra: Partial<PortalView> = {}): Promise<PortalView> {
    const user = ctx.state.portalUser!;
    const [tenant, status] = await Promise.all([getTenant(pool, user.tenantId), extra.status ?? currentStatus(user.tenantId)]);
    const cancelled = firstQuery(ctx.query.cancelled);
    return {
      ...(await liveParts(ctx, user.tenantId, status)),
      status,
      businessName: tenant?.name ?? 'your business',
      csrf: csrfTokenFor(ctx.state.sessionToken!),
      flows: { facebook: flowAvailable(config, 'facebook'), instagram: flowAvailable(config, 'instagram') },
      may: { connect: can(user, 'channels.manage', user.tenantId), configure: can(user, 'settings.manage', user.tenantId) },
      ...(isFlow(cancelled) && { cancelledFlow: cancelled }),
      ...extra,
    };
  }

  // ---- static files --------------------------------------------------------------------------

  router.get('/assets/:name', (ctx) => serveStaticAsset(ctx, assets, ctx.params.name ?? ''));

  // ---- sign up, sign in, sign out ---------------------------------------------------------------

  router.get('/signup', (ctx) => {
    if (ctx.state.principal?.kind === 'tenant_user') return redirect(ctx, '/portal');
    send(ctx, 200, signupPage(pageAssets));
  });

  router.post('/signup', async (ctx) => {
    if (crossSite(ctx)) {
      await denied(ctx, { tenantId: null, reason: 'cross_site_form' });
      return send(ctx, 403, noticePage(pageAssets, { title: 'Please try again', message: 'This form must be sent from the Switchboard sign-up page.', action: { href: '/portal/signup', label: 'Go to the sign-up page' } }));
    }
    if (!ctx.is('application/x-www-form-urlencoded')) return send(ctx, 415, signupPage(pageAssets, { problems: [{ field: null, message: 'Send the sign-up form from the sign-up page.' }] }));
    const form = await readForm(ctx);
    if (!form) return;
    const values = { businessName: form.get('businessName') ?? '', email: (form.get('email') ?? '').trim() };
    const outcome = await signUp(
      { pool, logger, lifetimes, throttle },
      { ...values, password: form.get('password') ?? '', ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, requestId: String(ctx.state.requestId) },
    );
    if (!outcome.ok) {
      const ids: Record<string, string> = { businessName: 'business-name', email: 'email', password: 'password' };
      if (outcome.retryAfterSeconds !== undefined) ctx.set('retry-after', String(outcome.retryAfterSeconds));
      return send(ctx, outcome.status, signupPage(pageAssets, { values, problems: outcome.problems.map((p) => ({ field: p.field ? ids[p.field]! : null, message: p.message })) }));
    }
    setSessionCookie(ctx, outcome.session);
    // The saga starts now; if Temporal is briefly away, the setup page starts it on its first visit.
    await onboarding.start(outcome.tenantId).catch((err: unknown) => logger.warn({ requestId: ctx.state.requestId, tenantId: outcome.tenantId, err: { name: (err as Error).name, message: (err as Error).message } }, 'onboarding start deferred'));
    logger.info({ requestId: ctx.state.requestId, tenantId: outcome.tenantId, resumed: outcome.resumed }, 'portal sign-up');
    redirect(ctx, '/portal');
  });

  router.get('/login', (ctx) => {
    if (ctx.state.principal?.kind === 'tenant_user') return redirect(ctx, '/portal');
    send(ctx, 200, loginPage(pageAssets));
  });

  router.post('/login', async (ctx) => {
    if (crossSite(ctx)) {
      await denied(ctx, { tenantId: null, reason: 'cross_site_form' });
      return send(ctx, 403, loginPage(pageAssets, { problem: 'This form must be sent from the Switchboard sign-in page.' }));
    }
    if (!ctx.is('application/x-www-form-urlencoded')) return send(ctx, 415, loginPage(pageAssets, { problem: 'Send the sign-in form from the sign-in page.' }));
    const form = await readForm(ctx);
    if (!form) return;
    const email = (form.get('email') ?? '').trim().slice(0, 254);
    const password = (form.get('password') ?? '').slice(0, 1024);
    if (!email || !password) return send(ctx, 400, loginPage(pageAssets, { email, problem: 'Enter your email and your password.' }));
    const outcome = await attemptLogin({ pool, logger, lifetimes, throttle }, { email, password, ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, requestId: String(ctx.state.requestId) });
    if (!outcome.ok) {
      if (outcome.retryAfterSeconds !== undefined) {
        ctx.set('retry-after', String(outcome.retryAfterSeconds));
        return send(ctx, 429, loginPage(pageAssets, { email, problem: `Too many attempts. Wait ${Math.ceil(outcome.retryAfterSeconds / 60)} minutes, then try again.` }));
      }
      return send(ctx, 401, loginPage(pageAssets, { email, problem: 'Wrong email or password.' }));
    }
    setSessionCookie(ctx, outcome.session);
    redirect(ctx, outcome.account.kind === 'tenant_user' ? '/portal' : '/dashboard');
  });

  router.post('/logout', tenantUser, csrf, async (ctx) => {
    const user = ctx.state.portalUser!;
    await revokeSession(pool, user.tenantId, user.sessionId, 'logout');
    clearSessionCookie(ctx);
    await audit(ctx, { tenantId: user.tenantId, actor: auditActorOf(user), action: 'auth.logout', resource: `session:${user.sessionId}`, outcome: 'success' });
    redirect(ctx, '/portal/login');
  });

  // ---- the setup page --------------------------------------------------------------------------

  router.get('/', tenantUser, async (ctx) => send(ctx, 200, portalPage(pageAssets, await view(ctx))));

  /** The re-rendered part of the page, for the live state (portal.js). */
  router.get('/panel', tenantUser, async (ctx) => send(ctx, 200, portalPanel(await view(ctx)).value));

  router.get('/status.json', async (ctx) => {
    const p = ctx.state.principal;
    ctx.set('cache-control', 'no-store');
    if (p?.kind !== 'tenant_user') {
      ctx.status = 401;
      ctx.body = { error: { code: 'unauthorized', message: 'sign in at /portal/login' } };
      return;
    }
    const status = await currentStatus(p.tenantId);
    if (!status) {
      ctx.status = 503;
      ctx.set('retry-after', '2');
      ctx.body = { error: { code: 'onboarding_unavailable', message: UNAVAILABLE_MESSAGE }, key: statusKey(undefined) };
      return;
    }
    const { reconnect } = await liveParts(ctx, p.tenantId, status);
    const r = reconnect?.status;
    ctx.body = {
      ...status,
      key: pageKey(status, r),
      working: isPageWorking({ status, reconnect }),
      problem: status.problem ? { code: status.problem.code, message: problemMessage(status.problem, status.flow) } : null,
      ...(r && {
        reconnect: {
          channelId: r.channelId,
          step: r.step,
          status: r.status,
          problem: r.problem ? { code: r.problem.code, message: reconnectProblemMessage(r.problem, r.flow) } : null,
          ...(r.resumed && { resumed: r.resumed }),
        },
      }),
    };
  });

  /** Re-renders the setup page with a problem about what was just posted. */
  const refuse = async (ctx: Context, status: number, extra: Partial<PortalView>) => send(ctx, status, portalPage(pageAssets, await view(ctx, extra)));

  router.post('/connect', tenantUser, csrf, async (ctx) => {
    const user = ctx.state.portalUser!;
    if (!can(user, 'channels.manage', user.tenantId)) return forbidden(ctx, 'channels.manage');
    const form = ctx.state.form ?? new URLSearchParams();
    const flow = firstQuery(ctx.query.flow) ?? form.get('flow') ?? undefined;
    const ticked = new Set(CHECKLIST.map((c) => c.name).filter((name) => form.get(name) === 'yes'));
    if (!isFlow(flow)) return refuse(ctx, 400, { ticked, formProblems: [{ field: null, message: 'Choose Connect with Facebook or Connect with Instagram.' }] });
    if (ticked.size < CHECKLIST.length) {
      const missing = CHECKLIST.filter((c) => !ticked.has(c.name)).map((c) => c.name);
      return refuse(ctx, 400, {
        ticked,
        formProblems: [{ field: missing[0]!, message: 'Tick all three requirements before connecting: without them, Meta will not let Switchboard answer your messages.' }],
      });
    }
    if (!flowAvailable(config, flow)) return refuse(ctx, 400, { ticked, formProblems: [{ field: null, message: `Connecting with ${flow === 'facebook' ? 'Facebook' : 'Instagram'} isn't switched on for this Switchboard. Use the other button, or contact the operator.` }] });

    const status = await onboarding.status(user.tenantId);
    // The setup moved on (another tab, a double click that already connected): show where it is.
    if (!status || status.step !== 'awaiting_oauth') return redirect(ctx, '/portal');

    const created = await createOAuthState(pool, { tenantId: user.tenantId, sessionId: user.sessionId, flow }, { vault: deps.vault });
    try {
      await onboarding.beginOAuth(user.tenantId, { flow, stateHash: created.stateHash, expiresAt: created.expiresAt });
    } catch (err) {
      if (err instanceof OnboardingRefusedError) return redirect(ctx, '/portal');
      throw err;
    }
    await audit(ctx, { tenantId: user.tenantId, actor: auditActorOf(user), action: 'onboarding.oauth_started', resource: `onboarding:${user.tenantId}`, outcome: 'success', details: { flow, pkce: created.codeVerifier !== undefined } });
    ctx.set('cache-control', 'no-store');
    ctx.status = 303;
    ctx.redirect(dialogUrl(config, flow, created.state, created.codeVerifier));
  });

  /**
   * A channel Meta no longer accepts Switchboard's access to: its reconnect saga (joined if one is
   * open), a new OAuth state bound to the session, the tenant and the channel, and the consent
   * dialog of the channel's login flow.
   */
  router.post('/reconnect', tenantUser, csrf, async (ctx) => {
    const user = ctx.state.portalUser!;
    if (!can(user, 'channels.manage', user.tenantId)) return forbidden(ctx, 'channels.manage');
    const channelId = (ctx.state.form?.get('channelId') ?? '').toLowerCase();
    const channel = UUID.test(channelId) ? await portalChannel(pool, user.tenantId, channelId) : null;
    if (!channel) return send(ctx, 404, noticePage(pageAssets, { title: 'Not found', message: "That account isn't one of your business's accounts. Go back to your page and try again.", action: { href: '/portal', label: 'Back to your page' } }));
    const follow = `/portal?reconnect=${channel.id}`;
    // Already working again (another tab, a colleague): show where it stands.
    if (channel.status !== 'reauth_required') return redirect(ctx, follow);
    const flow: LoginFlow = channel.graphApi === 'instagram' ? 'instagram' : 'facebook';
    if (!flowAvailable(config, flow)) {
      return send(ctx, 400, noticePage(pageAssets, { title: 'Not available', message: `Reconnecting with ${flow === 'facebook' ? 'Facebook' : 'Instagram'} isn't switched on for this Switchboard. Contact its operator.`, action: { href: follow, label: 'Back to your page' } }));
    }
    const onboardingStatus = await onboarding.status(user.tenantId).catch(() => undefined);
    await reconnects.start(user.tenantId, channel.id, shortAccountLabel(onboardingStatus?.assets ?? [], channel));
    const created = await createOAuthState(pool, { tenantId: user.tenantId, sessionId: user.sessionId, flow, channelId: channel.id }, { vault: deps.vault });
    try {
      await reconnects.beginOAuth(channel.id, { flow, stateHash: created.stateHash, expiresAt: created.expiresAt });
    } catch (err) {
      // The saga is busy with an earlier callback: the page follows it.
      if (err instanceof OnboardingRefusedError) return redirect(ctx, follow);
      throw err;
    }
    await audit(ctx, { tenantId: user.tenantId, actor: auditActorOf(user), action: 'channel.reconnect_started', resource: `channel:${channel.id}`, outcome: 'success', details: { flow, platform: channel.platform, parked: channel.parked } });
    ctx.set('cache-control', 'no-store');
    ctx.status = 303;
    ctx.redirect(dialogUrl(config, flow, created.state, created.codeVerifier));
  });

  router.get('/oauth/callback', async (ctx) => {
    const p = ctx.state.principal;
    const q = (name: string) => {
      const v = firstQuery(ctx.query[name]);
      return typeof v === 'string' && v.length <= 2048 ? v : undefined;
    };
    const reject = async (problem: StateProblem, tenantId: string | null, details: Record<string, unknown> = {}) => {
      await audit(ctx, {
        tenantId,
        actor: p ? auditActorOf(p) : { type: 'meta' },
        action: 'onboarding.oauth_rejected',
        resource: tenantId ? `onboarding:${tenantId}` : 'onboarding',
        outcome: 'failure',
        reason: problem,
        details,
      });
      return send(ctx, problem === 'signed_out' ? 401 : 400, statePage(pageAssets, problem));
    };
    if (p?.kind !== 'tenant_user' || !ctx.state.sessionToken) return reject('signed_out', p?.tenantId ?? null);
    const state = q('state');
    if (!state) return reject('missing', p.tenantId);

    const consumed = await consumeOAuthState(pool, p.tenantId, state, p.sessionId, { vault: deps.vault });
    if ('problem' in consumed) return reject(consumed.problem, p.tenantId);
    const { flow, stateHash, channelId } = consumed;
    // A reconnect attempt names its channel: the answer goes to that channel's saga.
    const saga = channelId
      ? { deliver: (cb: OAuthCallback) => reconnects.oauthCallback(channelId, cb), resource: `channel:${channelId}`, done: `/portal?reconnect=${channelId}`, details: { flow, channel: channelId } }
      : { deliver: (cb: OAuthCallback) => onboarding.oauthCallback(p.tenantId, cb), resource: `onboarding:${p.tenantId}`, done: '/portal', details: { flow } };

    const error = q('error');
    const code = q('code');
    const outcome: 'denied' | 'code' | undefined = error ? 'denied' : code && cleanCode(code) ? 'code' : undefined;
    if (!outcome) return reject('missing', p.tenantId, saga.details);
    try {
      if (outcome === 'denied') {
        const errorReason = q('error_reason');
        const errorDescription = q('error_description');
        await saga.deliver({ stateHash, error: error!.slice(0, 100), ...(errorReason && { errorReason: errorReason.slice(0, 100) }), ...(errorDescription && { errorDescription: errorDescription.slice(0, 500) }) });
      } else {
        await saga.deliver({ stateHash, code: cleanCode(code!), ...(consumed.codeVerifier && { codeVerifier: consumed.codeVerifier }) });
      }
    } catch (err) {
      if (err instanceof OnboardingRefusedError) return reject('refused', p.tenantId, { ...saga.details, why: err.message.slice(0, 200) });
      throw err;
    }
    if (outcome === 'denied') {
      await audit(ctx, { tenantId: p.tenantId, actor: auditActorOf(p), action: 'onboarding.oauth_denied', resource: saga.resource, outcome: 'failure', reason: 'consent_denied', details: { ...saga.details, error: error!.slice(0, 100), errorReason: q('error_reason')?.slice(0, 100) } });
      return redirect(ctx, channelId ? saga.done : `/portal?cancelled=${flow}`);
    }
    await audit(ctx, { tenantId: p.tenantId, actor: auditActorOf(p), action: 'onboarding.oauth_callback', resource: saga.resource, outcome: 'success', details: saga.details });
    redirect(ctx, saga.done);
  });

  router.post('/select', tenantUser, csrf, async (ctx) => {
    const user = ctx.state.portalUser!;
    if (!can(user, 'channels.manage', user.tenantId)) return forbidden(ctx, 'channels.manage');
    const accountIds = [...new Set((ctx.state.form?.getAll('account') ?? []).filter((id) => ACCOUNT_ID.test(id)))];
    if (accountIds.length === 0) return refuse(ctx, 400, { formProblems: [{ field: null, message: 'Tick at least one account to connect.' }] });
    try {
      await onboarding.selectAssets(user.tenantId, { accountIds });
    } catch (err) {
      if (err instanceof OnboardingRefusedError) {
        return refuse(ctx, 409, { formProblems: [{ field: null, message: 'That choice could not be used (an account may have been connected elsewhere meanwhile). Check the list and choose again.' }] });
      }
      throw err;
    }
    redirect(ctx, '/portal');
  });

  router.post('/configure', tenantUser, async (ctx) => {
    const user = ctx.state.portalUser!;
    const type = ctx.is('multipart/form-data', 'application/x-www-form-urlencoded');
    if (!type) return refuse(ctx, 415, { formProblems: [{ field: null, message: 'Send the form from the setup page.' }] });
    const raw = await readBodyOr413(ctx, MAX_CONFIGURE_BYTES, 'assistant form');
    if (!raw) {
      return refuse(ctx, 413, { formProblems: [{ field: 'catalog', message: 'The catalog file is larger than 5 MB. Split it, or remove columns the assistant does not need.' }] });
    }
    let form: FormData;
    try {
      // The platform's own multipart parser (undici, behind fetch), on bytes already bounded above.
      form = await new Response(raw, { headers: { 'content-type': ctx.get('content-type') } }).formData();
    } catch {
      return refuse(ctx, 400, { formProblems: [{ field: null, message: 'The form arrived incomplete. Send it again.' }] });
    }
    const csrfValue = form.get('_csrf');
    if (!csrfMatches(ctx.state.sessionToken!, typeof csrfValue === 'string' ? csrfValue : undefined)) {
      await denied(ctx, { tenantId: user.tenantId, reason: 'csrf_token_invalid' });
      return send(ctx, 403, noticePage(pageAssets, { title: 'Please try again', message: 'This form was sent from a page that had expired. Go back to your setup and send it again.', action: { href: '/portal', label: 'Back to your setup' } }));
    }
    if (!can(user, 'settings.manage', user.tenantId)) return forbidden(ctx, 'settings.manage');

    const text = (name: string) => {
      const v = form.get(name);
      return typeof v === 'string' ? v.trim() : '';
    };
    const values = { persona: text('persona'), language: text('language'), businessName: text('businessName') };
    const problems: FormProblem[] = [];
    if (!values.persona) problems.push({ field: 'persona', message: 'Describe in a sentence or two how the assistant should sound.' });
    else if (values.persona.length > 2000) problems.push({ field: 'persona', message: 'Keep the description under 2,000 characters.' });
    const language = LANGUAGES.find(([code]) => code === values.language)?.[0];
    if (!language) problems.push({ field: 'language', message: 'Choose one of the languages in the list.' });
    if (values.businessName.length > 200) problems.push({ field: 'business-name', message: 'The business name can have at most 200 characters.' });

    const status = await onboarding.status(user.tenantId);
    if (!status || status.step !== 'configuring_assistant') return redirect(ctx, '/portal');

    const file = form.get('catalog');
    let catalog: { products: ReturnType<typeof parseCatalog>; format: CatalogFormat } | undefined;
    if (file && typeof file !== 'string' && file.size > 0) {
      const format = formatFromFileName(file.name) ?? (file.type.includes('json') ? 'json' : file.type.includes('csv') ? 'csv' : undefined);
      if (!format) problems.push({ field: 'catalog', message: 'The catalog must be a .csv or a .json file.' });
      else {
        try {
          catalog = { products: parseCatalog(Buffer.from(await file.arrayBuffer()), format), format };
        } catch (err) {
          if (!(err instanceof CatalogValidationError)) throw err;
          const shown = err.problems.slice(0, 20).map((p) => ({ field: 'catalog', message: `Catalog ${formatProblem(p, format)}` }));
          if (err.problems.length > 20) shown.push({ field: 'catalog', message: `… and ${err.problems.length - 20} more problems in the catalog.` });
          problems.push(...shown);
        }
      }
    }
    if (problems.length > 0) return refuse(ctx, 422, { status, formProblems: problems, configureValues: values });

    let catalogRows: number | undefined;
    if (catalog) {
      await importCatalog(pool, user.tenantId, catalog.products, { mode: 'upsert', actor: auditActorOf(user), requestId: String(ctx.state.requestId), ip: ctx.ip, format: catalog.format });
      catalogRows = catalog.products.length;
    }
    const configuration: AssistantConfiguration = {
      persona: values.persona,
      language: language!,
      ...(values.businessName && { businessName: values.businessName }),
      ...(catalogRows !== undefined && { catalogRows }),
    };
    try {
      await onboarding.configureAssistant(user.tenantId, configuration);
    } catch (err) {
      if (err instanceof OnboardingRefusedError) return refuse(ctx, 409, { formProblems: [{ field: null, message: 'Your setup has moved on; check the page again.' }] });
      throw err;
    }
    redirect(ctx, '/portal');
  });

  router.post('/restart', tenantUser, csrf, async (ctx) => {
    const user = ctx.state.portalUser!;
    if (!can(user, 'channels.manage', user.tenantId)) return forbidden(ctx, 'channels.manage');
    const status = await onboarding.status(user.tenantId);
    const ended = status && (status.step === 'abandoned' || status.step === 'failed' || status.step === 'cancelled');
    if (ended && (await onboarding.isRunning(user.tenantId)) === false) await onboarding.start(user.tenantId);
    redirect(ctx, '/portal');
  });

  // Anything else under /portal: a page, not the API's JSON 404.
  router.get('/{*rest}', (ctx) => send(ctx, 404, noticePage(pageAssets, { title: 'Not found', message: 'There is no such page.', action: { href: '/portal', label: 'Back to your setup' } })));

  return router;
}

