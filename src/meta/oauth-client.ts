import { createHmac } from 'node:crypto';
import type { Config } from '../config';
import { GraphApiError, GraphNetworkError, type MetaErrorBody } from './graph-errors';
import { fetchGraph } from './graph-http';

/**
 * The OAuth side of Meta (meta-api-contract §5): both login flows' token endpoints, the assets a
 * grant covers, the per-account webhook subscription and `debug_token`. Used only by the
 * onboarding activities (activities/onboarding.ts); tokens come in and go out as values and are
 * never logged or put into an error message.
 *
 * HTTP conventions as src/meta/graph-client.ts: one timeout per call, network failures as
 * `GraphNetworkError`, Meta's error bodies as `GraphApiError` (classified by
 * `classifyGraphError`). Calls made WITH a user or Page token carry the token in the
 * `Authorization` header and `appsecret_proof` (HMAC-SHA256 of the token keyed with the app
 * secret) in the query, so a leaked token alone cannot be used from elsewhere once the app
 * requires the proof. The token endpoints themselves take the secret and the code or the token
 * to exchange as Meta defines them (query or form); nothing here logs a URL.
 */

export interface OAuthApp {
  appId: string;
  appSecret: string;
}

export interface OAuthClientOptions {
  /** graph.facebook.com: Facebook Login token endpoints, `/me/accounts`, Page subscriptions, `debug_token`. */
  graphBase: string;
  /** graph.instagram.com: `ig_exchange_token`, `/me`, Instagram subscriptions. */
  instagramBase: string;
  /** api.instagram.com: the Instagram Login code exchange. */
  instagramOAuthBase: string;
  version: string;
  timeoutMs: number;
  /** The one exact redirect URI registered with both apps (the code exchange must repeat it). */
  redirectUri: string;
  /** The Meta app (Facebook Login); unset = that flow is not configured. */
  facebook?: OAuthApp;
  /** The Instagram app (Instagram Login); unset = that flow is not configured. */
  instagram?: OAuthApp;
}

export interface TokenGrant {
  accessToken: string;
  /** Seconds the token lives, when Meta said so. */
  expiresIn: number | undefined;
}

export interface InstagramCodeGrant extends TokenGrant {
  /** The Instagram professional account id (`user_id`) as the code exchange reported it. */
  userId: string | undefined;
  permissions: string[];
}

export interface ManagedPage {
  id: string;
  name: string;
  accessToken: string;
  tasks: string[];
  instagram?: { id: string; username?: string };
}

export interface InstagramProfile {
  /** The app-scoped id. */
  id: string;
  /** The professional account id: the webhook routing key (contract §5.3 step 6). */
  userId: string;
  username?: string;
  accountType?: string;
}

export interface SubscribedApp {
  id: string;
  name?: string;
  subscribedFields: string[];
}

export interface DebuggedToken {
  appId: string | undefined;
  type: string | undefined;
  isValid: boolean;
  /** Epoch seconds; 0 = never expires. */
  expiresAt: number | undefined;
  scopes: string[];
  profileId: string | undefined;
  userId: string | undefined;
}

/** Where a subscription lives: a Page on the Facebook host, or an Instagram-Login account (`me`). */
export interface SubscriptionTarget {
  graphApi: 'facebook' | 'instagram';
  /** Page id, or `me` for the Instagram-Login account the token belongs to. */
  accountId: string;
}

/** A login flow was asked for but its app id or secret is not configured. */
export class OAuthNotConfiguredError extends Error {
  constructor(flow: 'facebook' | 'instagram') {
    super(`${flow === 'facebook' ? 'META_APP_ID / META_APP_SECRET' : 'INSTAGRAM_APP_ID / INSTAGRAM_APP_SECRET'} not configured`);
    this.name = 'OAuthNotConfiguredError';
  }
}

/** `appsecret_proof`: hex HMAC-SHA256 of the access token keyed with the app secret. */
export function appSecretProof(accessToken: string, appSecret: string): string {
  return createHmac('sha256', appSecret).update(accessToken, 'utf8').digest('hex');
}

type Json = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : undefined);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];

