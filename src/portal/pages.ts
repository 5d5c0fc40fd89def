import { html, type SafeHtml } from '../dashboard/html';
import type { GrantedAsset, LoginFlow, OnboardingStatus } from '../../workflows/onboarding-definitions';
import type { ReconnectStatus } from '../../workflows/token-lifecycle-definitions';
import type { PortalChannel } from './channels';
import {
  pageKey,
  problemMessage,
  reconnectedMessage,
  reconnectProblemMessage,
  RECONNECT_WORKING_TEXT,
  STATE_PROBLEMS,
  STEP_LABELS,
  UNAVAILABLE_MESSAGE,
  waitingReplies,
  WORKING_TEXT,
  type StateProblem,
} from './messages';

/**
 * The portal's pages, rendered on the server with every value escaped (`html`). They work
 * without JavaScript: plain forms, a meta refresh while the saga works. `assets/portal.js` adds
 * the live "waiting for Meta…" state (it re-fetches `#portal` from /portal/panel, rendered by the
 * same functions below), the checklist that enables the connect buttons, and focus on errors.
 */

export interface PortalAssets {
  js: string;
  css: string;
}

interface LayoutOptions {
  title: string;
  assets: PortalAssets;
  main: SafeHtml;
  /** Signed-in pages: the business's name and the sign-out form. */
  header?: { businessName: string; csrf: string };
  /** Reload after this many seconds when scripts are off (the saga is working). */
  refreshSeconds?: number;
}

function layout({ title, assets, main, header, refreshSeconds }: LayoutOptions): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
${refreshSeconds ? html`<noscript><meta http-equiv="refresh" content="${refreshSeconds}"></noscript>` : ''}
<title>${title} · Switchboard</title>
<link rel="stylesheet" href="${assets.css}">
<script src="${assets.js}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<p class="brand">Switchboard</p>
${
  header
    ? html`<p class="business">${header.businessName}</p>
<form method="post" action="/portal/logout" class="sign-out"><input type="hidden" name="_csrf" value="${header.csrf}"><button type="submit" class="link-button">Sign out</button></form>`
    : ''
}
</header>
<main id="main" tabindex="-1">
${main}
</main>
</body>
</html>
`.value;
}

// ---- sign up and sign in --------------------------------------------------------------------------

export interface FormProblem {
  /** The input it is about (its id), or null for the whole form. */
  field: string | null;
  message: string;
}

/** The problems at the top of a form, each linking to its field; focused on load (portal.js) so a screen reader reads them first. */
function problemSummary(problems: readonly FormProblem[]): SafeHtml {
  if (problems.length === 0) return html``;
  return html`<div class="problem" role="alert" tabindex="-1" data-focus autofocus id="form-problems">
<p class="problem-title">${problems.length === 1 ? 'There is a problem' : `There are ${problems.length} problems`}</p>
<ul>${problems.map((p) => html`<li>${p.field ? html`<a href="#${p.field}">${p.message}</a>` : p.message}</li>`)}</ul>
</div>`;
}

function field(o: { id: string; name: string; label: string; type: string; value?: string; autocomplete: string; hint?: string; problems: readonly FormProblem[]; maxlength?: number }): SafeHtml {
  const problem = o.problems.find((p) => p.field === o.id);
  const describedBy = [o.hint ? `${o.id}-hint` : '', problem ? `${o.id}-problem` : ''].filter(Boolean).join(' ');
  return html`<p class="field">
<label for="${o.id}">${o.label}</label>
${o.hint ? html`<span class="hint" id="${o.id}-hint">${o.hint}</span>` : ''}
${problem ? html`<span class="field-problem" id="${o.id}-problem">${problem.message}</span>` : ''}
<input id="${o.id}" name="${o.name}" type="${o.type}" autocomplete="${o.autocomplete}" required${o.value !== undefined ? html` value="${o.value}"` : ''}${o.maxlength ? html` maxlength="${o.maxlength}"` : ''}${describedBy ? html` aria-describedby="${describedBy}"` : ''}${problem ? html` aria-invalid="true"` : ''}>
</p>`;
}

export function signupPage(assets: PortalAssets, o: { values?: { businessName?: string; email?: string }; problems?: readonly FormProblem[] } = {}): string {
  const problems = o.problems ?? [];
  return layout({
    title: 'Create your account',
    assets,
    main: html`<h1>Create your Switchboard account</h1>
