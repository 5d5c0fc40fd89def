import { can, type Principal } from '../auth/permissions';
import { html, layout, type SafeHtml } from './html';

/**
 * The dashboard's pages: server-rendered shells (headings, landmarks, empty regions with their
 * labels) that `assets/dashboard.js` fills from /api/v1 and keeps current by polling. Nothing a
 * customer wrote is rendered here.
 */

export interface PageAssets {
  js: string;
  css: string;
}

function nav(principal: Principal, current: 'overview' | 'keys' | 'other'): SafeHtml {
  const who = principal.kind === 'operator' || principal.role === 'operator' ? 'platform operator' : `${principal.role} of tenant ${principal.tenantId}`;
  const link = (href: string, label: string, key: typeof current) =>
    html`<li><a href="${href}"${current === key ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return html`<header class="top">
<nav aria-label="Dashboard">
<p class="brand"><a href="/dashboard">Switchboard</a></p>
<ul>
${link('/dashboard', 'Overview', 'overview')}
${can(principal, 'keys.rotate') ? link('/dashboard/keys', 'Keys', 'keys') : ''}
</ul>
<p class="who">Signed in as <span class="role">${who}</span></p>
<button type="button" id="sign-out" class="link-button">Sign out</button>
</nav>
</header>`;
}

/**
 * The tenant's open notices (a channel to reconnect, a token about to expire), filled from
 * /api/v1/tenants/:id/notices at the top of the page; hidden while there are none.
 */
const noticesRegion = html`<section id="notices" class="notices" aria-label="Notices" aria-live="polite" hidden></section>`;

const liveStatus = html`<p class="live-status"><span id="updated" aria-live="off">Loading…</span></p>
<p id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="true"></p>
<p id="problem" class="problem" role="alert" hidden></p>`;

/** One tenant's live sections; the script fills them (also used, repeated, by the overview). */
function tenantSections(): SafeHtml {
  return html`<section aria-labelledby="channels-heading">
<h2 id="channels-heading">Channels</h2>
<div id="channels" class="table-wrap"><p class="empty">Loading channels…</p></div>
</section>
<section aria-labelledby="throughput-heading">
<h2 id="throughput-heading">Throughput and reply latency <span class="subtle">(last 30 minutes)</span></h2>
<div id="metrics"><p class="empty">Loading metrics…</p></div>
</section>
<section aria-labelledby="workflows-heading">
<h2 id="workflows-heading">Failing and stuck workflows</h2>
<div id="workflows"><p class="empty">Loading workflows…</p></div>
</section>`;
}

export function overviewPage(principal: Principal, assets: PageAssets): string {
  return layout({
    title: 'Overview',
    page: 'overview',
    assets,
    // A tenant user's overview shows its own tenant's notices too.
    data: principal.tenantId ? { 'notices-tenant-id': principal.tenantId } : {},
    nav: nav(principal, 'overview'),
    main: html`${principal.tenantId ? noticesRegion : ''}<h1>Overview</h1>
${liveStatus}
<section aria-labelledby="tenants-heading">
<h2 id="tenants-heading">Tenants</h2>
<div id="tenants"><p class="empty">Loading tenants…</p></div>
</section>`,
  });
}

export function tenantPage(principal: Principal, tenantId: string, assets: PageAssets): string {
  return layout({
    title: 'Tenant',
    page: 'tenant',
    data: { 'tenant-id': tenantId },
    assets,
    nav: nav(principal, 'other'),
    main: html`${noticesRegion}
<p class="crumbs"><a href="/dashboard">Overview</a> › Tenant</p>
<h1 id="tenant-name">Tenant <span class="mono">${tenantId}</span></h1>
${liveStatus}
${tenantSections()}
<section aria-labelledby="conversations-heading">
<h2 id="conversations-heading">Recent conversations</h2>
<div id="conversations" class="table-wrap"><p class="empty">Loading conversations…</p></div>
</section>`,
  });
}

export function conversationPage(principal: Principal, tenantId: string, conversationId: string, assets: PageAssets): string {
  return layout({
    title: 'Conversation',
    page: 'conversation',
    data: { 'tenant-id': tenantId, 'conversation-id': conversationId },
    assets,
    nav: nav(principal, 'other'),
    main: html`<p class="crumbs"><a href="/dashboard">Overview</a> › <a href="/dashboard/tenants/${tenantId}">Tenant</a> › Conversation</p>
<h1>Conversation <span class="mono">${conversationId}</span></h1>
${liveStatus}
<section aria-labelledby="conversation-heading">
<h2 id="conversation-heading" class="visually-hidden">Details</h2>
<dl id="conversation" class="facts"><dt>Loading…</dt><dd></dd></dl>
</section>
<section aria-labelledby="messages-heading">
<h2 id="messages-heading">Messages</h2>
${can(principal, 'conversations.read', tenantId) ? '' : html`<p class="note">Your role sees when messages were exchanged, not what they say.</p>`}
<ol id="messages" class="messages" aria-live="polite" aria-relevant="additions"><li class="empty">Loading messages…</li></ol>
</section>`,
  });
}

export function keysPage(principal: Principal, assets: PageAssets): string {
  return layout({
    title: 'Keys',
    page: 'keys',
    assets,
    nav: nav(principal, 'keys'),
    main: html`<h1>Encryption keys</h1>
${liveStatus}
<section aria-labelledby="key-status-heading">
<h2 id="key-status-heading">Key status</h2>
<div id="key-status"><p class="empty">Loading key status…</p></div>
</section>
<section aria-labelledby="rotation-heading">
<h2 id="rotation-heading">Rotation</h2>
<p>Rotation runs as a durable workflow (<code>key-rotation</code>) started from the operator CLI, so it survives restarts and is audited; this page shows its progress.</p>
<ol class="runbook">
<li>Prepend a new master key version to <code>MASTER_KEYS</code> (<code>2:&lt;new&gt;,1:&lt;old&gt;</code>) and restart the gateways and workers one by one.</li>
<li><code>npm run cli -- keys:rotate</code> rewraps every tenant data key under the new version; <code>--data-keys yes</code> also gives every tenant a new data key and re-encrypts its secrets.</li>
<li>Wait here for “Data keys to rewrap” to reach 0, then <code>npm run cli -- keys:retire --version 1</code>.</li>
<li>Remove the old key from <code>MASTER_KEYS</code> only after Temporal's retention period has passed.</li>
</ol>
<p>Tenant data keys also rotate on their own: the Temporal Schedule <code>data-key-rotation</code> (daily) gives every tenant whose key is “due” above a new one, through the same workflow.</p>
<p>The full runbook: <code>docs/security.md</code>, “Rotation runbook”.</p>
</section>`,
  });
}

export function loginPage(next: string, assets: PageAssets): string {
  return layout({
    title: 'Sign in',
    page: 'login',
    data: { next },
    assets,
    main: html`<h1>Sign in to the dashboard</h1>
<form id="login" class="login" method="post" action="/auth/login">
<input type="hidden" name="next" value="${next}">
<p><label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p id="login-problem" class="problem" role="alert" hidden></p>
<p><button type="submit">Sign in</button></p>
</form>`,
  });
}

export function errorPage(status: 403 | 404, message: string, principal: Principal | undefined, assets: PageAssets): string {
  const title = status === 403 ? 'Not allowed' : 'Not found';
  return layout({
    title,
    page: 'error',
    assets,
    ...(principal && { nav: nav(principal, 'other') }),
    main: html`<h1>${title}</h1>
<p>${message}</p>
<p><a href="/dashboard">Back to the overview</a></p>`,
  });
}
