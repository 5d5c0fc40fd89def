import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifySignature } from '../../src/meta/signature';
import { parseWebhookPayload } from '../../src/meta/webhook-events';
import {
  DEFAULT_OAUTH_APPS,
  DEFAULT_OAUTH_PERSONA,
  oauthAppsFromConfig,
  startGraphSandbox,
  type GraphSandbox,
  type OAuthPersona,
} from '../../src/sandbox/graph-sandbox';
import type { EchoEvent } from '../../src/shared/types';

const FB_APP = DEFAULT_OAUTH_APPS[0]!;
const IG_APP = DEFAULT_OAUTH_APPS[1]!;
const REDIRECT = 'http://127.0.0.1:3000/portal/oauth/callback';
const PAGE_A = '104829376511820';
const PAGE_A_IG = '17841452836401977';
const PAGE_B = '231907745812664';
const IG_USER_ID = '17841469920315587';
const IG_APP_SCOPED = '26490318275561048';
const FB_USER = '10161938475620394';
const PSID = '7291845503617724';
const IGSID = '1128374650392817';
const FIELDS = 'id,name,access_token,tasks,instagram_business_account{id,username}';
const FBTRACE_ID = /^[A-Za-z0-9_-]{10,}$/;
const HOUR = 3_600_000;

let sandbox: GraphSandbox;

beforeAll(async () => {
  sandbox = await startGraphSandbox({ port: 0 });
});

afterAll(async () => {
  await sandbox.close();
});

beforeEach(() => {
  sandbox.reset();
});

interface GraphError {
  message: string;
  type: string;
  code: number;
  error_subcode?: number;
  fbtrace_id: string;
}

async function graphError(res: Response, status = 400): Promise<GraphError> {
  expect(res.status).toBe(status);
  const json = (await res.json()) as { error: GraphError };
  expect(json.error.fbtrace_id).toMatch(FBTRACE_ID);
  return json.error;
}

/** api.instagram.com's flat error shape (contract §4.1). */
async function igFlatError(res: Response): Promise<string> {
  expect(res.status).toBe(400);
  const json = (await res.json()) as { error_type: string; code: number; error_message: string };
  expect(json).toMatchObject({ error_type: 'OAuthException', code: 400 });
  return json.error_message;
}

function proof(secret: string, token: string): string {
  return createHmac('sha256', secret).update(token).digest('hex');
}

function get(path: string, params: Record<string, string> = {}): Promise<Response> {
  const qs = new URLSearchParams(params).toString();
  return fetch(`${sandbox.url}${path}${qs ? `?${qs}` : ''}`);
}

async function json<T = Record<string, unknown>>(res: Response): Promise<T> {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** Facebook Login for Business (`config_id`) unless `extra` overrides it; an empty value drops a parameter. */
function fbDialogUrl(extra: Record<string, string> = {}): string {
  const params = { client_id: FB_APP.appId, redirect_uri: REDIRECT, state: 'st-fb-1', response_type: 'code', config_id: '918273645', ...extra };
  const kept = Object.entries(params).filter(([, v]) => v !== '');
  return `${sandbox.url}/v23.0/dialog/oauth?${new URLSearchParams(kept)}`;
}

function igDialogUrl(extra: Record<string, string> = {}): string {
  const params = {
    client_id: IG_APP.appId,
    redirect_uri: REDIRECT,
    response_type: 'code',
    scope: 'instagram_business_basic,instagram_business_manage_messages',
    state: 'st-ig-1',
    ...extra,
  };
  return `${sandbox.url}/oauth/authorize?${new URLSearchParams(params)}`;
}

interface Dialog {
  status: number;
  html: string;
  /** The consent id of the forms, when the page has them. */
  consent?: string;
  action?: string;
}

async function openDialog(url: string): Promise<Dialog> {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
  const html = await res.text();
  const consent = /name="consent" value="([^"]+)"/.exec(html)?.[1];
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  return { status: res.status, html, ...(consent && { consent }), ...(action && { action }) };
}

/** Submits a consent form as a browser would (no redirect following: the callback is the portal's). */
function submit(action: string, fields: Array<[string, string]>): Promise<Response> {
  return fetch(sandbox.url + action, { method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' });
}

/** Dialog → Allow (or Cancel) → the redirect location, through the HTML forms. */
async function consent(url: string, decision: 'allow' | 'cancel' = 'allow', pages?: string[]): Promise<URL> {
  const dialog = await openDialog(url);
  expect(dialog.status).toBe(200);
  const fields: Array<[string, string]> = [['consent', dialog.consent!], ['decision', decision]];
  if (pages) fields.push(['assets_shown', '1'], ...pages.map((p): [string, string] => ['page', p]));
  const res = await submit(dialog.action!, fields);
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location')!);
}

async function fbCode(extra: Record<string, string> = {}, pages?: string[]): Promise<string> {
  const location = await consent(fbDialogUrl(extra), 'allow', pages);
  return location.searchParams.get('code')!;
}

function fbExchange(code: string, overrides: Record<string, string> = {}): Promise<Response> {
  return get('/v23.0/oauth/access_token', { client_id: FB_APP.appId, redirect_uri: REDIRECT, client_secret: FB_APP.appSecret, code, ...overrides });
}

function fbLongLived(shortToken: string, overrides: Record<string, string> = {}): Promise<Response> {
  return get('/v23.0/oauth/access_token', {
    grant_type: 'fb_exchange_token',
    client_id: FB_APP.appId,
    client_secret: FB_APP.appSecret,
    fb_exchange_token: shortToken,
    ...overrides,
  });
}

interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
}

interface PageEntry {
  id: string;
  name: string;
  access_token: string;
  tasks: string[];
  instagram_business_account?: { id: string; username: string };
}

/** The whole Facebook flow: a long-lived user token and the Page tokens behind it. */
async function facebookOnboarding(pages?: string[]): Promise<{ userToken: string; pages: PageEntry[] }> {
  const short = await json<TokenAnswer>(await fbExchange(await fbCode({}, pages)));
  const long = await json<TokenAnswer>(await fbLongLived(short.access_token));
  const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { fields: FIELDS, access_token: long.access_token }));
  return { userToken: long.access_token, pages: accounts.data };
}

async function pageToken(pageId = PAGE_A): Promise<string> {
  const { pages } = await facebookOnboarding();
  return pages.find((p) => p.id === pageId)!.access_token;
}

function igExchange(code: string, overrides: Record<string, string> = {}): Promise<Response> {
  return fetch(`${sandbox.url}/oauth/access_token`, {
    method: 'POST',
    body: new URLSearchParams({
      client_id: IG_APP.appId,
      client_secret: IG_APP.appSecret,
      grant_type: 'authorization_code',
      redirect_uri: REDIRECT,
      code,
      ...overrides,
    }),
  });
}

async function igCode(extra: Record<string, string> = {}): Promise<string> {
  const location = await consent(igDialogUrl(extra));
  expect(location.hash).toBe('#_');
  return location.searchParams.get('code')!;
}

/** The whole Instagram Login flow: the long-lived token. */
async function instagramToken(): Promise<string> {
  const exchanged = await json<{ data: Array<{ access_token: string }> }>(await igExchange(await igCode()));
  const long = await json<TokenAnswer>(
    await get('/access_token', { grant_type: 'ig_exchange_token', client_secret: IG_APP.appSecret, access_token: exchanged.data[0]!.access_token }),
  );
  return long.access_token;
}

// -----------------------------------------------------------------------------------------------