<p class="lede">Answer your customers on Instagram and Messenger with an assistant that knows your products. Setup takes a few minutes.</p>
${problemSummary(problems)}
<form method="post" action="/portal/signup" class="stacked" novalidate>
${field({ id: 'business-name', name: 'businessName', label: 'Business name', type: 'text', value: o.values?.businessName ?? '', autocomplete: 'organization', problems, maxlength: 200 })}
${field({ id: 'email', name: 'email', label: 'Email', type: 'email', value: o.values?.email ?? '', autocomplete: 'email', problems })}
${field({ id: 'password', name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'At least 12 characters.', problems })}
<p><button type="submit" class="primary">Create account</button></p>
</form>
<p>Already have an account? <a href="/portal/login">Sign in</a></p>`,
  });
}

export function loginPage(assets: PortalAssets, o: { email?: string; problem?: string } = {}): string {
  const problems: FormProblem[] = o.problem ? [{ field: null, message: o.problem }] : [];
  return layout({
    title: 'Sign in',
    assets,
    main: html`<h1>Sign in</h1>
${problemSummary(problems)}
<form method="post" action="/portal/login" class="stacked">
${field({ id: 'email', name: 'email', label: 'Email', type: 'email', value: o.email ?? '', autocomplete: 'username', problems })}
${field({ id: 'password', name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', problems })}
<p><button type="submit" class="primary">Sign in</button></p>
</form>
<p>New to Switchboard? <a href="/portal/signup">Create an account</a></p>`,
  });
}

// ---- the setup page -------------------------------------------------------------------------------

export interface PortalView {
  /** Undefined: the saga could not be reached (the page retries). */
  status: OnboardingStatus | undefined;
  businessName: string;
  csrf: string;
  flows: Record<LoginFlow, boolean>;
  may: { connect: boolean; configure: boolean };
  /** A problem with what the client just sent (shown above the form it concerns). */
  formProblems?: readonly FormProblem[];
  /** Checklist boxes to keep ticked after a refused post. */
  ticked?: ReadonlySet<string>;
  /** The client came back from a consent they cancelled (shown until the saga says otherwise). */
  cancelledFlow?: LoginFlow;
  /** Values to keep in the assistant form after a refused post. */
  configureValues?: { persona?: string; language?: string; businessName?: string };
  /** A live tenant's channels: where each stands and the replies waiting for it. */
  channels?: readonly PortalChannel[];
  /** The reconnect the page follows (`?reconnect=<channel id>`), with its saga's status (undefined: none). */
  reconnect?: { channelId: string; status: ReconnectStatus | undefined };
}

export const CHECKLIST = [
  { name: 'req_professional', label: html`My Instagram account is a <strong>business or creator</strong> account`, hint: 'In the Instagram app: Settings → Account type and tools.' },
  { name: 'req_page', label: html`It is <strong>linked to a Facebook Page</strong>`, hint: 'In the Instagram app: Edit profile → Page; or in the Page settings → Linked accounts.' },
  { name: 'req_admin', label: html`I am an <strong>admin of that Facebook Page</strong>`, hint: 'With full control of the Page (Page settings → Page access).' },
] as const;

function progress(status: OnboardingStatus | undefined): SafeHtml {
  const current = status?.portalStep ?? 2;
  const allDone = status?.status === 'done' && status.step === 'live';
  return html`<ol class="progress" aria-label="Setup progress">
${STEP_LABELS.map((label, i) => {
  const n = i + 1;
  const state = allDone || n < current ? 'done' : n === current ? 'current' : 'upcoming';
  return html`<li class="${state}"${state === 'current' ? html` aria-current="step"` : ''}><span class="num" aria-hidden="true">${state === 'done' ? '✓' : n}</span> <span class="label">${label}</span><span class="visually-hidden">${state === 'done' ? ' (done)' : state === 'current' ? ' (current step)' : ''}</span></li>`;
})}
</ol>`;
}

function problemBox(message: string | undefined, extra?: SafeHtml): SafeHtml {
  if (!message) return html``;
  return html`<div class="problem" role="alert" tabindex="-1" data-focus autofocus><p>${message}</p>${extra ?? ''}</div>`;
}

function formProblemsBox(problems: readonly FormProblem[] | undefined): SafeHtml {
  if (!problems || problems.length === 0) return html``;
  if (problems.length === 1 && !problems[0]!.field) return problemBox(problems[0]!.message);
  return problemSummary(problems);
}

const LONG_DATE = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeZone: 'UTC' });

const csrfField = (csrf: string) => html`<input type="hidden" name="_csrf" value="${csrf}">`;

function connectPanel(view: PortalView): SafeHtml {
  const status = view.status!;
  const denied = view.cancelledFlow && !status.problem ? problemMessage({ code: 'oauth_denied', message: '' }, view.cancelledFlow) : undefined;
  const problem = problemMessage(status.problem, status.flow) ?? denied;
  const offered = (['facebook', 'instagram'] as const).filter((f) => view.flows[f]);
  if (!view.may.connect) {
    return html`<h2 id="panel-heading">Connect Instagram or Facebook</h2>
${problemBox(problem)}
<p>Your role can't connect accounts. Ask the owner or an admin of your business to sign in and connect your Instagram or Facebook account.</p>`;
  }
  return html`<h2 id="panel-heading">Connect Instagram or Facebook</h2>
${problemBox(problem)}
${formProblemsBox(view.formProblems)}
<form method="post" action="/portal/connect" class="connect" data-checklist>
${csrfField(view.csrf)}
<fieldset>
<legend>Before you connect, check that:</legend>
${CHECKLIST.map(
  (item) => html`<div class="check">
<input type="checkbox" id="${item.name}" name="${item.name}" value="yes"${view.ticked?.has(item.name) ? html` checked` : ''} aria-describedby="${item.name}-hint">
<label for="${item.name}">${item.label}</label>
<span class="hint" id="${item.name}-hint">${item.hint}</span>
</div>`,
)}
</fieldset>
<p class="hint" id="connect-hint" data-checklist-hint>Tick all three boxes, then choose how to connect.</p>
<div class="buttons">
${offered.length === 0 ? html`<p>Connecting accounts isn't switched on for this Switchboard yet. Please contact its operator.</p>` : ''}
${offered.map(
  (flow) => html`<div class="flow">
<button type="submit" class="primary" formaction="/portal/connect?flow=${flow}" data-connect aria-describedby="connect-hint ${flow}-what">Connect with ${flow === 'facebook' ? 'Facebook' : 'Instagram'}</button>
<p class="hint" id="${flow}-what">${flow === 'facebook' ? "Connects your Page's Messenger and the Instagram account linked to it." : 'Connects one Instagram business or creator account directly.'}</p>
</div>`,
)}
</div>
</form>
${status.waitingUntil ? html`<p class="subtle">Your setup stays open until ${LONG_DATE.format(new Date(status.waitingUntil))}.</p>` : ''}`;
}

function assetLabel(asset: GrantedAsset): string {
  return asset.platform === 'messenger' ? `Messenger — Facebook Page “${asset.name}”` : `Instagram — @${asset.name.replace(/^@/, '')}`;
}

const ELSEWHERE = 'Already connected to another Switchboard business: disconnect it there first.';

/** Every connectable account once: listed assets, plus Pages' linked Instagram accounts the list does not name on their own. */
export function pickerEntries(assets: readonly GrantedAsset[]): Array<{ accountId: string; label: string; disabled: boolean; why?: string }> {
  const entries: Array<{ accountId: string; label: string; disabled: boolean; why?: string }> = [];
  const seen = new Set<string>();
  for (const a of assets) {
    if (seen.has(a.accountId)) continue;
    seen.add(a.accountId);
    entries.push({ accountId: a.accountId, label: assetLabel(a), disabled: a.connectedElsewhere, ...(a.connectedElsewhere && { why: ELSEWHERE }) });
  }
  for (const a of assets) {
    const linked = a.linkedInstagram;
    if (!linked || seen.has(linked.accountId)) continue;
    seen.add(linked.accountId);
    const elsewhere = linked.connectedElsewhere ?? false;
    entries.push({ accountId: linked.accountId, label: `Instagram — @${(linked.username ?? linked.accountId).replace(/^@/, '')} (linked to “${a.name}”)`, disabled: elsewhere, ...(elsewhere && { why: ELSEWHERE }) });
  }
  return entries;
}

function pickerPanel(view: PortalView): SafeHtml {
  const status = view.status!;
  const entries = pickerEntries(status.assets ?? []);
  const selectable = entries.filter((e) => !e.disabled);
  if (!view.may.connect) {
    return html`<h2 id="panel-heading">Choose your accounts</h2><p>Your role can't choose which accounts to connect. Ask the owner or an admin of your business to finish this step.</p>`;
  }
  return html`<h2 id="panel-heading">Choose the accounts Switchboard answers for</h2>
${problemBox(problemMessage(status.problem, status.flow))}
${formProblemsBox(view.formProblems)}
<form method="post" action="/portal/select" class="stacked">
${csrfField(view.csrf)}
<fieldset>
<legend>You shared these accounts. Tick the ones whose messages the assistant should answer.</legend>
${entries.map(
  (e) => html`<div class="check asset${e.disabled ? ' unavailable' : ''}">
<input type="checkbox" id="asset-${e.accountId}" name="account" value="${e.accountId}"${e.disabled ? html` disabled` : ''}${!e.disabled && selectable.length === 1 ? html` checked` : ''}${e.why ? html` aria-describedby="asset-${e.accountId}-why"` : ''}>
<label for="asset-${e.accountId}">${e.label}</label>
${e.why ? html`<span class="hint why" id="asset-${e.accountId}-why">${e.why}</span>` : ''}
</div>`,
)}
</fieldset>
<p><button type="submit" class="primary">Connect the ticked accounts</button></p>
</form>`;
}

