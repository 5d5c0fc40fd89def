import { FACEBOOK_MESSAGING_SCOPES } from '../meta/messaging-scopes';
import type { OAuthFlow, OAuthStore, PendingConsent, PkceChallenge } from './oauth-store';

/**
 * The two OAuth dialogs (contract §5.1–§5.3) as plain HTML that works without JavaScript:
 * `GET /{ver}/dialog/oauth` (Facebook Login, `scope` or `config_id`) and `GET /oauth/authorize`
 * (Instagram Login) show a consent page listing the assets granted, with Allow and Cancel buttons
 * in forms that POST back to the same path. Allow redirects (302) to the redirect URI with `code`
 * and `state` (Instagram appends `#_`), Cancel with `error=access_denied`. A request the dialog
 * cannot serve (unknown app, bad redirect URI, unknown scope) gets an error page, never a redirect,
 * as Meta does. The pages are never faulted: `failNext` is for the Graph calls behind them.
 */

export interface DialogReply {
  status: number;
  html?: string;
  location?: string;
}

const FB_DIALOG = /^(?:\/v\d+\.\d+)?\/dialog\/oauth\/?$/;
const IG_DIALOG = /^\/oauth\/authorize\/?$/;

export function dialogFlow(path: string): OAuthFlow | undefined {
  if (FB_DIALOG.test(path)) return 'facebook';
  if (IG_DIALOG.test(path)) return 'instagram';
  return undefined;
}

const FACEBOOK_SCOPES: Record<string, string> = {
  public_profile: 'Your name and profile picture',
  email: 'Your email address',
  pages_show_list: 'Show a list of the Pages you manage',
  pages_messaging: 'Send and receive messages as your Pages',
  pages_manage_metadata: 'Manage settings of your Pages (webhook subscriptions)',
  pages_read_engagement: 'Read content posted on your Pages',
  pages_manage_engagement: 'Manage comments on your Pages',
  pages_read_user_content: 'Read user content on your Pages',
  instagram_basic: 'Access the profile of the Instagram accounts linked to your Pages',
  instagram_manage_messages: 'Send and receive Instagram messages of the linked accounts',
  instagram_manage_comments: 'Manage comments of the linked Instagram accounts',
  business_management: 'Manage your business assets',
};

// The pre-2025 names (business_basic, …) are refused like Meta refuses them since Jan 27 2025 (contract §5.4).
const INSTAGRAM_SCOPES: Record<string, string> = {
  instagram_business_basic: 'Your profile information and media',
  instagram_business_manage_messages: 'Read and send your direct messages',
  instagram_business_manage_comments: 'Read and manage comments on your media',
  instagram_business_content_publish: 'Publish content to your account',
  instagram_business_manage_insights: 'Read insights of your account',
};

type Opened = { ok: true; consent: PendingConsent } | { ok: false; title: string; message: string };

function splitScopes(raw: string | undefined): string[] {
  return [...new Set((raw ?? '').split(/[,\s]+/).filter(Boolean))];
}