describe('the Facebook Login dialog', () => {
  it('is an accessible HTML page listing the assets granted, with Allow and Cancel in forms that post back', async () => {
    const dialog = await openDialog(fbDialogUrl());
    expect(dialog.status).toBe(200);
    const { html } = dialog;
    expect(html).toMatch(/^<!doctype html>\n<html lang="en">/);
    expect(html).toMatch(/<title>[^<]+<\/title>/);
    expect(html).toMatch(/<h1>Switchboard \(sandbox\) wants to use your Facebook Pages<\/h1>/);
    expect(html).toContain('<h2 id="permissions">');
    expect(html).not.toMatch(/<script/i);
    // Every Page is a labelled checkbox, checked; the linked Instagram account is named.
    for (const page of DEFAULT_OAUTH_PERSONA.pages) {
      expect(html).toContain(`<input type="checkbox" name="page" value="${page.id}" id="page-${page.id}" checked>`);
      expect(html).toContain(`<label for="page-${page.id}">`);
    }
    expect(html).toContain('@bergsport.berger');
    expect(html).toContain('Clínica Sonrisa');
    expect(html).toContain('<legend>');
    // Each button sits inside a form that posts to the dialog's own path.
    const forms = [...html.matchAll(/<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/g)];
    expect(forms.map((f) => f[1])).toEqual(['/v23.0/dialog/oauth', '/v23.0/dialog/oauth']);
    expect(forms[0]![2]).toMatch(/<button type="submit" name="decision" value="allow"[^>]*>Allow<\/button>/);
    expect(forms[1]![2]).toMatch(/<button type="submit" name="decision" value="cancel"[^>]*>Cancel<\/button>/);
  });

  it('escapes what the persona shows', async () => {
    sandbox.setOAuthPersona({ pages: [{ id: '555', name: '<img src=x onerror=alert(1)> & "Co"' }] });
    const { html } = await openDialog(fbDialogUrl());
    expect(html).not.toContain('<img');
    expect(html).toContain('&#60;img src=x onerror=alert(1)&#62; &#38; &#34;Co&#34;');
  });

  it('Allow redirects to the redirect URI with code and state; Cancel with access_denied', async () => {
    const allowed = await consent(fbDialogUrl());
    expect(`${allowed.origin}${allowed.pathname}`).toBe(REDIRECT);
    expect(allowed.searchParams.get('state')).toBe('st-fb-1');
    expect(allowed.searchParams.get('code')).toMatch(/^AQ[A-Za-z0-9_-]{40,}$/);
    expect(allowed.hash).toBe('');

    const dialog = await openDialog(fbDialogUrl({ state: 'st-fb-2' }));
    const res = await submit(dialog.action!, [['consent', dialog.consent!], ['decision', 'cancel']]);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(
      `${REDIRECT}?error=access_denied&error_reason=user_denied&error_description=Permissions+error&state=st-fb-2`,
    );
  });

  it('answers each consent once', async () => {
    const dialog = await openDialog(fbDialogUrl());
    expect((await submit(dialog.action!, [['consent', dialog.consent!], ['decision', 'allow']])).status).toBe(302);
    const again = await submit(dialog.action!, [['consent', dialog.consent!], ['decision', 'allow']]);
    expect(again.status).toBe(400);
    expect(await again.text()).toMatch(/already answered/);
    const unknown = await submit(dialog.action!, [['consent', 'nope'], ['decision', 'allow']]);
    expect(unknown.status).toBe(400);
  });

  it('shows an error page, never a redirect, for an unknown app, a bad redirect URI or an unknown scope', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ client_id: '999' }, /Invalid App ID/],
      [{ client_id: IG_APP.appId }, /Invalid App ID/],
      [{ redirect_uri: '/portal/oauth/callback' }, /absolute URI/],
      [{ redirect_uri: `${REDIRECT}#frag` }, /fragment/],
      [{ response_type: 'token' }, /response_type/],
      [{ config_id: '', scope: 'pages_messaging,read_minds' }, /Invalid Scopes: read_minds/],
    ];
    for (const [extra, why] of cases) {
      const res = await fetch(fbDialogUrl(extra), { redirect: 'manual' });
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(await res.text()).toMatch(why);
    }
  });

  it('refuses a redirect URI the app did not register, when it lists some', async () => {
    sandbox.setOAuthApps([{ ...FB_APP, redirectUris: [REDIRECT] }, IG_APP]);
    try {
      expect((await fetch(fbDialogUrl({ redirect_uri: 'https://evil.example/cb' }))).status).toBe(400);
      expect((await fetch(fbDialogUrl())).status).toBe(200);
    } finally {
      sandbox.setOAuthApps([...DEFAULT_OAUTH_APPS]);
    }
  });

  it('grants only the Pages left checked in the picker', async () => {
    const { pages } = await facebookOnboarding([PAGE_B]);
    expect(pages.map((p) => p.id)).toEqual([PAGE_B]);
  });

  it('grants exactly the requested scopes with `scope` (plus public_profile); without pages_show_list no Page is listed', async () => {
    const code = await fbCode({ config_id: '', scope: 'pages_messaging,pages_manage_metadata' });
    const short = await json<TokenAnswer>(await fbExchange(code));
    const accounts = await json<{ data: unknown[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token }));
    expect(accounts.data).toEqual([]);
    const debug = await json<{ data: { scopes: string[] } }>(
      await get('/v23.0/debug_token', { input_token: short.access_token, access_token: `${FB_APP.appId}|${FB_APP.appSecret}` }),
    );
    expect(debug.data.scopes).toEqual(['public_profile', 'pages_messaging', 'pages_manage_metadata']);
  });
});