/**
 * Meta's error body. Graph answers `{error:{message,type,code,error_subcode}}`; the Instagram
 * OAuth host has also been seen answering flat `{error_type, code, error_message}`: read as an
 * OAuthException with Graph's "invalid parameter" code, which is what it means there.
 */
function errorBody(json: unknown): MetaErrorBody | undefined {
  if (!json || typeof json !== 'object') return undefined;
  const o = json as Json;
  if (o.error && typeof o.error === 'object') return o.error as MetaErrorBody;
  if (typeof o.error_type === 'string') return { type: o.error_type, code: 100, message: typeof o.error_message === 'string' ? o.error_message : undefined };
  return undefined;
}

export class MetaOAuthClient {
  constructor(private readonly opts: OAuthClientOptions) {}

  /** Which flows have an app configured (the portal offers only these). */
  get flows(): Array<'facebook' | 'instagram'> {
    return [...(this.opts.facebook ? (['facebook'] as const) : []), ...(this.opts.instagram ? (['instagram'] as const) : [])];
  }

  private app(flow: 'facebook' | 'instagram'): OAuthApp {
    const app = flow === 'facebook' ? this.opts.facebook : this.opts.instagram;
    if (!app) throw new OAuthNotConfiguredError(flow);
    return app;
  }

  private url(base: string, path: string, query: Record<string, string | undefined> = {}): string {
    const u = new URL(`${base.replace(/\/$/, '')}${path}`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, v);
    return u.toString();
  }

  private versioned(base: string, path: string, query?: Record<string, string | undefined>): string {
    return this.url(base, `/${this.opts.version}${path}`, query);
  }