function absoluteHttpUrl(raw: string): URL | undefined {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

const PKCE_VALUE = /^[A-Za-z0-9._~-]{43,128}$/;

/** Validates a dialog request as Meta would and, if it is servable, opens a pending consent for it. */
export function openConsent(store: OAuthStore, flow: OAuthFlow, query: Record<string, string>): Opened {
  const fail = (title: string, message: string): Opened => ({ ok: false, title, message });
  const product = flow === 'facebook' ? 'Facebook Login' : 'Instagram Login';

  const app = store.findApp(query['client_id']);
  if (!query['client_id']) return fail('Invalid App ID', 'The request has no client_id: the app must send its app id.');
  if (!app || app.platform !== flow) {
    return fail(
      flow === 'facebook' ? 'Invalid App ID' : 'Invalid platform app',
      `"${query['client_id']}" is not a ${product} app this sandbox knows. Register it with setOAuthApps or POST /_sandbox/oauth/apps.`,
    );
  }

  const redirectUri = query['redirect_uri'];
  const redirect = redirectUri ? absoluteHttpUrl(redirectUri) : undefined;
  if (!redirectUri || !redirect) return fail("Can't load URL", "redirect_uri isn't an absolute URI. Check RFC 3986.");
  if (redirect.hash) return fail("Can't load URL", 'redirect_uri must not contain a fragment.');
  if (app.redirectUris && !app.redirectUris.includes(redirectUri)) {
    return fail(
      'URL blocked',
      "This redirect failed because the redirect URI is not whitelisted in the app's Client OAuth Settings.",
    );
  }

  const responseType = query['response_type'] ?? (flow === 'facebook' ? 'code' : undefined);
  if (responseType !== 'code') return fail('Unsupported response_type', 'This app uses the code flow: response_type must be "code".');

  let scopes: string[];
  if (flow === 'facebook') {
    const configId = query['config_id'];
    if (configId !== undefined) {
      if (!/^\d+$/.test(configId)) return fail('Invalid configuration', `config_id "${configId}" is not a configuration id.`);
      // A Login-for-Business configuration grants what the portal would ask for by scope.
      scopes = [...FACEBOOK_MESSAGING_SCOPES];
    } else {
      scopes = splitScopes(query['scope']);
    }
    const unknown = scopes.filter((s) => !(s in FACEBOOK_SCOPES));
    if (unknown.length > 0) return fail('Invalid Scopes', `Invalid Scopes: ${unknown.join(', ')}.`);
    if (!scopes.includes('public_profile')) scopes.unshift('public_profile');
  } else {
    scopes = splitScopes(query['scope']);
    if (scopes.length === 0) return fail('Invalid Scopes', 'scope is required: at least instagram_business_basic.');
    const unknown = scopes.filter((s) => !(s in INSTAGRAM_SCOPES));
    if (unknown.length > 0) return fail('Invalid Scopes', `Invalid Scopes: ${unknown.join(', ')}.`);
  }

  let pkce: PkceChallenge | undefined;
  const challenge = query['code_challenge'];
  if (challenge !== undefined) {
    const method = query['code_challenge_method'] ?? 'plain';
    if (method !== 'S256' && method !== 'plain') return fail('Invalid request', 'code_challenge_method must be S256 or plain.');
    if (!PKCE_VALUE.test(challenge)) return fail('Invalid request', 'code_challenge must be 43 to 128 URL-safe characters.');
    pkce = { challenge, method };
  }

  return {
    ok: true,
    consent: store.openConsent({
      flow,
      appId: app.appId,
      redirectUri,
      ...(query['state'] !== undefined && { state: query['state'] }),
      scopes,
      ...(pkce && { pkce }),
    }),
  };
}

function redirectTo(consent: PendingConsent, params: Array<[string, string]>, fragment: string): string {
  const url = new URL(consent.redirectUri);
  for (const [k, v] of params) url.searchParams.append(k, v);
  if (consent.state !== undefined) url.searchParams.append('state', consent.state);
  return url.toString() + fragment;
}

/** Where the browser goes after the decision: the redirect URI with a code, or with access_denied. */
export function decide(store: OAuthStore, consent: PendingConsent, decision: 'allow' | 'cancel', pageIds?: readonly string[]): string {
  if (decision === 'cancel') {
    consent.answered = true;
    return redirectTo(
      consent,
      [
        ['error', 'access_denied'],
        ['error_reason', 'user_denied'],
        ['error_description', 'Permissions error'],
      ],
      '',
    );
  }
  const code = store.issueCode(consent, pageIds);
  // Instagram appends `#_`, which is not part of the code (contract §5.3).
  return redirectTo(consent, [['code', code]], consent.flow === 'instagram' ? '#_' : '');
}

/** Why a consent cannot be answered any more, if it cannot. */
function closedReason(store: OAuthStore, consent: PendingConsent | undefined): string | undefined {
  if (!consent) return 'This login request is not known to the sandbox. Start again from the app.';
  if (consent.answered) return 'This login request was already answered. Start again from the app.';
  if (consent.expiresAt <= store.now()) return 'This login request has expired. Start again from the app.';
  return undefined;
}

export function showDialog(store: OAuthStore, flow: OAuthFlow, path: string, query: Record<string, string>): DialogReply {
  const opened = openConsent(store, flow, query);
  if (!opened.ok) return { status: 400, html: dialogErrorPage(opened.title, opened.message) };
  return { status: 200, html: consentPage(store, opened.consent, path) };
}

export function submitConsent(store: OAuthStore, flow: OAuthFlow, form: URLSearchParams): DialogReply {
  const consent = store.consent(form.get('consent') ?? '');
  const closed = closedReason(store, consent);
  if (closed || !consent) return { status: 400, html: dialogErrorPage('Request closed', closed ?? '') };
  if (consent.flow !== flow) return { status: 400, html: dialogErrorPage('Wrong dialog', 'This consent belongs to the other login dialog.') };
  const decision = form.get('decision');
  if (decision !== 'allow' && decision !== 'cancel') {
    return { status: 400, html: dialogErrorPage('No decision', 'Choose Allow or Cancel.') };
  }
  if (decision === 'allow' && flow === 'instagram' && !consent.persona.instagram) {
    return { status: 400, html: dialogErrorPage('Not a professional account', 'Only a business or creator account can be connected.') };
  }
  // The picker's checkboxes count only when the page showed them; a bare POST grants every Page shown.
  const pageIds = form.get('assets_shown') === '1' ? form.getAll('page') : undefined;
  return { status: 302, location: decide(store, consent, decision, pageIds) };
}

/**
 * The dialog without a browser (tests, the benchmark): opens `dialogUrl` and answers it, returning
 * the redirect location. Throws with Meta's reason when the dialog would show an error page.
 */
export function authorizeInProcess(
  store: OAuthStore,
  dialogUrl: string,
  decision: 'allow' | 'cancel' = 'allow',
  pageIds?: readonly string[],
): string {
  const url = new URL(dialogUrl);
  const flow = dialogFlow(url.pathname);
  if (!flow) throw new Error(`not an OAuth dialog URL: ${url.pathname}`);
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = v;
  const opened = openConsent(store, flow, query);
  if (!opened.ok) throw new Error(`${opened.title}: ${opened.message}`);
  if (decision === 'allow' && flow === 'instagram' && !opened.consent.persona.instagram) {
    throw new Error('Not a professional account: the persona has no Instagram account to grant');
  }
  return decide(store, opened.consent, decision, pageIds);
}

// ---------------------------------------------------------------------------------------------
// HTML

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f0f2f5;color:#1c1e21;line-height:1.45}
main{max-width:34rem;margin:1.5rem auto;background:#fff;border-radius:.5rem;padding:1.25rem 1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.3rem;margin:.25rem 0 1rem}h2{font-size:1rem;margin:1.25rem 0 .5rem}
.note{font-size:.85rem;background:#fff8e1;border:1px solid #e0c46c;border-radius:.25rem;padding:.4rem .6rem}
fieldset{border:1px solid #ccd0d5;border-radius:.4rem;padding:.5rem .9rem}legend{font-weight:600;padding:0 .3rem}
ul{padding-left:1.2rem}.assets{list-style:none;padding:0;margin:.25rem 0}.assets li{margin:.4rem 0}
.sub{color:#606770;font-size:.9rem}.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1.25rem}
.actions form{margin:0}button{font:inherit;font-weight:600;padding:.6rem 1.4rem;border-radius:.4rem;border:1px solid #ccd0d5;background:#e4e6eb;cursor:pointer;min-height:2.75rem}
button.primary{background:#1877f2;border-color:#1877f2;color:#fff}button:focus-visible{outline:3px solid #1c1e21;outline-offset:2px}
`;

function page(title: string, body: string): string {
  return (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    `<title>${esc(title)}</title>\n<style>${STYLE}</style>\n</head>\n<body>\n<main>\n` +
    '<p class="note" role="note">Graph API sandbox: a stand-in for Meta\'s dialog. Nothing leaves this machine.</p>\n' +
    `${body}\n</main>\n</body>\n</html>\n`
  );
}

export function dialogErrorPage(title: string, message: string): string {
  return page(`${title} | Graph API sandbox`, `<h1>${esc(title)}</h1>\n<p role="alert">${esc(message)}</p>`);
}

function consentPage(store: OAuthStore, consent: PendingConsent, action: string): string {
  const appName = store.appName(consent.appId);
  const descriptions: Record<string, string> = consent.flow === 'facebook' ? FACEBOOK_SCOPES : INSTAGRAM_SCOPES;
  const permissions = consent.scopes
    .map((s) => `<li>${esc(descriptions[s] ?? s)} <span class="sub">(${esc(s)})</span></li>`)
    .join('\n');
  const hidden = `<input type="hidden" name="consent" value="${esc(consent.id)}">`;
  const cancel =
    `<form method="post" action="${esc(action)}">${hidden}` +
    '<button type="submit" name="decision" value="cancel">Cancel</button></form>';

  if (consent.flow === 'facebook') {
    const pages = consent.persona.pages;
    const assets =
      pages.length === 0
        ? '<p>You don\'t manage any Facebook Pages, so there are none to choose.</p>'
        : '<ul class="assets">\n' +
          pages
            .map((p) => {
              const id = `page-${esc(p.id)}`;
              const ig = p.instagram
                ? ` <span class="sub">with Instagram account @${esc(p.instagram.username)}</span>`
                : ' <span class="sub">no Instagram account linked</span>';
              return (
                `<li><input type="checkbox" name="page" value="${esc(p.id)}" id="${id}" checked> ` +
                `<label for="${id}">${esc(p.name)} <span class="sub">(Page ${esc(p.id)})</span></label>${ig}</li>`
              );
            })
            .join('\n') +
          '\n</ul>';
    return page(
      `Log in with Facebook: ${appName} | Graph API sandbox`,
      `<h1>${esc(appName)} wants to use your Facebook Pages</h1>\n` +
        `<p>You are logged in as <strong>${esc(consent.persona.user.name)}</strong>.</p>\n` +
        `<h2 id="permissions">What ${esc(appName)} will be able to do</h2>\n<ul aria-labelledby="permissions">\n${permissions}\n</ul>\n` +
        `<form method="post" action="${esc(action)}">${hidden}<input type="hidden" name="assets_shown" value="1">\n` +
        `<fieldset><legend>Pages ${esc(appName)} may use</legend>\n${assets}\n</fieldset>\n` +
        '<div class="actions"><button type="submit" name="decision" value="allow" class="primary">Allow</button></div>\n</form>\n' +
        `<div class="actions">${cancel}</div>`,
    );
  }

  const ig = consent.persona.instagram;
  if (!ig) {
    return page(
      `Instagram: ${appName} | Graph API sandbox`,
      `<h1>${esc(appName)} can't connect this Instagram account</h1>\n` +
        '<p role="alert">The signed-in Instagram account is not a professional (business or creator) account. ' +
        'Switch it to a professional account in the Instagram app, then try again.</p>\n' +
        `<div class="actions">${cancel}</div>`,
    );
  }
  return page(
    `Instagram: ${appName} | Graph API sandbox`,
    `<h1>${esc(appName)} wants to access your Instagram account</h1>\n` +
      `<h2 id="account">Account</h2>\n<ul class="assets" aria-labelledby="account"><li><strong>@${esc(ig.username)}</strong> ` +
      `<span class="sub">${esc(ig.name)} · ${ig.accountType === 'BUSINESS' ? 'Business' : 'Creator'} account (${esc(ig.userId)})</span></li></ul>\n` +
      `<h2 id="permissions">What ${esc(appName)} will be able to do</h2>\n<ul aria-labelledby="permissions">\n${permissions}\n</ul>\n` +
      `<div class="actions"><form method="post" action="${esc(action)}">${hidden}` +
      `<button type="submit" name="decision" value="allow" class="primary">Allow</button></form>${cancel}</div>`,
  );
}
