import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import {
  metaDate,
  metaError,
  paramError,
  unsupportedRequest,
  type GraphCall,
  type GraphRoute,
  type Reply,
} from './graph-common';
import {
  FB_SHORT_TOKEN_S,
  IG_SHORT_TOKEN_S,
  LONG_TOKEN_S,
  type CodeRecord,
  type GrantedPage,
  type OAuthStore,
  type PkceChallenge,
  type TokenKind,
  type TokenRecord,
} from './oauth-store';

/**
 * The Graph side of Meta's OAuth (contract §5): token endpoints of both login flows, the assets
 * behind a token (`/me/accounts`, `/me`, `/{page-id}`), webhook subscriptions, `debug_token`, and
 * the checks every call with a sandbox-issued token gets (expiry, `appsecret_proof`). Errors use
 * the Graph shape, except Instagram's code exchange (`POST /oauth/access_token` without a version,
 * i.e. api.instagram.com), which answers in its own flat shape `{error_type, code, error_message}`
 * (contract §4.1).
 */

// ---------------------------------------------------------------------------------------------
// Errors

function oauthError(message: string, code: number, subcode?: number, type = 'OAuthException'): Reply {
  return metaError(400, { message, type, code, ...(subcode === undefined ? {} : { error_subcode: subcode }) });
}

/** api.instagram.com's token endpoint does not use the Graph error shape. */
function igFlatError(message: string): Reply {
  return { status: 400, body: { error_type: 'OAuthException', code: 400, error_message: message } };
}

const invalidToken = (): Reply => oauthError('Invalid OAuth access token - Cannot parse access token', 190);

function expiredToken(store: OAuthStore, record: TokenRecord): Reply {
  return oauthError(
    `Error validating access token: Session has expired on ${metaDate(record.expiresAt)}. The current time is ${metaDate(store.now())}.`,
    190,
    463,
  );
}

const SESSION_INVALIDATED =
  'Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.';

/** Meta's answer for a token killed by a password change (contract §4.2: 190/460). */
export const sessionInvalidated = (): Reply => oauthError(SESSION_INVALIDATED, 190, 460);

const pageTokenRequired = (): Reply => oauthError('(#210) A page access token is required to request this resource.', 210);

// ---------------------------------------------------------------------------------------------
// Helpers