export const LANGUAGES = [
  ['en', 'English'],
  ['de', 'Deutsch (German)'],
  ['es', 'Español (Spanish)'],
  ['fr', 'Français (French)'],
  ['pt', 'Português (Portuguese)'],
] as const;

export const DEFAULT_PERSONA = 'Friendly, concise and helpful. Answers questions about our products, prices and stock, and hands over to a person when unsure.';

function configurePanel(view: PortalView): SafeHtml {
  const status = view.status!;
  const v = view.configureValues ?? {};
  const problems = view.formProblems ?? [];
  const fieldProblem = (id: string) => problems.find((p) => p.field === id);
  const invalid = (id: string) => (fieldProblem(id) ? html` aria-invalid="true"` : '');
  if (!view.may.configure) {
    return html`<h2 id="panel-heading">Set up your assistant</h2><p>Your role can't change the assistant. Ask the owner, an admin or a developer of your business to finish this step.</p>`;
  }
  const language = v.language ?? 'en';
  return html`<h2 id="panel-heading">Set up your assistant</h2>
${problemBox(problemMessage(status.problem, status.flow))}
${problemSummary(problems)}
<p>${status.channels.length === 1 ? 'Your account is connected.' : `${status.channels.length} accounts are connected.`} Now tell the assistant about your business.</p>
<form method="post" action="/portal/configure" enctype="multipart/form-data" class="stacked">
${csrfField(view.csrf)}
<p class="field"><label for="business-name">Business name</label>
${fieldProblem('business-name') ? html`<span class="field-problem">${fieldProblem('business-name')!.message}</span>` : ''}
<input id="business-name" name="businessName" type="text" maxlength="200" required value="${v.businessName ?? view.businessName}"${invalid('business-name')}></p>
<p class="field"><label for="persona">How should the assistant sound?</label>
<span class="hint" id="persona-hint">A sentence or two: its tone, and what it should and shouldn't do.</span>
${fieldProblem('persona') ? html`<span class="field-problem">${fieldProblem('persona')!.message}</span>` : ''}
<textarea id="persona" name="persona" rows="4" maxlength="2000" required aria-describedby="persona-hint"${invalid('persona')}>${v.persona ?? DEFAULT_PERSONA}</textarea></p>
<p class="field"><label for="language">Language it answers in</label>
<select id="language" name="language"${invalid('language')}>
${LANGUAGES.map(([code, name]) => html`<option value="${code}"${code === language ? html` selected` : ''}>${name}</option>`)}
</select></p>
<p class="field"><label for="catalog">Product catalog <span class="subtle">(optional)</span></label>
<span class="hint" id="catalog-hint">A CSV or JSON file with the columns sku, name, description, price, currency, stock and url: up to 10,000 products and 5 MB. You can upload it later too.</span>
${fieldProblem('catalog') ? html`<span class="field-problem">${fieldProblem('catalog')!.message}</span>` : ''}
<input id="catalog" name="catalog" type="file" accept=".csv,.json,text/csv,application/json" aria-describedby="catalog-hint"${invalid('catalog')}></p>
<p><button type="submit" class="primary">Save and go live</button></p>
</form>`;
}