describe('Facebook Login end to end: dialog → code → short-lived → long-lived → Pages', () => {
  it('walks the whole flow with fetch', async () => {
    const code = await fbCode();
    const shortRes = await fbExchange(code);
    const short = await json<TokenAnswer>(shortRes);
    expect(short).toEqual({ access_token: expect.stringMatching(/^EAAB[A-Za-z0-9]{100,}$/), token_type: 'bearer', expires_in: 5400 });

    const long = await json<TokenAnswer>(await fbLongLived(short.access_token));
    expect(long).toEqual({ access_token: expect.stringMatching(/^EAAB[A-Za-z0-9]{100,}$/), token_type: 'bearer', expires_in: 5183944 });
    expect(long.access_token).not.toBe(short.access_token);

    const accounts = await json<{ data: PageEntry[]; paging: unknown }>(await get('/v23.0/me/accounts', { fields: FIELDS, access_token: long.access_token }));
    expect(accounts.paging).toEqual(expect.any(Object));
    expect(accounts.data).toEqual([
      {
        id: PAGE_A,
        name: 'Bergsport Berger',
        access_token: expect.stringMatching(/^EAAB/),
        tasks: ['ANALYZE', 'ADVERTISE', 'MESSAGING', 'MODERATE', 'CREATE_CONTENT', 'MANAGE'],
        instagram_business_account: { id: PAGE_A_IG, username: 'bergsport.berger' },
      },
      { id: PAGE_B, name: 'Clínica Sonrisa', access_token: expect.stringMatching(/^EAAB/), tasks: expect.any(Array) },
    ]);
    const [a, b] = accounts.data;
    expect(a!.access_token).not.toBe(b!.access_token);
    expect(a!.access_token).not.toBe(long.access_token);

    // The same user token yields the same Page tokens on every call.
    const again = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { fields: 'id,access_token', access_token: long.access_token }));
    expect(again.data).toEqual([{ id: PAGE_A, access_token: a!.access_token }, { id: PAGE_B, access_token: b!.access_token }]);

    // A Page token speaks for its Page; the user token for the user.
    expect(await json(await get('/v23.0/me', { access_token: a!.access_token }))).toEqual({ id: PAGE_A, name: 'Bergsport Berger' });
    expect(await json(await get('/v23.0/me', { access_token: long.access_token }))).toEqual({ id: FB_USER, name: 'Lena Berger' });
    expect(
      await json(await get(`/v23.0/${PAGE_A}`, { fields: 'instagram_business_account{id,username}', access_token: long.access_token })),
    ).toEqual({ instagram_business_account: { id: PAGE_A_IG, username: 'bergsport.berger' } });

    // Page tokens from a long-lived user token never expire; the state shows fingerprints only.
    const state = sandbox.oauthState();
    expect(state.codes).toEqual({ issued: 1, redeemed: 1 });
    expect(state.tokens.map((t) => [t.kind, t.lifetime, t.accountId])).toEqual([
      ['user', 'short', FB_USER],
      ['user', 'long', FB_USER],
      ['page', 'never', PAGE_A],
      ['page', 'never', PAGE_B],
    ]);
    const stateText = JSON.stringify(state);
    for (const t of [short.access_token, long.access_token, a!.access_token, b!.access_token]) expect(stateText).not.toContain(t);
  });

  it('accepts the same exchange as a versioned POST form', async () => {
    const code = await fbCode();
    const res = await fetch(`${sandbox.url}/v23.0/oauth/access_token`, {
      method: 'POST',
      body: new URLSearchParams({ client_id: FB_APP.appId, redirect_uri: REDIRECT, client_secret: FB_APP.appSecret, code }),
    });
    expect((await json<TokenAnswer>(res)).expires_in).toBe(5400);
  });

  it('refuses a reused code (100/36009) and an expired one (100/36007)', async () => {
    const code = await fbCode();
    expect((await fbExchange(code)).status).toBe(200);
    expect(await graphError(await fbExchange(code))).toMatchObject({
      message: 'This authorization code has been used.',
      type: 'OAuthException',
      code: 100,
      error_subcode: 36009,
    });

    const late = await fbCode();
    sandbox.advanceOAuthClock(HOUR + 1000);
    expect(await graphError(await fbExchange(late))).toMatchObject({ code: 100, error_subcode: 36007, message: 'This authorization code has expired.' });
  });

  it('refuses a wrong secret (1), an unknown app (101) and a wrong or relative redirect URI (100), without using up the code', async () => {
    const code = await fbCode();
    expect(await graphError(await fbExchange(code, { client_secret: 'not-the-secret' }))).toMatchObject({
      code: 1,
      message: 'Error validating client secret.',
    });
    expect(await graphError(await fbExchange(code, { client_id: '999' }))).toMatchObject({ code: 101 });
    expect(await graphError(await fbExchange(code, { redirect_uri: 'http://127.0.0.1:3000/other' }))).toMatchObject({
      code: 100,
      error_subcode: 36008,
      message: expect.stringMatching(/^Error validating verification code/),
    });
    expect(await graphError(await fbExchange(code, { redirect_uri: '/portal/oauth/callback' }))).toMatchObject({
      code: 100,
      message: "redirect_uri isn't an absolute URI. Check RFC 3986.",
    });
    expect(await graphError(await fbExchange('AQnot-a-code'))).toMatchObject({ code: 100 });
    // None of these redeemed it.
    expect((await fbExchange(code)).status).toBe(200);
  });

  it('checks PKCE when the dialog had a code_challenge (S256)', async () => {
    const verifier = 'v'.repeat(20) + '-._~' + 'A1'.repeat(12);
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const code = await fbCode({ code_challenge: challenge, code_challenge_method: 'S256' });
    expect(await graphError(await fbExchange(code))).toMatchObject({ code: 100, message: 'Missing code_verifier parameter.' });
    expect(await graphError(await fbExchange(code, { code_verifier: verifier + 'x' }))).toMatchObject({ code: 100 });
    expect((await fbExchange(code, { code_verifier: verifier })).status).toBe(200);
  });

  it('lets tokens expire: a short-lived token dies after 5400 s, and cannot be exchanged then', async () => {
    const short = await json<TokenAnswer>(await fbExchange(await fbCode()));
    const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token }));
    sandbox.advanceOAuthClock(5400 * 1000 + 1);
    expect(await graphError(await get('/v23.0/me/accounts', { access_token: short.access_token }))).toMatchObject({
      code: 190,
      error_subcode: 463,
      message: expect.stringMatching(/^Error validating access token: Session has expired on /),
    });
    // A Page token from a short-lived user token dies with it.
    expect(await graphError(await get('/v23.0/me', { access_token: accounts.data[0]!.access_token }))).toMatchObject({ code: 190, error_subcode: 463 });
    expect(await graphError(await fbLongLived(short.access_token))).toMatchObject({ code: 190, error_subcode: 463 });
  });

  it('answers 190 for tokens it never issued', async () => {
    for (const path of ['/v23.0/me', '/v23.0/me/accounts', `/v23.0/${PAGE_A}/subscribed_apps`]) {
      expect(await graphError(await get(path, { access_token: 'EAABnever-issued' }))).toMatchObject({ code: 190, type: 'OAuthException' });
    }
    expect(await graphError(await fbLongLived('EAABnever-issued'))).toMatchObject({ code: 190 });
  });
});