/** Query parameters, with string fields of a form or JSON body on top (Graph reads both). */
function params(call: GraphCall): Record<string, string> {
  const out = { ...call.query };
  for (const [k, v] of Object.entries(call.body)) if (typeof v === 'string') out[k] = v;
  return out;
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function appsecretProof(secret: string, token: string): string {
  return createHmac('sha256', secret).update(token, 'utf8').digest('hex');
}

function pkceProblem(pkce: PkceChallenge | undefined, verifier: string | undefined): string | undefined {
  if (!pkce) return undefined;
  if (!verifier) return 'Missing code_verifier parameter.';
  const derived = pkce.method === 'S256' ? createHash('sha256').update(verifier, 'ascii').digest('base64url') : verifier;
  return derived === pkce.challenge ? undefined : 'Invalid code_verifier: it does not match the code_challenge of the dialog.';
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** A token of the given kinds, issued by this sandbox and unexpired; otherwise the Graph error. */
function tokenOf(call: GraphCall, token: string | undefined, kinds: readonly TokenKind[]): TokenRecord | Reply {
  const record = call.oauth.lookupToken(token);
  if (!record) return invalidToken();
  if (record.invalidatedAt !== undefined) return sessionInvalidated();
  if (call.oauth.isExpired(record)) return expiredToken(call.oauth, record);
  if (!kinds.includes(record.kind)) {
    if (kinds.includes('page') && record.kind === 'user') return pageTokenRequired();
    return invalidToken();
  }
  return record;
}

function isReply(v: TokenRecord | Reply): v is Reply {
  return 'status' in v;
}

// Graph `fields=a,b{c,d}`: enough of the syntax for the nodes the sandbox serves.
interface FieldSel {
  name: string;
  sub?: FieldSel[];
}

function parseFields(raw: string | undefined, defaults: string[]): FieldSel[] {
  if (raw === undefined || raw.trim() === '') return defaults.map((name) => ({ name }));
  let i = 0;
  const list = (): FieldSel[] => {
    const out: FieldSel[] = [];
    while (i < raw.length && raw[i] !== '}') {
      const start = i;
      while (i < raw.length && !',{}'.includes(raw[i]!)) i++;
      const name = raw.slice(start, i).trim();
      let sub: FieldSel[] | undefined;
      if (raw[i] === '{') {
        i++;
        sub = list();
        i++; // the closing brace
      }
      if (name) out.push({ name, ...(sub && { sub }) });
      if (raw[i] === ',') i++;
    }
    return out;
  };
  return list();
}

/** Picks the requested fields from what a node has; an unknown field is Meta's (#100) error. */
function pick(
  available: Record<string, (sub?: FieldSel[]) => unknown>,
  fields: FieldSel[],
  nodeType: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; reply: Reply } {
  const value: Record<string, unknown> = {};
  for (const f of fields) {
    const get = available[f.name];
    if (!get) return { ok: false, reply: paramError(`Tried accessing nonexisting field (${f.name}) on node type (${nodeType})`) };
    const v = get(f.sub);
    if (v !== undefined) value[f.name] = v;
  }
  return { ok: true, value };
}

function instagramBusinessAccount(page: GrantedPage, sub?: FieldSel[]): unknown {
  if (!page.instagram) return undefined;
  const ig = page.instagram;
  if (!sub) return { id: ig.id };
  const out: Record<string, unknown> = {};
  for (const f of sub) {
    if (f.name === 'id') out['id'] = ig.id;
    else if (f.name === 'username') out['username'] = ig.username;
  }
  return out;
}

function pageFields(page: GrantedPage, accessToken: string | undefined): Record<string, (sub?: FieldSel[]) => unknown> {
  return {
    id: () => page.id,
    name: () => page.name,
    category: () => page.category,
    tasks: () => [...page.tasks],
    access_token: () => accessToken,
    instagram_business_account: (sub) => instagramBusinessAccount(page, sub),
  };
}

// ---------------------------------------------------------------------------------------------
// Checks every call with a sandbox-issued token gets (graph-sandbox.ts runs them before a route)

/**
 * Expiry and `appsecret_proof` (contract §5, issue 7): a token the sandbox issued must be
 * unexpired, and its proof — hex HMAC-SHA256 of the token keyed with its app's secret — must be
 * right when present (or when the app requires one). Tokens the sandbox did not issue (a token
 * typed into the CLI) pass, so the Send API stays usable without OAuth.
 */
export function checkIssuedToken(call: GraphCall): Reply | undefined {
  // Invalidated tokens (`invalidateTokens`) fail everywhere, the Send API's hand-typed ones included.
  if (call.oauth.isInvalidated(call.token)) return sessionInvalidated();
  const record = call.oauth.lookupToken(call.token);
  if (!record || call.token === undefined) return undefined;
  if (call.oauth.isExpired(record)) return expiredToken(call.oauth, record);
  const proof = params(call)['appsecret_proof'];
  const app = call.oauth.findApp(record.appId);
  if (proof === undefined) {
    return app?.requireAppsecretProof
      ? oauthError('API calls from the server require an appsecret_proof argument', 100, undefined, 'GraphMethodException')
      : undefined;
  }
  if (!app || !sameSecret(proof.toLowerCase(), appsecretProof(app.appSecret, call.token))) {
    return oauthError('Invalid appsecret_proof provided in the API argument', 100, undefined, 'GraphMethodException');
  }
  return undefined;
}

/** Send API: a sandbox-issued token sends only as its own account (its Page, the Page's Instagram account, or its Instagram account). */
export function checkSender(call: GraphCall, node: string): Reply | undefined {
  const record = call.oauth.lookupToken(call.token);
  if (!record) {
    if (node !== 'me' && call.oauth.accountInvalidated(node)) return sessionInvalidated();
    if (call.token !== undefined && node !== 'me') call.oauth.noteHandToken(node, call.token);
    return undefined;
  }
  if (record.kind === 'user') return pageTokenRequired();
  if (node !== 'me' && !call.oauth.sendersFor(record).includes(node)) return unsupportedRequest(call.method, node);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Token endpoints

type CodeCheck = { ok: true; code: CodeRecord } | { ok: false; problem: 'unknown' | 'other_app' | 'used' | 'expired' | 'redirect' | 'pkce'; message?: string };

function checkCode(
  store: OAuthStore,
  raw: string,
  appId: string,
  flow: CodeRecord['flow'],
  redirectUri: string,
  verifier: string | undefined,
): CodeCheck {
  const code = store.findCode(raw);
  if (!code) return { ok: false, problem: 'unknown' };
  if (code.appId !== appId || code.flow !== flow) return { ok: false, problem: 'other_app' };
  if (code.used) return { ok: false, problem: 'used' };
  if (code.expiresAt <= store.now()) return { ok: false, problem: 'expired' };
  if (code.redirectUri !== redirectUri) return { ok: false, problem: 'redirect' };
  const pkce = pkceProblem(code.pkce, verifier);
  if (pkce) return { ok: false, problem: 'pkce', message: pkce };
  return { ok: true, code };
}

const REDIRECT_MISMATCH =
  'Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request';

/** `GET /{ver}/oauth/access_token`: Facebook's code exchange, or `grant_type=fb_exchange_token`. */
function facebookAccessToken(call: GraphCall): Reply {
  const store = call.oauth;
  const p = params(call);
  const clientId = p['client_id'];
  const app = store.findApp(clientId);
  if (!clientId) return oauthError('Missing client_id parameter.', 101);
  // api.instagram.com refuses GET; a client using the Facebook form for Instagram gets that answer.
  if (app?.platform === 'instagram' && call.method === 'GET' && !call.version) {
    return igFlatError('Unsupported request - method type: get');
  }
  if (!app || app.platform !== 'facebook') return oauthError('Error validating application. Invalid application ID.', 101);
  const secret = p['client_secret'];
  if (!secret) return oauthError('Missing client_secret parameter.', 1);
  if (!sameSecret(secret, app.appSecret)) return oauthError('Error validating client secret.', 1);

  const grantType = p['grant_type'];
  if (grantType === 'fb_exchange_token') {
    const short = p['fb_exchange_token'];
    if (!short) return paramError('The parameter fb_exchange_token is required');
    const record = tokenOf(call, short, ['user']);
    if (isReply(record)) return record;
    if (record.appId !== app.appId) return oauthError('Error validating access token: The token was issued for another app.', 190);
    const minted = store.mintToken('user', true, record.grant, LONG_TOKEN_S);
    return { status: 200, body: { access_token: minted.token, token_type: 'bearer', expires_in: LONG_TOKEN_S }, committed: true };
  }
  if (grantType !== undefined && grantType !== 'authorization_code') {
    return paramError(`Unsupported grant_type "${grantType}": use fb_exchange_token or the code exchange`);
  }

  const redirectUri = p['redirect_uri'];
  if (!redirectUri) return oauthError('Missing redirect_uri parameter.', 100);
  if (!/^https?:\/\/[^/]/i.test(redirectUri)) return oauthError("redirect_uri isn't an absolute URI. Check RFC 3986.", 100);
  const raw = p['code'];
  if (!raw) return paramError('The parameter code is required');

  const checked = checkCode(store, raw, app.appId, 'facebook', redirectUri, p['code_verifier']);
  if (!checked.ok) {
    switch (checked.problem) {
      case 'unknown':
      case 'other_app':
        return oauthError('Invalid verification code format.', 100);
      case 'used':
        return oauthError('This authorization code has been used.', 100, 36009);
      case 'expired':
        return oauthError('This authorization code has expired.', 100, 36007);
      case 'redirect':
        return oauthError(REDIRECT_MISMATCH, 100, 36008);
      case 'pkce':
        return oauthError(checked.message!, 100);
    }
  }
  store.redeem(checked.code);
  const minted = store.mintToken('user', false, checked.code.grant, FB_SHORT_TOKEN_S);
  return { status: 200, body: { access_token: minted.token, token_type: 'bearer', expires_in: FB_SHORT_TOKEN_S }, committed: true };
}

/** `POST /oauth/access_token` (api.instagram.com): Instagram Login's code exchange, form-encoded. */
function instagramCodeExchange(call: GraphCall): Reply {
  const store = call.oauth;
  const p = params(call);
  const app = store.findApp(p['client_id']);
  if (!app || app.platform !== 'instagram') return igFlatError('Invalid platform app');
  if (!p['client_secret'] || !sameSecret(p['client_secret'], app.appSecret)) return igFlatError('Error validating client secret.');
  if (p['grant_type'] !== 'authorization_code') return igFlatError('Invalid grant_type: must be authorization_code');
  const redirectUri = p['redirect_uri'];
  if (!redirectUri || !/^https?:\/\/[^/]/i.test(redirectUri)) return igFlatError('Invalid redirect_uri');
  const raw = p['code'];
  if (!raw) return igFlatError('Missing required field code');

  const checked = checkCode(store, raw, app.appId, 'instagram', redirectUri, p['code_verifier']);
  if (!checked.ok) {
    switch (checked.problem) {
      case 'unknown':
      case 'other_app':
      case 'used':
        return igFlatError('Matching code was not found or was already used');
      case 'expired':
        return igFlatError('This authorization code has expired');
      case 'redirect':
        return igFlatError(REDIRECT_MISMATCH);
      case 'pkce':
        return igFlatError(checked.message!);
    }
  }
  const grant = checked.code.grant;
  if (!grant.instagram) return igFlatError('Matching code was not found or was already used');
  store.redeem(checked.code);
  const minted = store.mintToken('instagram', false, grant, IG_SHORT_TOKEN_S);
  return {
    status: 200,
    // The code exchange's user_id is the app-scoped id, not the account id webhooks carry: clients must ask /me for user_id (fixtures README).
    body: { data: [{ access_token: minted.token, user_id: grant.instagram.appScopedId, permissions: grant.scopes.join(',') }] },
    committed: true,
  };
}

/** `GET /access_token?grant_type=ig_exchange_token` (graph.instagram.com): the 60-day token. */
function instagramLongLived(call: GraphCall): Reply {
  const p = params(call);
  if (p['grant_type'] !== 'ig_exchange_token') return paramError('grant_type must be ig_exchange_token');
  const record = tokenOf(call, call.token, ['instagram']);
  if (isReply(record)) return record;
  const app = call.oauth.findApp(record.appId);
  if (!p['client_secret']) return oauthError('Missing client_secret parameter.', 1);
  if (!app || !sameSecret(p['client_secret'], app.appSecret)) return oauthError('Error validating client secret.', 1);
  const minted = call.oauth.mintToken('instagram', true, record.grant, LONG_TOKEN_S);
  return { status: 200, body: { access_token: minted.token, token_type: 'bearer', expires_in: LONG_TOKEN_S }, committed: true };
}

/** `GET /refresh_access_token?grant_type=ig_refresh_token`: only long-lived tokens at least 24 h old (contract §5.3). */
function instagramRefresh(call: GraphCall): Reply {
  const p = params(call);
  if (p['grant_type'] !== 'ig_refresh_token') return paramError('grant_type must be ig_refresh_token');
  const record = tokenOf(call, call.token, ['instagram']);
  if (isReply(record)) return record;
  if (!record.long) return paramError('Only long-lived access tokens can be refreshed: exchange this token with ig_exchange_token first');
  if (call.oauth.now() - record.issuedAt < 24 * 3_600_000) {
    return paramError('The access token can be refreshed only once it is at least 24 hours old');
  }
  const minted = call.oauth.mintToken('instagram', true, record.grant, LONG_TOKEN_S);
  return { status: 200, body: { access_token: minted.token, token_type: 'bearer', expires_in: LONG_TOKEN_S }, committed: true };
}

// ---------------------------------------------------------------------------------------------
// What a token can see

/** `GET /{ver}/me`: the Instagram account (Instagram Login), the Facebook user, or the Page of a Page token. */
function me(call: GraphCall): Reply {
  const record = tokenOf(call, call.token, ['user', 'page', 'instagram']);
  if (isReply(record)) return record;
  const fieldsRaw = call.query['fields'];
  let picked: ReturnType<typeof pick>;
  if (record.kind === 'instagram') {
    const ig = record.grant.instagram!;
    picked = pick(
      {
        id: () => ig.appScopedId,
        user_id: () => ig.userId,
        username: () => ig.username,
        name: () => ig.name,
        account_type: () => ig.accountType,
        // A .invalid host (RFC 2606): a client that fetches it fails at once, nothing leaves the machine.
        profile_picture_url: () => `https://profile-pictures.sandbox.invalid/${ig.userId}.jpg`,
      },
      parseFields(fieldsRaw, ['id', 'username']),
      'User',
    );
  } else if (record.kind === 'page') {
    const page = record.grant.pages.find((p) => p.id === record.pageId)!;
    picked = pick(pageFields(page, call.token), parseFields(fieldsRaw, ['id', 'name']), 'Page');
  } else {
    const user = record.grant.user;
    picked = pick({ id: () => user.id, name: () => user.name }, parseFields(fieldsRaw, ['id', 'name']), 'User');
  }
  return picked.ok ? { status: 200, body: picked.value } : picked.reply;
}

/** `GET /{ver}/me/accounts`: the granted Pages with their (derived) Page tokens. */
function accounts(call: GraphCall): Reply {
  const record = tokenOf(call, call.token, ['user', 'page']);
  if (isReply(record)) return record;
  if (record.kind === 'page') return paramError('Tried accessing nonexisting field (accounts) on node type (Page)');
  const node = call.params['node']!;
  if (node !== 'me' && node !== record.grant.user.id) return unsupportedRequest(call.method, node);
  // Without pages_show_list Meta lists nothing (contract §5.4).
  const pages = record.grant.scopes.includes('pages_show_list') ? record.grant.pages : [];
  const fields = parseFields(call.query['fields'], ['access_token', 'category', 'name', 'id', 'tasks']);
  const data: Record<string, unknown>[] = [];
  for (const page of pages) {
    const token = call.oauth.pageToken(call.token!, record, page);
    const picked = pick(pageFields(page, token), fields, 'Page');
    if (!picked.ok) return picked.reply;
    data.push(picked.value);
  }
  const cursor = (id: string) => Buffer.from(id).toString('base64url');
  const paging = data.length === 0 ? {} : { cursors: { before: cursor(pages[0]!.id), after: cursor(pages[pages.length - 1]!.id) } };
  return { status: 200, body: { data, paging } };
}

/** `GET /{ver}/{page-id}` (contract §5.1 step 5–6), with a user token that was granted the Page or the Page's own token. */
function pageNode(call: GraphCall): Reply {
  const node = call.params['node']!;
  const record = tokenOf(call, call.token, ['user', 'page']);
  if (isReply(record)) return record;
  const page = record.grant.pages.find((p) => p.id === node);
  if (!page || (record.kind === 'page' && record.pageId !== node)) return unsupportedRequest(call.method, node);
  const token = record.kind === 'page' ? call.token : call.oauth.pageToken(call.token!, record, page);
  const picked = pick(pageFields(page, token), parseFields(call.query['fields'], ['id', 'name']), 'Page');
  return picked.ok ? { status: 200, body: picked.value } : picked.reply;
}

// ---------------------------------------------------------------------------------------------
// Webhook subscriptions (contract §5.5)

const PAGE_FIELDS = new Set([
  'messages',
  'message_echoes',
  'message_deliveries',
  'message_reads',
  'message_reactions',
  'message_edits',
  'messaging_postbacks',
  'messaging_referrals',
  'messaging_optins',
  'messaging_policy_enforcement',
  'messaging_handovers',
  'messaging_account_linking',
  'messaging_feedback',
  'response_feedback',
  'standby',
  'feed',
  'mention',
]);

const INSTAGRAM_FIELDS = new Set([
  'messages',
  'messaging_postbacks',
  'messaging_seen',
  'message_reactions',
  'messaging_referral',
  'messaging_optins',
  'messaging_handover',
  'message_edit',
  'standby',
  'comments',
  'live_comments',
  'mentions',
  'story_insights',
]);

function subscribedApps(call: GraphCall): Reply {
  const store = call.oauth;
  const node = call.params['node']!;
  const record = tokenOf(call, call.token, ['page', 'instagram']);
  if (isReply(record)) return record;
  const accountId = store.accountOf(record);
  if (node !== 'me' && node !== accountId) return unsupportedRequest(call.method, node);
  const object = record.kind === 'page' ? 'page' : 'instagram';

  if (call.method === 'GET') {
    return {
      status: 200,
      body: {
        data: store.subscriptionsOf(accountId).map((s) => ({ id: s.appId, name: store.appName(s.appId), subscribed_fields: s.subscribedFields })),
      },
    };
  }
  if (call.method === 'DELETE') {
    store.unsubscribe(accountId, record.appId);
    return { status: 200, body: { success: true }, committed: true };
  }

  const raw = params(call)['subscribed_fields'];
  if (!raw) return paramError('The parameter subscribed_fields is required');
  const fields = [...new Set(raw.split(',').map((f) => f.trim()).filter(Boolean))];
  const allowed = object === 'page' ? PAGE_FIELDS : INSTAGRAM_FIELDS;
  for (const [i, f] of fields.entries()) {
    if (!allowed.has(f)) return paramError(`Param subscribed_fields[${i}] must be one of {${[...allowed].join(', ')}} - got "${f}"`);
  }
  if (object === 'page') {
    if (!record.grant.scopes.includes('pages_manage_metadata')) {
      return oauthError('(#200) Requires pages_manage_metadata permission to manage the object', 200);
    }
    const page = record.grant.pages.find((p) => p.id === accountId);
    if (!page?.tasks.some((t) => t === 'MODERATE' || t === 'MANAGE')) {
      return oauthError('(#200) The user must be an admin, editor, or moderator of the page in order to subscribe the app', 200);
    }
  }
  store.subscribe(accountId, record.appId, object, fields);
  return { status: 200, body: { success: true }, committed: true };
}

// ---------------------------------------------------------------------------------------------
// debug_token (contract §5.6)

function debugToken(call: GraphCall): Reply {
  const store = call.oauth;
  const [appId, appSecret, ...rest] = (call.token ?? '').split('|');
  const app = store.findApp(appId);
  if (appSecret === undefined || rest.length > 0) return invalidToken();
  if (!app || !sameSecret(appSecret, app.appSecret)) return oauthError('Invalid OAuth access token signature.', 190);
  const input = call.query['input_token'];
  if (!input) return paramError('The parameter input_token is required');
  const record = store.lookupToken(input);
  if (!record) {
    return { status: 200, body: { data: { error: { code: 190, message: 'Invalid OAuth access token.' }, is_valid: false, scopes: [] } } };
  }
  if (record.appId !== app.appId) return paramError('The App_id in the input_token did not match the Viewing App');

  const grant = record.grant;
  const pageIds = record.kind === 'page' ? [record.pageId!] : grant.pages.map((p) => p.id);
  const linkedIg = grant.pages.filter((p) => pageIds.includes(p.id) && p.instagram).map((p) => p.instagram!.id);
  const targets = (scope: string): string[] | undefined => {
    if (scope.startsWith('pages_')) return pageIds;
    if (scope.startsWith('instagram_business_')) return grant.instagram ? [grant.instagram.userId] : [];
    if (scope.startsWith('instagram_')) return linkedIg;
    return undefined;
  };
  const invalidated = record.invalidatedAt !== undefined;
  const expired = store.isExpired(record);
  return {
    status: 200,
    body: {
      data: {
        app_id: record.appId,
        type: record.kind === 'page' ? 'PAGE' : 'USER',
        application: store.appName(record.appId),
        data_access_expires_at: seconds(record.issuedAt) + 90 * 86_400,
        expires_at: record.expiresAt === 0 ? 0 : seconds(record.expiresAt),
        is_valid: !expired && !invalidated,
        issued_at: seconds(record.issuedAt),
        ...(record.kind === 'page' && { profile_id: record.pageId }),
        scopes: [...grant.scopes],
        granular_scopes: grant.scopes.map((scope) => {
          const ids = targets(scope);
          return ids ? { scope, target_ids: ids } : { scope };
        }),
        user_id: record.kind === 'instagram' ? grant.instagram!.appScopedId : grant.user.id,
        ...(invalidated && { error: { code: 190, subcode: 460, message: SESSION_INVALIDATED } }),
        ...(expired && !invalidated && {
          error: {
            code: 190,
            subcode: 463,
            message: `Error validating access token: Session has expired on ${metaDate(record.expiresAt)}.`,
          },
        }),
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Routes (graph-sandbox.ts appends these to its table; order matters only for the catch-all node)

export const oauthRoutes: GraphRoute[] = [
  {
    pattern: /^\/oauth\/access_token$/,
    auth: false,
    methods: {
      GET: facebookAccessToken,
      // Unversioned POST is api.instagram.com's code exchange; a versioned one is Graph's.
      POST: (call) => (call.version ? facebookAccessToken(call) : instagramCodeExchange(call)),
    },
  },
  { pattern: /^\/access_token$/, auth: true, methods: { GET: instagramLongLived } },
  { pattern: /^\/refresh_access_token$/, auth: true, methods: { GET: instagramRefresh } },
  { pattern: /^\/me$/, auth: true, methods: { GET: me } },
  { pattern: /^\/(?<node>me|\d+)\/accounts$/, auth: true, methods: { GET: accounts } },
  {
    pattern: /^\/(?<node>me|\d+)\/subscribed_apps$/,
    auth: true,
    methods: { GET: subscribedApps, POST: subscribedApps, DELETE: subscribedApps },
  },
  { pattern: /^\/debug_token$/, auth: true, methods: { GET: debugToken } },
  { pattern: /^\/(?<node>\d+)$/, auth: true, methods: { GET: pageNode } },
];