/** How the client knows an account: `@name` for Instagram, `Page “Name”` for a Page (the onboarding's names), else its id. */
export function shortAccountLabel(assets: readonly GrantedAsset[], c: { platform: 'messenger' | 'instagram'; accountId: string }): string {
  for (const a of assets) {
    if (a.accountId === c.accountId && a.platform === c.platform) return c.platform === 'instagram' ? `@${a.name.replace(/^@/, '')}` : `Page “${a.name}”`;
    if (c.platform === 'instagram' && a.linkedInstagram?.accountId === c.accountId && a.linkedInstagram.username) return `@${a.linkedInstagram.username.replace(/^@/, '')}`;
  }
  return c.platform === 'instagram' ? `Instagram account ${c.accountId}` : `Facebook Page ${c.accountId}`;
}

const reconnectWorking = (r: PortalView['reconnect']): boolean => r?.status?.status === 'working';

/** The reconnect the page follows: "Reconnecting…", its problem, or "Reconnected". */
function reconnectBox(view: PortalView, label: string): SafeHtml {
  const r = view.reconnect?.status;
  if (!r) return html``;
  if (r.status === 'working') {
    return html`<section class="reconnect" aria-labelledby="reconnect-heading">
<h3 id="reconnect-heading">Reconnecting ${label}…</h3>
<div class="waiting" role="status" aria-live="polite">
<span class="spinner" aria-hidden="true"></span>
<p id="reconnect-text">${RECONNECT_WORKING_TEXT[r.step] ?? 'Working…'}</p>
</div>
</section>`;
  }
  if (r.step === 'reconnected') {
    return html`<div class="success" role="status" tabindex="-1" data-focus id="reconnected"><p><strong>${reconnectedMessage(r.resumed?.parked ?? 0)}</strong> ${label} works again.</p></div>`;
  }
  return problemBox(reconnectProblemMessage(r.problem, r.flow));
}