describe('Instagram Login end to end: dialog → code → short-lived → long-lived → account', () => {
  it('walks the whole flow with fetch', async () => {
    const dialog = await openDialog(igDialogUrl());
    expect(dialog.status).toBe(200);
    expect(dialog.html).toContain('<h1>Switchboard for Instagram (sandbox) wants to access your Instagram account</h1>');
    expect(dialog.html).toContain('@atelier.lumen');
    expect(dialog.html).toMatch(/<form method="post" action="\/oauth\/authorize">[\s\S]*?>Allow<\/button><\/form>/);
    expect(dialog.html).toMatch(/<form method="post" action="\/oauth\/authorize">[\s\S]*?>Cancel<\/button><\/form>/);

    const res = await submit(dialog.action!, [['consent', dialog.consent!], ['decision', 'allow']]);
    expect(res.status).toBe(302);
    const location = res.headers.get('location')!;
    // Instagram appends #_, which is not part of the code.
    expect(location).toMatch(new RegExp(`^${REDIRECT.replace(/[.?]/g, '\\$&')}\\?code=AQ[A-Za-z0-9_-]+&state=st-ig-1#_$`));
    const code = new URL(location).searchParams.get('code')!;

    const exchanged = await json<{ data: Array<{ access_token: string; user_id: string; permissions: string }> }>(await igExchange(code));
    expect(exchanged).toEqual({
      data: [
        {
          access_token: expect.stringMatching(/^IGAA[A-Za-z0-9]{100,}$/),
          // The app-scoped id, not the account id webhooks carry.
          user_id: IG_APP_SCOPED,
          permissions: 'instagram_business_basic,instagram_business_manage_messages',
        },
      ],
    });
    const short = exchanged.data[0]!.access_token;

    const long = await json<TokenAnswer>(
      await get('/access_token', { grant_type: 'ig_exchange_token', client_secret: IG_APP.appSecret, access_token: short }),
    );
    expect(long).toEqual({ access_token: expect.stringMatching(/^IGAA/), token_type: 'bearer', expires_in: 5183944 });

    expect(await json(await get('/v23.0/me', { fields: 'user_id,username,account_type', access_token: long.access_token }))).toEqual({
      user_id: IG_USER_ID,
      username: 'atelier.lumen',
      account_type: 'BUSINESS',
    });
    expect(await json(await get('/v23.0/me', { fields: 'id,user_id,username,account_type', access_token: long.access_token }))).toEqual({
      id: IG_APP_SCOPED,
      user_id: IG_USER_ID,
      username: 'atelier.lumen',
      account_type: 'BUSINESS',
    });
    expect(await graphError(await get('/v23.0/me', { fields: 'user_id,favourite_colour', access_token: long.access_token }))).toMatchObject({
      code: 100,
      message: expect.stringMatching(/nonexisting field \(favourite_colour\)/),
    });

    expect(sandbox.oauthState().tokens.map((t) => [t.kind, t.lifetime, t.accountId])).toEqual([
      ['instagram', 'short', IG_USER_ID],
      ['instagram', 'long', IG_USER_ID],
    ]);
  });

  it('takes the code exchange as multipart/form-data too (curl -F, FormData)', async () => {
    const body = new FormData();
    for (const [k, v] of Object.entries({
      client_id: IG_APP.appId,
      client_secret: IG_APP.appSecret,
      grant_type: 'authorization_code',
      redirect_uri: REDIRECT,
      code: await igCode(),
    })) {
      body.append(k, v);
    }
    const res = await fetch(`${sandbox.url}/oauth/access_token`, { method: 'POST', body });
    expect((await json<{ data: unknown[] }>(res)).data).toHaveLength(1);
  });

  it('answers its code-exchange errors in the flat api.instagram.com shape', async () => {
    const code = await igCode();
    expect(await igFlatError(await igExchange(code, { client_secret: 'wrong' }))).toBe('Error validating client secret.');
    expect(await igFlatError(await igExchange(code, { client_id: FB_APP.appId }))).toBe('Invalid platform app');
    expect(await igFlatError(await igExchange(code, { redirect_uri: `${REDIRECT}/x` }))).toMatch(/redirect_uri is identical/);
    // The #_ fragment copied along with the code is not part of it.
    expect(await igFlatError(await igExchange(`${code}#_`))).toBe('Matching code was not found or was already used');
    // api.instagram.com refuses GET.
    const viaGet = await get('/oauth/access_token', { client_id: IG_APP.appId, client_secret: IG_APP.appSecret, code, redirect_uri: REDIRECT });
    expect(await igFlatError(viaGet)).toBe('Unsupported request - method type: get');

    expect((await igExchange(code)).status).toBe(200);
    expect(await igFlatError(await igExchange(code))).toBe('Matching code was not found or was already used');
    const late = await igCode();
    sandbox.advanceOAuthClock(HOUR + 1);
    expect(await igFlatError(await igExchange(late))).toBe('This authorization code has expired');
  });

  it('refuses ig_exchange_token with a wrong secret, and an expired short-lived token', async () => {
    const exchanged = await json<{ data: Array<{ access_token: string }> }>(await igExchange(await igCode()));
    const short = exchanged.data[0]!.access_token;
    expect(await graphError(await get('/access_token', { grant_type: 'ig_exchange_token', client_secret: 'wrong', access_token: short }))).toMatchObject({
      code: 1,
    });
    sandbox.advanceOAuthClock(HOUR + 1);
    expect(
      await graphError(await get('/access_token', { grant_type: 'ig_exchange_token', client_secret: IG_APP.appSecret, access_token: short })),
    ).toMatchObject({ code: 190, error_subcode: 463 });
  });

  it('refreshes a long-lived token only once it is 24 h old', async () => {
    const long = await instagramToken();
    const refresh = (token: string) => get('/refresh_access_token', { grant_type: 'ig_refresh_token', access_token: token });
    expect(await graphError(await refresh(long))).toMatchObject({ code: 100, message: expect.stringMatching(/24 hours/) });
    sandbox.advanceOAuthClock(24 * HOUR);
    const refreshed = await json<TokenAnswer>(await refresh(long));
    expect(refreshed).toEqual({ access_token: expect.stringMatching(/^IGAA/), token_type: 'bearer', expires_in: 5183944 });
    expect(refreshed.access_token).not.toBe(long);
    // 60 days after the refresh, not after the first token.
    sandbox.advanceOAuthClock(59 * 24 * HOUR);
    expect(await graphError(await get('/v23.0/me', { access_token: long }))).toMatchObject({ code: 190, error_subcode: 463 });
    expect((await get('/v23.0/me', { access_token: refreshed.access_token })).status).toBe(200);
  });

  it('cancels like Facebook (no #_), and a persona without a professional account can only cancel', async () => {
    const cancelled = await consent(igDialogUrl(), 'cancel');
    expect(cancelled.searchParams.get('error')).toBe('access_denied');
    expect(cancelled.searchParams.get('state')).toBe('st-ig-1');
    expect(cancelled.hash).toBe('');

    sandbox.setOAuthPersona({ pages: [] });
    const dialog = await openDialog(igDialogUrl());
    expect(dialog.status).toBe(200);
    expect(dialog.html).toMatch(/not a professional/);
    expect(dialog.html).not.toMatch(/>Allow</);
    expect(dialog.html).toMatch(/>Cancel</);
    expect((await submit(dialog.action!, [['consent', dialog.consent!], ['decision', 'allow']])).status).toBe(400);
    expect(() => sandbox.authorize(igDialogUrl())).toThrow(/professional/);
  });

  it('refuses the pre-2025 scope names in the dialog', async () => {
    const res = await fetch(igDialogUrl({ scope: 'business_basic,business_manage_messages' }));
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/Invalid Scopes: business_basic, business_manage_messages/);
  });
});