  private async call(method: 'GET' | 'POST' | 'DELETE', url: string, init: { token?: string; form?: Record<string, string> } = {}): Promise<Json> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const { res, json, usage } = await fetchGraph(url, { method, headers, body, timeoutMs: this.opts.timeoutMs }, 'Meta OAuth');
    if (!res.ok) throw new GraphApiError(res.status, errorBody(json), usage);
    if (!json || typeof json !== 'object') throw new GraphNetworkError(`Meta answered HTTP ${res.status} without a JSON object`, false);
    // Some Graph errors arrive with a 200 on older hosts; an error object is an error whatever the status.
    const embedded = errorBody(json);
    if (embedded && (json as Json).error) throw new GraphApiError(res.status, embedded, usage);
    return json as Json;
  }

  private tokenGrant(json: Json): TokenGrant {
    const accessToken = str(json.access_token);
    if (!accessToken) throw new GraphNetworkError('Meta token answer without an access_token', false);
    return { accessToken, expiresIn: num(json.expires_in) };
  }

  /** Query parameters of a call made with a user/Page token of `flow`'s app: the proof. */
  private proof(flow: 'facebook' | 'instagram', token: string): Record<string, string> {
    return { appsecret_proof: appSecretProof(token, this.app(flow).appSecret) };
  }

  // ---- Facebook Login (§5.1, §5.2) ------------------------------------------------------------

  /** Code → short-lived user token. `codeVerifier` when the dialog was opened with a PKCE challenge. */
  async exchangeFacebookCode(code: string, codeVerifier?: string): Promise<TokenGrant> {
    const app = this.app('facebook');
    const url = this.versioned(this.opts.graphBase, '/oauth/access_token', {
      client_id: app.appId,
      redirect_uri: this.opts.redirectUri,
      client_secret: app.appSecret,
      code,
      code_verifier: codeVerifier,
    });
    return this.tokenGrant(await this.call('GET', url));
  }

  /** Short-lived → long-lived (~60 days) user token. */
  async exchangeFacebookLongLived(shortLivedToken: string): Promise<TokenGrant> {
    const app = this.app('facebook');
    const url = this.versioned(this.opts.graphBase, '/oauth/access_token', {
      grant_type: 'fb_exchange_token',
      client_id: app.appId,
      client_secret: app.appSecret,
      fb_exchange_token: shortLivedToken,
    });
    return this.tokenGrant(await this.call('GET', url));
  }

  /** The Pages the user granted, with their Page tokens and linked Instagram accounts (every page of results). */
  async listPages(userToken: string): Promise<ManagedPage[]> {
    const pages: ManagedPage[] = [];
    let url: string | undefined = this.versioned(this.opts.graphBase, '/me/accounts', {
      fields: 'id,name,access_token,tasks,instagram_business_account{id,username}',
      limit: '100',
      ...this.proof('facebook', userToken),
    });
    // Meta pages `/me/accounts`; a bounded number of pages keeps a looping `next` from spinning forever.
    for (let n = 0; url && n < 20; n++) {
      const json = await this.call('GET', url, { token: userToken });
      for (const raw of Array.isArray(json.data) ? (json.data as Json[]) : []) {
        const id = str(raw.id);
        const accessToken = str(raw.access_token);
        if (!id || !/^\d{1,32}$/.test(id) || !accessToken) continue;
        const ig = raw.instagram_business_account as Json | undefined;
        const igId = ig ? str(ig.id) : undefined;
        pages.push({
          id,
          name: str(raw.name) ?? id,
          accessToken,
          tasks: strings(raw.tasks),
          ...(igId && /^\d{1,32}$/.test(igId) && { instagram: { id: igId, ...(str(ig!.username) && { username: str(ig!.username) }) } }),
        });
      }
      const next = str((json.paging as Json | undefined)?.next);
      // Follow `next` only on the host we asked (it carries the token; never send it elsewhere).
      url = next && new URL(next).origin === new URL(this.opts.graphBase).origin ? this.withProof(next, userToken) : undefined;
    }
    return pages;
  }

  private withProof(next: string, userToken: string): string {
    const u = new URL(next);
    u.searchParams.delete('access_token');
    u.searchParams.set('appsecret_proof', appSecretProof(userToken, this.app('facebook').appSecret));
    return u.toString();
  }

  /** Token metadata (§5.6), asked with the app token `app-id|app-secret`. */
  async debugToken(inputToken: string): Promise<DebuggedToken> {
    const app = this.app('facebook');
    const url = this.versioned(this.opts.graphBase, '/debug_token', { input_token: inputToken });
    const json = await this.call('GET', url, { token: `${app.appId}|${app.appSecret}` });
    const d = (json.data ?? {}) as Json;
    return {
      appId: str(d.app_id),
      type: str(d.type),
      isValid: d.is_valid === true,
      expiresAt: num(d.expires_at),
      scopes: strings(d.scopes),
      profileId: str(d.profile_id),
      userId: str(d.user_id),
    };
  }

  // ---- Instagram Login (§5.3) -----------------------------------------------------------------

  /** Code → short-lived Instagram token (POST, form-encoded; both documented answer shapes). */
  async exchangeInstagramCode(code: string): Promise<InstagramCodeGrant> {
    const app = this.app('instagram');
    const json = await this.call('POST', this.url(this.opts.instagramOAuthBase, '/oauth/access_token'), {
      form: {
        client_id: app.appId,
        client_secret: app.appSecret,
        grant_type: 'authorization_code',
        redirect_uri: this.opts.redirectUri,
        // The `#_` Instagram appends to the redirect is not part of the code.
        code: code.replace(/#_$/, ''),
      },
    });
    const row = (Array.isArray(json.data) ? (json.data[0] as Json | undefined) : json) ?? {};
    const grant = this.tokenGrant(row);
    return { ...grant, userId: str(row.user_id), permissions: strings(row.permissions) };
  }

  /** Short-lived → 60-day Instagram token. */
  async exchangeInstagramLongLived(shortLivedToken: string): Promise<TokenGrant> {
    const app = this.app('instagram');
    const url = this.url(this.opts.instagramBase, '/access_token', { grant_type: 'ig_exchange_token', client_secret: app.appSecret, access_token: shortLivedToken });
    return this.tokenGrant(await this.call('GET', url));
  }

  /** A long-lived Instagram token (≥ 24 h old, unexpired) → a new one valid 60 days from now. */
  async refreshInstagramToken(longLivedToken: string): Promise<TokenGrant> {
    const url = this.url(this.opts.instagramBase, '/refresh_access_token', { grant_type: 'ig_refresh_token', access_token: longLivedToken });
    return this.tokenGrant(await this.call('GET', url));
  }

  /** The Instagram professional account behind an Instagram-Login token. */
  async instagramProfile(token: string): Promise<InstagramProfile> {
    // `id` asked for explicitly: Graph answers only the fields named (the sandbox does too).
    const url = this.versioned(this.opts.instagramBase, '/me', { fields: 'id,user_id,username,account_type', ...this.proof('instagram', token) });
    const json = await this.call('GET', url, { token });
    const id = str(json.id);
    const userId = str(json.user_id) ?? id;
    if (!id || !userId) throw new GraphNetworkError('Instagram /me answered without an id', false);
    return { id, userId, username: str(json.username), accountType: str(json.account_type) };
  }

  // ---- Webhook subscriptions (§5.5) -----------------------------------------------------------

  private subscriptionUrl(target: SubscriptionTarget, token: string, query: Record<string, string> = {}): string {
    const base = target.graphApi === 'instagram' ? this.opts.instagramBase : this.opts.graphBase;
    const id = target.accountId === 'me' ? 'me' : encodeURIComponent(target.accountId);
    return this.versioned(base, `/${id}/subscribed_apps`, { ...query, ...this.proof(target.graphApi, token) });
  }

  async subscribeApp(target: SubscriptionTarget, token: string, fields: readonly string[]): Promise<void> {
    const json = await this.call('POST', this.subscriptionUrl(target, token, { subscribed_fields: fields.join(',') }), { token });
    // Meta's stored docs show `"true"` as a string too.
    if (json.success !== true && json.success !== 'true') throw new GraphNetworkError('subscribed_apps POST did not answer success', false);
  }

  async subscribedApps(target: SubscriptionTarget, token: string): Promise<SubscribedApp[]> {
    const json = await this.call('GET', this.subscriptionUrl(target, token), { token });
    return (Array.isArray(json.data) ? (json.data as Json[]) : []).flatMap((a) => {
      const id = str(a.id);
      return id ? [{ id, name: str(a.name), subscribedFields: strings(a.subscribed_fields) }] : [];
    });
  }

  async unsubscribeApp(target: SubscriptionTarget, token: string): Promise<void> {
    await this.call('DELETE', this.subscriptionUrl(target, token), { token });
  }

  /** The app id a subscription must show for `flow` (the Meta app, or the Instagram app). */
  appId(flow: 'facebook' | 'instagram'): string {
    return this.app(flow).appId;
  }
}