/** A channel Meta no longer accepts Switchboard's access to: what it means, and the Reconnect button. */
function reconnectNotice(view: PortalView, c: PortalChannel, label: string): SafeHtml {
  const following = view.reconnect?.channelId === c.id ? view.reconnect : undefined;
  return html`<div class="problem reconnect-notice" id="reconnect-${c.id}" data-channel-id="${c.id}">
<p class="problem-title">${label} needs to be reconnected — ${waitingReplies(c.parked)}.</p>
<p id="reconnect-${c.id}-why">Meta stopped accepting Switchboard's access to this account (a changed password or a removed permission does that). Your customers' messages are still collected; the assistant's replies wait and are sent, in order, once you reconnect.</p>
${
  !view.may.connect
    ? html`<p>Ask the owner or an admin of your business to reconnect it.</p>`
    : reconnectWorking(following)
      ? ''
      : html`<form method="post" action="/portal/reconnect">${csrfField(view.csrf)}<input type="hidden" name="channelId" value="${c.id}"><p><button type="submit" class="primary" aria-describedby="reconnect-${c.id}-why">Reconnect<span class="visually-hidden"> ${label}</span></button></p></form>`
}
</div>`;
}

function livePanel(view: PortalView): SafeHtml {
  const status = view.status!;
  const assets = status.assets ?? [];
  const channels: readonly PortalChannel[] =
    view.channels ?? status.channels.filter((c) => c.live).map((c) => ({ id: c.channelId, platform: c.platform, accountId: c.accountId, graphApi: 'facebook' as const, status: 'active' as const, parked: 0 }));
  const needing = channels.filter((c) => c.status === 'reauth_required');
  const followed = view.reconnect ? channels.find((c) => c.id === view.reconnect!.channelId) : undefined;
  return html`<h2 id="panel-heading">You're live</h2>
${followed ? reconnectBox(view, shortAccountLabel(assets, followed)) : ''}
${needing.map((c) => reconnectNotice(view, c, shortAccountLabel(assets, c)))}
<p class="success">Switchboard now answers your customers' messages on:</p>
<ul class="channels">
${channels.map((c) => {
  const name = pickerEntries(assets).find((e) => e.accountId === c.accountId)?.label;
  const state = c.status === 'reauth_required' ? html` — <strong>waiting to be reconnected</strong>` : c.status === 'disabled' ? html` — <strong>switched off</strong>` : '';
  return html`<li data-channel-id="${c.id}">${name ?? (c.platform === 'messenger' ? 'Messenger' : 'Instagram')} <span class="mono subtle">(${c.accountId})</span>${state}</li>`;
})}
</ul>
<p><a href="/dashboard">Open the dashboard</a> to watch conversations and how fast they are answered.</p>`;
}