describe('appsecret_proof', () => {
  it('passes a right proof and refuses a wrong one (100), on user and Page tokens alike', async () => {
    const { userToken, pages } = await facebookOnboarding();
    const page = pages[0]!.access_token;
    expect((await get('/v23.0/me/accounts', { access_token: userToken, appsecret_proof: proof(FB_APP.appSecret, userToken) })).status).toBe(200);
    expect(await graphError(await get('/v23.0/me/accounts', { access_token: userToken, appsecret_proof: proof('other', userToken) }))).toMatchObject({
      code: 100,
      message: expect.stringMatching(/^Invalid appsecret_proof/),
    });
    expect(await graphError(await get('/v23.0/me', { access_token: page, appsecret_proof: proof(FB_APP.appSecret, userToken) }))).toMatchObject({ code: 100 });

    const send = (proofValue: string) =>
      fetch(`${sandbox.url}/v23.0/me/messages?appsecret_proof=${proofValue}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${page}` },
        body: JSON.stringify({ recipient: { id: PSID }, messaging_type: 'RESPONSE', message: { text: 'Hallo' } }),
      });
    expect((await send(proof(FB_APP.appSecret, page))).status).toBe(200);
    expect(await graphError(await send('00'.repeat(32)))).toMatchObject({ code: 100, message: expect.stringMatching(/appsecret_proof/) });
  });

  it('checks Instagram tokens with the Instagram app secret', async () => {
    const token = await instagramToken();
    expect((await get('/v23.0/me', { access_token: token, appsecret_proof: proof(IG_APP.appSecret, token) })).status).toBe(200);
    expect((await get('/v23.0/me', { access_token: token, appsecret_proof: proof(FB_APP.appSecret, token) })).status).toBe(400);
  });

  it('is required when the app says so, and not checked for tokens the sandbox did not issue', async () => {
    sandbox.setOAuthApps([{ ...FB_APP, requireAppsecretProof: true }, IG_APP]);
    try {
      const code = await fbCode();
      const short = await json<TokenAnswer>(await fbExchange(code));
      expect(await graphError(await get('/v23.0/me', { access_token: short.access_token }))).toMatchObject({
        code: 100,
        message: expect.stringMatching(/require an appsecret_proof/),
      });
      expect((await get('/v23.0/me', { access_token: short.access_token, appsecret_proof: proof(FB_APP.appSecret, short.access_token) })).status).toBe(200);
    } finally {
      sandbox.setOAuthApps([...DEFAULT_OAUTH_APPS]);
    }
    // A token typed into the CLI keeps working with the Send API, whatever proof comes along.
    const res = await fetch(`${sandbox.url}/v23.0/${PAGE_A}/messages?access_token=EAAB-demo-token&appsecret_proof=abc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ recipient: { id: PSID }, message: { text: 'Hallo' } }),
    });
    expect(res.status).toBe(200);
  });
});

describe('subscribed_apps', () => {
  const MESSENGER_FIELDS = 'messages,message_echoes,messaging_postbacks,message_reactions,message_reads,message_deliveries,messaging_referrals';
  const IG_FIELDS = 'messages,messaging_postbacks,messaging_seen,message_reactions';

  function call(method: 'GET' | 'POST' | 'DELETE', path: string, token: string, fields?: string): Promise<Response> {
    const qs = new URLSearchParams({ access_token: token, ...(fields && { subscribed_fields: fields }) });
    return fetch(`${sandbox.url}${path}?${qs}`, { method });
  }

  it('subscribes, lists and unsubscribes a Page with its Page token', async () => {
    const token = await pageToken();
    const path = `/v23.0/${PAGE_A}/subscribed_apps`;
    expect(await json(await call('GET', path, token))).toEqual({ data: [] });
    expect(await json(await call('POST', path, token, MESSENGER_FIELDS))).toEqual({ success: true });
    expect(await json(await call('GET', path, token))).toEqual({
      data: [{ id: FB_APP.appId, name: 'Switchboard (sandbox)', subscribed_fields: MESSENGER_FIELDS.split(',') }],
    });
    expect(sandbox.oauthState().subscriptions).toEqual({
      [PAGE_A]: [{ appId: FB_APP.appId, object: 'page', subscribedFields: MESSENGER_FIELDS.split(','), at: expect.any(Number) }],
    });
    expect(await json(await call('DELETE', path, token))).toEqual({ success: true });
    expect(await json(await call('GET', path, token))).toEqual({ data: [] });
    expect(sandbox.oauthState().subscriptions).toEqual({});
  });

  it('subscribes an Instagram-Login account through /me and through its id', async () => {
    const token = await instagramToken();
    expect(await json(await call('POST', '/v23.0/me/subscribed_apps', token, IG_FIELDS))).toEqual({ success: true });
    expect(await json(await call('GET', `/v23.0/${IG_USER_ID}/subscribed_apps`, token))).toEqual({
      data: [{ id: IG_APP.appId, name: 'Switchboard for Instagram (sandbox)', subscribed_fields: IG_FIELDS.split(',') }],
    });
    expect(sandbox.oauthState().subscriptions[IG_USER_ID]).toEqual([expect.objectContaining({ object: 'instagram' })]);
    expect(await json(await call('DELETE', '/v23.0/me/subscribed_apps', token))).toEqual({ success: true });
    expect(await json(await call('GET', '/v23.0/me/subscribed_apps', token))).toEqual({ data: [] });
  });

  it('refuses a user token (210), another Page (100/33), missing or unknown fields (100)', async () => {
    const { userToken, pages } = await facebookOnboarding();
    const tokenA = pages.find((p) => p.id === PAGE_A)!.access_token;
    expect(await graphError(await call('POST', `/v23.0/${PAGE_A}/subscribed_apps`, userToken, 'messages'))).toMatchObject({ code: 210 });
    expect(await graphError(await call('POST', `/v23.0/${PAGE_B}/subscribed_apps`, tokenA, 'messages'))).toMatchObject({ code: 100, error_subcode: 33 });
    expect(await graphError(await call('POST', `/v23.0/${PAGE_A}/subscribed_apps`, tokenA))).toMatchObject({
      code: 100,
      message: expect.stringMatching(/subscribed_fields is required/),
    });
    expect(await graphError(await call('POST', `/v23.0/${PAGE_A}/subscribed_apps`, tokenA, 'messages,messaging_seen'))).toMatchObject({
      code: 100,
      message: expect.stringMatching(/subscribed_fields\[1\].*got "messaging_seen"/),
    });
    expect(sandbox.oauthState().subscriptions).toEqual({});
  });

  it('needs pages_manage_metadata and a MODERATE or MANAGE task on the Page (200)', async () => {
    sandbox.setOAuthPersona({ pages: [{ id: PAGE_A, name: 'Bergsport Berger', tasks: ['ANALYZE', 'MESSAGING'] }] });
    const token = await pageToken();
    expect(await graphError(await call('POST', `/v23.0/${PAGE_A}/subscribed_apps`, token, 'messages'))).toMatchObject({ code: 200 });

    sandbox.reset();
    const code = await fbCode({ config_id: '', scope: 'pages_show_list,pages_messaging' });
    const short = await json<TokenAnswer>(await fbExchange(code));
    const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token }));
    const res = await call('POST', `/v23.0/${PAGE_A}/subscribed_apps`, accounts.data[0]!.access_token, 'messages');
    expect(await graphError(res)).toMatchObject({ code: 200, message: expect.stringMatching(/pages_manage_metadata/) });
  });
});

describe('debug_token', () => {
  const appToken = `${FB_APP.appId}|${FB_APP.appSecret}`;

  it('describes a Page token: PAGE, never expires, granular scopes naming the Page', async () => {
    const token = await pageToken();
    const { data } = await json<{ data: Record<string, unknown> }>(await get('/v23.0/debug_token', { input_token: token, access_token: appToken }));
    expect(data).toEqual({
      app_id: FB_APP.appId,
      type: 'PAGE',
      application: 'Switchboard (sandbox)',
      data_access_expires_at: expect.any(Number),
      expires_at: 0,
      is_valid: true,
      issued_at: expect.any(Number),
      profile_id: PAGE_A,
      scopes: expect.arrayContaining(['pages_messaging', 'pages_manage_metadata', 'instagram_manage_messages']),
      granular_scopes: expect.arrayContaining([
        { scope: 'pages_messaging', target_ids: [PAGE_A] },
        { scope: 'instagram_manage_messages', target_ids: [PAGE_A_IG] },
        { scope: 'public_profile' },
      ]),
      user_id: FB_USER,
    });
  });

  it('describes a short-lived user token with its expiry, and shows which Pages were granted', async () => {
    const short = await json<TokenAnswer>(await fbExchange(await fbCode({}, [PAGE_B])));
    const { data } = await json<{ data: { type: string; expires_at: number; issued_at: number; granular_scopes: unknown[] } }>(
      await get('/v23.0/debug_token', { input_token: short.access_token, access_token: appToken }),
    );
    expect(data.type).toBe('USER');
    expect(data.expires_at - data.issued_at).toBe(5400);
    expect(data.granular_scopes).toContainEqual({ scope: 'pages_messaging', target_ids: [PAGE_B] });
    expect(data.granular_scopes).toContainEqual({ scope: 'instagram_basic', target_ids: [] });
  });

  it('reports an unknown or expired token as invalid, and refuses a bad app token (190)', async () => {
    expect(await json(await get('/v23.0/debug_token', { input_token: 'EAABwho-knows', access_token: appToken }))).toEqual({
      data: { error: { code: 190, message: 'Invalid OAuth access token.' }, is_valid: false, scopes: [] },
    });
    const short = await json<TokenAnswer>(await fbExchange(await fbCode()));
    sandbox.advanceOAuthClock(2 * HOUR);
    const expired = await json<{ data: { is_valid: boolean; error: { code: number; subcode: number } } }>(
      await get('/v23.0/debug_token', { input_token: short.access_token, access_token: appToken }),
    );
    expect(expired.data).toMatchObject({ is_valid: false, error: { code: 190, subcode: 463 } });

    expect(await graphError(await get('/v23.0/debug_token', { input_token: short.access_token, access_token: `${FB_APP.appId}|wrong` }))).toMatchObject({
      code: 190,
    });
    expect(await graphError(await get('/v23.0/debug_token', { input_token: short.access_token, access_token: short.access_token }))).toMatchObject({
      code: 190,
    });
    expect(await graphError(await get('/v23.0/debug_token', { input_token: short.access_token }))).toMatchObject({ code: 2500 });
  });

  it("refuses another app's token and describes Instagram tokens to the Instagram app", async () => {
    const token = await instagramToken();
    expect(await graphError(await get('/v23.0/debug_token', { input_token: token, access_token: appToken }))).toMatchObject({ code: 100 });
    const { data } = await json<{ data: Record<string, unknown> }>(
      await get('/v23.0/debug_token', { input_token: token, access_token: `${IG_APP.appId}|${IG_APP.appSecret}` }),
    );
    expect(data).toMatchObject({
      app_id: IG_APP.appId,
      type: 'USER',
      is_valid: true,
      user_id: IG_APP_SCOPED,
      granular_scopes: expect.arrayContaining([{ scope: 'instagram_business_manage_messages', target_ids: [IG_USER_ID] }]),
    });
  });
});

describe('the persona', () => {
  const persona: OAuthPersona = {
    user: { id: '100200300', name: 'Ana Lima' },
    pages: [{ id: '900800700', name: 'Padaria Lima', instagram: { id: '17841400000000042', username: 'padaria.lima' } }],
    instagram: { userId: '17841400000000099', username: 'ana.ceramica', accountType: 'MEDIA_CREATOR' },
  };

  it('decides what the next consent grants; a dialog already open keeps what it showed', async () => {
    const openBefore = await openDialog(fbDialogUrl());
    sandbox.setOAuthPersona(persona);

    const { pages } = await facebookOnboarding();
    expect(pages).toEqual([
      expect.objectContaining({ id: '900800700', name: 'Padaria Lima', instagram_business_account: { id: '17841400000000042', username: 'padaria.lima' } }),
    ]);
    const token = await instagramToken();
    const me = await json<Record<string, string>>(await get('/v23.0/me', { fields: 'id,user_id,username,account_type', access_token: token }));
    expect(me).toEqual({ id: expect.stringMatching(/^\d{17}$/), user_id: '17841400000000099', username: 'ana.ceramica', account_type: 'MEDIA_CREATOR' });
    expect(me['id']).not.toBe(me['user_id']);

    const res = await submit(openBefore.action!, [['consent', openBefore.consent!], ['decision', 'allow']]);
    const short = await json<TokenAnswer>(await fbExchange(new URL(res.headers.get('location')!).searchParams.get('code')!));
    const old = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token }));
    expect(old.data.map((p) => p.id)).toEqual([PAGE_A, PAGE_B]);
  });

  it('is set and read over HTTP, refuses invalid personas, and reset() restores the default', async () => {
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/oauth/persona`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post(persona)).status).toBe(204);
    expect(await json(await fetch(`${sandbox.url}/_sandbox/oauth/persona`))).toEqual(persona);
    for (const bad of [{ pages: [{ id: 900, name: 'x' }] }, { pages: [], extra: 1 }, { pages: [{ id: '1', name: 'a' }, { id: '1', name: 'b' }] }]) {
      const res = await post(bad);
      expect(res.status).toBe(400);
      expect((await res.json()) as { error: string }).toEqual({ error: expect.stringMatching(/^invalid OAuth persona: /) });
    }
    expect(() => sandbox.setOAuthPersona({ pages: [{ id: 'abc', name: 'x' }] })).toThrow(/numeric/);
    sandbox.reset();
    expect(sandbox.oauthState().persona).toEqual(DEFAULT_OAUTH_PERSONA);
  });
});