export type OAuthConfigKey =
  | 'META_APP_ID'
  | 'META_APP_SECRET'
  | 'INSTAGRAM_APP_ID'
  | 'INSTAGRAM_APP_SECRET'
  | 'OAUTH_REDIRECT_URI'
  | 'GRAPH_API_BASE'
  | 'INSTAGRAM_API_BASE'
  | 'INSTAGRAM_OAUTH_BASE'
  | 'GRAPH_API_VERSION'
  | 'GRAPH_API_TIMEOUT_MS';

/**
 * The client from the configuration: a flow is configured when its app id and secret are both
 * set (the Meta app's secret is META_APP_SECRET, which also signs webhooks).
 */
export function createOAuthClient(config: Partial<Pick<Config, OAuthConfigKey>>): MetaOAuthClient {
  return new MetaOAuthClient({
    graphBase: config.GRAPH_API_BASE ?? 'https://graph.facebook.com',
    instagramBase: config.INSTAGRAM_API_BASE ?? 'https://graph.instagram.com',
    instagramOAuthBase: config.INSTAGRAM_OAUTH_BASE ?? 'https://api.instagram.com',
    version: config.GRAPH_API_VERSION ?? 'v23.0',
    timeoutMs: config.GRAPH_API_TIMEOUT_MS ?? 10_000,
    redirectUri: config.OAUTH_REDIRECT_URI ?? 'http://localhost:3000/portal/oauth/callback',
    ...(config.META_APP_ID && config.META_APP_SECRET && { facebook: { appId: config.META_APP_ID, appSecret: config.META_APP_SECRET } }),
    ...(config.INSTAGRAM_APP_ID && config.INSTAGRAM_APP_SECRET && { instagram: { appId: config.INSTAGRAM_APP_ID, appSecret: config.INSTAGRAM_APP_SECRET } }),
  });
}