function waitingPanel(view: PortalView): SafeHtml {
  const status = view.status;
  const text = status ? (WORKING_TEXT[status.step] ?? 'Working…') : UNAVAILABLE_MESSAGE;
  return html`<h2 id="panel-heading">${status ? 'Waiting for Meta…' : 'One moment…'}</h2>
<div class="waiting" role="status" aria-live="polite">
<span class="spinner" aria-hidden="true"></span>
<p id="waiting-text">${text}</p>
</div>
<p class="subtle">This page updates by itself. You can leave it open; nothing you've done will be lost.</p>`;
}

function endedPanel(view: PortalView): SafeHtml {
  const status = view.status!;
  const why =
    problemMessage(status.problem, status.flow) ??
    (status.step === 'abandoned'
      ? "The connection wasn't finished in time, so we paused your setup."
      : status.step === 'cancelled'
        ? 'Your setup was cancelled.'
        : 'Your setup stopped because of a problem on our side.');
  return html`<h2 id="panel-heading">Your setup is paused</h2>
${problemBox(why)}
${
  view.may.connect
    ? html`<form method="post" action="/portal/restart">${csrfField(view.csrf)}<p><button type="submit" class="primary">Start again</button></p></form>`
    : html`<p>Ask the owner or an admin of your business to start the setup again.</p>`
}`;
}

type PanelKind = 'waiting' | 'live' | 'ended' | 'picker' | 'configure' | 'connect';

function panelKind(status: OnboardingStatus | undefined): PanelKind {
  if (!status || status.status === 'working') return 'waiting';
  switch (status.step) {
    case 'live':
      return 'live';
    case 'abandoned':
    case 'failed':
    case 'cancelled':
      return 'ended';
    case 'selecting_assets':
      return 'picker';
    case 'configuring_assistant':
      return 'configure';
    case 'awaiting_oauth':
      return 'connect';
    default:
      return 'waiting';
  }
}

/** Is the page waiting for the saga (live updates on, a meta refresh without scripts)? */
export const isWorking = (status: OnboardingStatus | undefined): boolean => panelKind(status) === 'waiting';

/** …or for a reconnect it follows. */
export const isPageWorking = (view: Pick<PortalView, 'status' | 'reconnect'>): boolean => isWorking(view.status) || reconnectWorking(view.reconnect);

const PANELS: Record<PanelKind, (view: PortalView) => SafeHtml> = {
  waiting: waitingPanel,
  live: livePanel,
  ended: endedPanel,
  picker: pickerPanel,
  configure: configurePanel,
  connect: connectPanel,
};

/** The part of the page the live state replaces: the progress bar and the current step's panel. */
export function portalPanel(view: PortalView): SafeHtml {
  return html`${progress(view.status)}
<section class="panel" aria-labelledby="panel-heading">
${PANELS[panelKind(view.status)](view)}
</section>`;
}

export function portalPage(assets: PortalAssets, view: PortalView): string {
  const working = isPageWorking(view);
  return layout({
    title: 'Set up',
    assets,
    header: { businessName: view.businessName, csrf: view.csrf },
    refreshSeconds: working ? 2 : undefined,
    main: html`<h1>Set up ${view.businessName}</h1>
<div id="portal" data-key="${pageKey(view.status, view.reconnect?.status)}" data-working="${working ? 'yes' : 'no'}">
${portalPanel(view)}
</div>
<p id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="true"></p>`,
  });
}

/** A page for a refused callback or action: what happened and what to do next. */
export function noticePage(assets: PortalAssets, o: { title: string; message: string; action?: { href: string; label: string } }): string {
  return layout({
    title: o.title,
    assets,
    main: html`<h1>${o.title}</h1>
<div class="problem" role="alert" tabindex="-1" data-focus autofocus><p>${o.message}</p></div>
${o.action ? html`<p><a class="button-link" href="${o.action.href}">${o.action.label}</a></p>` : ''}`,
  });
}

export function statePage(assets: PortalAssets, problem: StateProblem): string {
  const p = STATE_PROBLEMS[problem];
  return noticePage(assets, { title: p.title, message: p.message, action: problem === 'signed_out' ? { href: '/portal/login', label: 'Sign in' } : { href: '/portal', label: 'Back to your setup' } });
}