describe('Send API and echoes with tokens from OAuth', () => {
  const APP_SECRET = 'sandbox-echo-secret';
  let receiver: { url: string; received: Array<{ raw: Buffer; signature: string }>; close(): Promise<void> };

  beforeEach(async () => {
    const received: Array<{ raw: Buffer; signature: string }> = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ raw: Buffer.concat(chunks), signature: String(req.headers['x-hub-signature-256']) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    receiver = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/meta`,
      received,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
    // No echo.accounts: the sandbox resolves OAuth-issued tokens itself.
    sandbox.setEcho({ webhookUrl: receiver.url, appSecret: APP_SECRET });
  });

  afterEach(async () => {
    sandbox.setEcho(null);
    await receiver.close();
  });

  function sendAs(node: string, token: string, recipient: string): Promise<Response> {
    return fetch(`${sandbox.url}/v23.0/${node}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ recipient: { id: recipient }, messaging_type: 'RESPONSE', message: { text: 'Olá!', metadata: 'sb:out:1' } }),
    });
  }

  async function echoes(): Promise<Array<{ object: string; echo: EchoEvent }>> {
    await sandbox.echoesSettled();
    return receiver.received.map((r) => {
      expect(verifySignature(r.signature, r.raw, [APP_SECRET])).toBe(0);
      const parsed = parseWebhookPayload(JSON.parse(r.raw.toString('utf8')));
      return { object: parsed.object, echo: parsed.events[0] as EchoEvent };
    });
  }

  it('echoes sends made with Page and Instagram tokens to the right account and object', async () => {
    const { userToken, pages } = await facebookOnboarding();
    const pageA = pages.find((p) => p.id === PAGE_A)!.access_token;
    const igToken = await instagramToken();

    expect((await sendAs('me', pageA, PSID)).status).toBe(200);
    expect((await sendAs(PAGE_A_IG, pageA, IGSID)).status).toBe(200); // Messenger API for Instagram: the Page token sends as the linked account
    expect((await sendAs('me', igToken, IGSID)).status).toBe(200);
    expect((await sendAs(IG_USER_ID, igToken, IGSID)).status).toBe(200);

    const got = await echoes();
    expect(got.map((e) => [e.object, e.echo.accountId, e.echo.customerId, e.echo.metadata])).toEqual([
      ['page', PAGE_A, PSID, 'sb:out:1'],
      ['instagram', PAGE_A_IG, IGSID, 'sb:out:1'],
      ['instagram', IG_USER_ID, IGSID, 'sb:out:1'],
      ['instagram', IG_USER_ID, IGSID, 'sb:out:1'],
    ]);
    expect(sandbox.echoes().every((e) => e.status === 200)).toBe(true);

    // A token sends only as its own account; a user token cannot send.
    expect(await graphError(await sendAs(PAGE_B, pageA, PSID))).toMatchObject({ code: 100, error_subcode: 33 });
    expect(await graphError(await sendAs('me', userToken, PSID))).toMatchObject({ code: 210 });
  });

  it('refuses a send with an expired OAuth token (190/463)', async () => {
    const short = await json<TokenAnswer>(await fbExchange(await fbCode()));
    const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token }));
    sandbox.advanceOAuthClock(2 * HOUR);
    expect(await graphError(await sendAs('me', accounts.data[0]!.access_token, PSID))).toMatchObject({ code: 190, error_subcode: 463 });
  });
});

describe('fault injection on the OAuth endpoints', () => {
  it('answers one call per endpoint with the queued fault (by `match`), and the retry succeeds', async () => {
    // Facebook code exchange: a faulted exchange does not use the code up.
    const code = await fbCode();
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/oauth/access_token' });
    expect(await graphError(await fbExchange(code), 500)).toMatchObject({ code: 2 });
    const short = await json<TokenAnswer>(await fbExchange(code));

    sandbox.failNext({ count: 1, preset: 'rate_limit', match: '/oauth/access_token' });
    expect(await graphError(await fbLongLived(short.access_token))).toMatchObject({ code: 613 });
    const long = await json<TokenAnswer>(await fbLongLived(short.access_token));

    sandbox.failNext({ count: 1, preset: 'server_error', match: '/me/accounts' });
    expect((await get('/v23.0/me/accounts', { access_token: long.access_token })).status).toBe(500);
    const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: long.access_token }));
    const page = accounts.data[0]!.access_token;

    const subscribe = () =>
      fetch(`${sandbox.url}/v23.0/${PAGE_A}/subscribed_apps?subscribed_fields=messages&access_token=${page}`, { method: 'POST' });
    sandbox.failNext({ count: 1, preset: 'permission_denied', match: '/subscribed_apps' });
    expect(await graphError(await subscribe())).toMatchObject({ code: 10 });
    expect((await subscribe()).status).toBe(200);
    sandbox.failNext({ count: 1, error: { message: 'custom', type: 'OAuthException', code: 1 }, status: 503, match: '/subscribed_apps' });
    expect((await get(`/v23.0/${PAGE_A}/subscribed_apps`, { access_token: page })).status).toBe(503);
    expect((await get(`/v23.0/${PAGE_A}/subscribed_apps`, { access_token: page })).status).toBe(200);

    const appToken = `${FB_APP.appId}|${FB_APP.appSecret}`;
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/debug_token' });
    expect((await get('/v23.0/debug_token', { input_token: page, access_token: appToken })).status).toBe(500);
    expect((await get('/v23.0/debug_token', { input_token: page, access_token: appToken })).status).toBe(200);

    sandbox.failNext({ count: 1, preset: 'token_expired', match: '/v23.0/me' });
    expect(await graphError(await get('/v23.0/me', { access_token: page }))).toMatchObject({ code: 190 });
    expect((await get('/v23.0/me', { access_token: page })).status).toBe(200);

    // Instagram: code exchange, long-lived exchange, refresh.
    const igCodeValue = await igCode();
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/oauth/access_token' });
    expect((await igExchange(igCodeValue)).status).toBe(500);
    const igShort = (await json<{ data: Array<{ access_token: string }> }>(await igExchange(igCodeValue))).data[0]!.access_token;
    const exchangeIg = () => get('/access_token', { grant_type: 'ig_exchange_token', client_secret: IG_APP.appSecret, access_token: igShort });
    sandbox.failNext({ count: 1, preset: 'server_error', match: '/access_token' });
    expect((await exchangeIg()).status).toBe(500);
    const igLong = (await json<TokenAnswer>(await exchangeIg())).access_token;
    sandbox.advanceOAuthClock(25 * HOUR);
    const refresh = () => get('/refresh_access_token', { grant_type: 'ig_refresh_token', access_token: igLong });
    sandbox.failNext({ count: 1, preset: 'rate_limit', match: '/refresh_access_token' });
    expect((await refresh()).status).toBe(400);
    expect((await refresh()).status).toBe(200);

    expect(sandbox.requests().filter((r) => r.status >= 400).length).toBe(10);
  });

  it('never faults the dialog pages: a fault for any call waits for the next Graph call', async () => {
    sandbox.failNext({ count: 1, preset: 'server_error' });
    const location = await consent(fbDialogUrl());
    const code = location.searchParams.get('code')!;
    expect((await fbExchange(code)).status).toBe(500);
    expect((await fbExchange(code)).status).toBe(200);
  });

  it('drop_after_accept on the code exchange redeems the code and loses the answer: the retry finds it used', async () => {
    const code = await fbCode();
    sandbox.failNext({ count: 1, preset: 'drop_after_accept', match: '/oauth/access_token' });
    await expect(fbExchange(code)).rejects.toThrow();
    expect(sandbox.requests().at(-1)).toMatchObject({ path: '/v23.0/oauth/access_token', status: 0 });
    expect(await graphError(await fbExchange(code))).toMatchObject({ code: 100, error_subcode: 36009 });
    expect(sandbox.oauthState().tokens).toHaveLength(1);
  });

  it('drop_after_accept on a subscription performs it: a retry is harmless', async () => {
    const token = await pageToken();
    sandbox.failNext({ count: 1, preset: 'drop_after_accept', match: '/subscribed_apps' });
    const post = () => fetch(`${sandbox.url}/v23.0/me/subscribed_apps?subscribed_fields=messages&access_token=${token}`, { method: 'POST' });
    await expect(post()).rejects.toThrow();
    expect(sandbox.oauthState().subscriptions[PAGE_A]).toHaveLength(1);
    expect(await json(await post())).toEqual({ success: true });
  });
});

describe('secrets in the records', () => {
  it('keeps codes, secrets and tokens only as fingerprints', async () => {
    const code = await fbCode();
    const short = await json<TokenAnswer>(await fbExchange(code));
    const long = await json<TokenAnswer>(await fbLongLived(short.access_token));
    const accounts = await json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: long.access_token }));
    await get('/v23.0/debug_token', { input_token: accounts.data[0]!.access_token, access_token: `${FB_APP.appId}|${FB_APP.appSecret}` });
    const igCodeValue = await igCode();
    const ig = (await json<{ data: Array<{ access_token: string }> }>(await igExchange(igCodeValue))).data[0]!.access_token;

    const recorded = JSON.stringify(sandbox.requests());
    const viaHttp = await (await fetch(`${sandbox.url}/_sandbox/requests`)).text();
    for (const secret of [code, igCodeValue, FB_APP.appSecret, IG_APP.appSecret, short.access_token, long.access_token, accounts.data[0]!.access_token, ig]) {
      expect(recorded).not.toContain(secret);
      expect(viaHttp).not.toContain(secret);
    }
    const exchange = sandbox.requests().find((r) => r.path === '/v23.0/oauth/access_token')!;
    expect(exchange.query['code']).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(exchange.query['client_secret']).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(exchange.query['client_id']).toBe(FB_APP.appId);
    // The dialog pages are recorded too (their query carries no secret).
    expect(sandbox.requests()[0]).toMatchObject({ method: 'GET', path: '/v23.0/dialog/oauth', status: 200 });
  });
});

describe('invalidateTokens: a password change', () => {
  const appToken = `${FB_APP.appId}|${FB_APP.appSecret}`;
  const igAppToken = `${IG_APP.appId}|${IG_APP.appSecret}`;

  function send(node: string, token: string): Promise<Response> {
    return fetch(`${sandbox.url}/v23.0/${node}/messages?access_token=${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ recipient: { id: PSID }, messaging_type: 'RESPONSE', message: { text: 'hello' } }),
    });
  }

  async function expect460(res: Response): Promise<void> {
    const error = await graphError(res);
    expect(error).toMatchObject({ code: 190, error_subcode: 460, type: 'OAuthException' });
  }

  it("kills a Page's tokens from onboarding: Send API, subscribed_apps and /me answer 190/460, debug_token says invalid", async () => {
    const { userToken, pages } = await facebookOnboarding();
    const tokenA = pages.find((p) => p.id === PAGE_A)!.access_token;
    const tokenB = pages.find((p) => p.id === PAGE_B)!.access_token;
    expect((await send(PAGE_A, tokenA)).status).toBe(200);

    expect(sandbox.invalidateTokens(PAGE_A)).toBe(3); // the Page token and both user tokens of the session

    await expect460(await send(PAGE_A, tokenA));
    await expect460(await send('me', tokenA));
    await expect460(await send(PAGE_A_IG, tokenA));
    await expect460(await get(`/v23.0/${PAGE_A}/subscribed_apps`, { access_token: tokenA }));
    await expect460(await get('/v23.0/me', { access_token: tokenA }));
    await expect460(await get('/v23.0/me/accounts', { access_token: userToken }));
    const { data } = await json<{ data: Record<string, unknown> }>(await get('/v23.0/debug_token', { input_token: tokenA, access_token: appToken }));
    expect(data).toMatchObject({ is_valid: false, profile_id: PAGE_A, error: { code: 190, subcode: 460 } });
    // Another Page's token, not derived from this session's Page, stays usable.
    expect((await send(PAGE_B, tokenB)).status).toBe(200);
    expect(sandbox.oauthState().tokens.filter((t) => t.invalidatedAt !== null).map((t) => [t.kind, t.accountId])).toEqual(
      expect.arrayContaining([['page', PAGE_A], ['user', FB_USER]]),
    );
  });

  it('a token issued after the invalidation (a reconnect) works', async () => {
    const before = await pageToken();
    sandbox.invalidateTokens(PAGE_A);
    const after = await pageToken();
    expect(after).not.toBe(before);
    expect((await send(PAGE_A, after)).status).toBe(200);
    await expect460(await send(PAGE_A, before));
  });

  it('kills an Instagram-Login token: refresh fails with 190, debug_token invalid; the Facebook user id kills all its Facebook tokens', async () => {
    const token = await instagramToken();
    sandbox.advanceOAuthClock(25 * HOUR);
    expect(sandbox.invalidateTokens(IG_USER_ID)).toBe(2); // the short- and the long-lived token
    await expect460(await get('/refresh_access_token', { grant_type: 'ig_refresh_token', access_token: token }));
    await expect460(await send('me', token));
    const { data } = await json<{ data: Record<string, unknown> }>(await get('/v23.0/debug_token', { input_token: token, access_token: igAppToken }));
    expect(data).toMatchObject({ is_valid: false, error: { code: 190, subcode: 460 } });

    const { pages } = await facebookOnboarding();
    expect(sandbox.invalidateTokens(FB_USER)).toBe(4); // both user tokens and both Page tokens
    for (const p of pages) await expect460(await send(p.id, p.access_token));
  });

  it('kills hand-typed Send API tokens of the account, seen before or not, over the control route too', async () => {
    const hand = 'EAAB-typed-into-the-cli';
    expect((await send(PAGE_B, hand)).status).toBe(200);
    expect((await send(PAGE_A, 'EAAB-other-account')).status).toBe(200);
    const res = await fetch(`${sandbox.url}/_sandbox/oauth/invalidate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ accountId: PAGE_B }),
    });
    expect(await res.json()).toEqual({ invalidated: 1 });
    await expect460(await send(PAGE_B, hand));
    // A hand-typed token never seen before (a channel connected by hand, never used): refused too.
    await expect460(await send(PAGE_B, 'EAAB-never-seen-before'));
    // Another account's hand-typed token is unaffected.
    expect((await send(PAGE_A, 'EAAB-other-account')).status).toBe(200);
    const bad = await fetch(`${sandbox.url}/_sandbox/oauth/invalidate`, { method: 'POST', body: JSON.stringify({ accountId: 'abc' }) });
    expect(bad.status).toBe(400);
    expect(() => sandbox.invalidateTokens('not-an-id')).toThrow(/numeric/);
  });

  it('reset() brings invalidated tokens back to a fresh state', async () => {
    const hand = 'EAAB-hand';
    await send(PAGE_B, hand);
    sandbox.invalidateTokens(PAGE_B);
    sandbox.reset();
    expect((await send(PAGE_B, hand)).status).toBe(200);
  });
});

describe('seedTokens: many accounts without dialogs', () => {
  it('mints working Page and Instagram tokens with the chosen times, subscribed when asked', async () => {
    const now = sandbox.oauthState().clockOffsetMs + Date.now();
    const issuedAt = now - 50 * 24 * HOUR;
    const seeded = sandbox.seedTokens([
      { kind: 'page', id: '500000000000001', subscribedFields: ['messages', 'message_echoes'] },
      { kind: 'instagram', id: '17841400000500001', issuedAt, name: 'seeded.account' },
    ]);
    expect(seeded).toEqual([
      { kind: 'page', id: '500000000000001', accessToken: expect.stringMatching(/^EAAB/), expiresAt: null },
      { kind: 'instagram', id: '17841400000500001', accessToken: expect.stringMatching(/^IGAA/), expiresAt: issuedAt + 5_183_944_000 },
    ]);
    const [page, ig] = seeded as [(typeof seeded)[0], (typeof seeded)[0]];

    const debug = await json<{ data: Record<string, unknown> }>(
      await get('/v23.0/debug_token', { input_token: page.accessToken, access_token: `${FB_APP.appId}|${FB_APP.appSecret}` }),
    );
    expect(debug.data).toMatchObject({ is_valid: true, expires_at: 0, type: 'PAGE', profile_id: '500000000000001', scopes: expect.arrayContaining(['pages_messaging']) });
    const apps = await json<{ data: Array<{ id: string; subscribed_fields: string[] }> }>(
      await get('/v23.0/500000000000001/subscribed_apps', { access_token: page.accessToken }),
    );
    expect(apps.data).toEqual([{ id: FB_APP.appId, name: 'Switchboard (sandbox)', subscribed_fields: ['messages', 'message_echoes'] }]);

    const refreshed = await json<TokenAnswer>(await get('/refresh_access_token', { grant_type: 'ig_refresh_token', access_token: ig.accessToken }));
    expect(refreshed.expires_in).toBe(5_183_944);
    const me = await json(await get('/v23.0/me', { fields: 'user_id,username', access_token: refreshed.access_token }));
    expect(me).toEqual({ user_id: '17841400000500001', username: 'seeded.account' });
  });

  it('seeds over the control route and refuses an invalid account', async () => {
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/oauth/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const ok = await post({ accounts: [{ kind: 'page', id: '500000000000002' }] });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { tokens: unknown[] }).tokens).toHaveLength(1);
    expect((await post({ accounts: [{ kind: 'page', id: 'x' }] })).status).toBe(400);
    expect(() => sandbox.seedTokens([{ kind: 'page', id: '1', scopes: 'no' } as never])).toThrow(/invalid seed accounts/);
  });
});

describe('control', () => {
  it('authorize() and POST /_sandbox/oauth/authorize answer the dialog without a browser', async () => {
    const location = new URL(sandbox.authorize(fbDialogUrl(), 'allow', [PAGE_A]));
    const { pages } = await (async () => {
      const short = await json<TokenAnswer>(await fbExchange(location.searchParams.get('code')!));
      return json<{ data: PageEntry[] }>(await get('/v23.0/me/accounts', { access_token: short.access_token })).then((r) => ({ pages: r.data }));
    })();
    expect(pages.map((p) => p.id)).toEqual([PAGE_A]);

    const res = await fetch(`${sandbox.url}/_sandbox/oauth/authorize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: igDialogUrl(), decision: 'allow' }),
    });
    const { location: igLocation } = await json<{ location: string }>(res);
    expect(igLocation).toMatch(/\?code=AQ.+&state=st-ig-1#_$/);
    expect((await igExchange(new URL(igLocation).searchParams.get('code')!)).status).toBe(200);

    expect(sandbox.authorize(fbDialogUrl(), 'cancel')).toMatch(/error=access_denied/);
    expect(() => sandbox.authorize(fbDialogUrl({ client_id: '1' }))).toThrow(/Invalid App ID/);
    const bad = await fetch(`${sandbox.url}/_sandbox/oauth/authorize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: fbDialogUrl({ redirect_uri: 'nope' }) }),
    });
    expect(bad.status).toBe(400);
  });

  it('GET /_sandbox/oauth shows the state, /clock moves the OAuth clock, DELETE resets it', async () => {
    await pageToken();
    const state = await json<{ tokens: unknown[]; codes: { issued: number }; apps: Array<Record<string, unknown>> }>(
      await fetch(`${sandbox.url}/_sandbox/oauth`),
    );
    expect(state.tokens).toHaveLength(4);
    expect(state.codes.issued).toBe(1);
    expect(JSON.stringify(state)).not.toContain(FB_APP.appSecret);

    const clock = await fetch(`${sandbox.url}/_sandbox/oauth/clock`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ advanceMs: 5000 }),
    });
    expect(await json(clock)).toEqual({ clockOffsetMs: 5000 });
    const badClock = await fetch(`${sandbox.url}/_sandbox/oauth/clock`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ advanceMs: -1 }),
    });
    expect(badClock.status).toBe(400);

    expect((await fetch(`${sandbox.url}/_sandbox/oauth`, { method: 'DELETE' })).status).toBe(204);
    expect(sandbox.oauthState()).toMatchObject({ tokens: [], subscriptions: {}, codes: { issued: 0, redeemed: 0 }, clockOffsetMs: 0 });
  });

  it('registers apps over HTTP (secrets never shown), refuses invalid ones, and keeps them across reset()', async () => {
    const apps = oauthAppsFromConfig({ META_APP_ID: '111222333', META_APP_SECRET: 'config-meta-secret', INSTAGRAM_APP_ID: '444555666' });
    expect(apps).toEqual([
      expect.objectContaining({ appId: '111222333', appSecret: 'config-meta-secret', platform: 'facebook' }),
      // Without INSTAGRAM_APP_SECRET the Instagram app shares the Meta app secret.
      expect.objectContaining({ appId: '444555666', appSecret: 'config-meta-secret', platform: 'instagram' }),
    ]);
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/oauth/apps`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    try {
      expect((await post(apps)).status).toBe(204);
      const listed = await (await fetch(`${sandbox.url}/_sandbox/oauth/apps`)).text();
      expect(listed).not.toContain('config-meta-secret');
      expect(JSON.parse(listed)).toEqual([
        { appId: '111222333', platform: 'facebook', name: 'Switchboard (sandbox)' },
        { appId: '444555666', platform: 'instagram', name: 'Switchboard for Instagram (sandbox)' },
      ]);
      sandbox.reset();
      const location = new URL(sandbox.authorize(fbDialogUrl({ client_id: '111222333' })));
      const res = await fbExchange(location.searchParams.get('code')!, { client_id: '111222333', client_secret: 'config-meta-secret' });
      expect(res.status).toBe(200);
      expect((await fetch(fbDialogUrl())).status).toBe(400);

      expect((await post([{ appId: 'x', appSecret: 's', platform: 'facebook' }])).status).toBe(400);
      expect((await post([{ ...apps[0], secret: 'typo' }])).status).toBe(400);
      expect(() => sandbox.setOAuthApps([apps[0]!, apps[0]!])).toThrow(/unique/);
    } finally {
      sandbox.setOAuthApps([...DEFAULT_OAUTH_APPS]);
    }
  });
});
