// Switchboard dashboard: reads /api/v1 with the session cookie and polls it (every POLL_MS).
// Every value from the API goes into the page as text (textContent / attributes), never as
// markup: customer messages are untrusted. The CSP (script-src 'self') backs this up.
'use strict';

(() => {
  const POLL_MS = 4000;
  const OVERVIEW_LIVE_TENANTS = 10;
  const METRICS_WINDOW = 30;
  const page = document.body.dataset.page;

  // ---- DOM helpers ---------------------------------------------------------------------------

  /** h('td', { class: 'x', 'data-field': 'y' }, 'text', childNode…): an element, text children as text. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'href') el.setAttribute('href', safeHref(value));
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** Same-site paths and http(s) URLs only: a `javascript:` URL from anywhere never becomes a link. */
  function safeHref(value) {
    const s = String(value);
    if (s.startsWith('/') && !s.startsWith('//')) return s;
    try {
      const url = new URL(s);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : '#';
    } catch {
      return '#';
    }
  }

  const $ = (selector, root) => (root || document).querySelector(selector);

  function announce(message) {
    const el = $('#announcer');
    if (el) el.textContent = message;
  }

  function showProblem(message) {
    const el = $('#problem');
    if (!el) return;
    el.hidden = !message;
    el.textContent = message || '';
  }

  // ---- time ----------------------------------------------------------------------------------

  function relative(iso) {
    const ms = Date.parse(iso) - Date.now();
    const abs = Math.abs(ms);
    const units = [
      [86_400_000, 'd'],
      [3_600_000, 'h'],
      [60_000, 'min'],
      [1000, 's'],
    ];
    if (abs < 5000) return 'just now';
    for (const [size, unit] of units) {
      if (abs >= size || unit === 's') {
        const n = Math.floor(abs / size);
        return ms < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
      }
    }
    return iso;
  }

  /** A <time> that says "12 s ago" (kept current by refreshTimes) with the exact time on hover. */
  function time(iso, fallback) {
    if (!iso) return h('span', { class: 'subtle' }, fallback || '—');
    return h('time', { datetime: iso, title: new Date(iso).toLocaleString(), 'data-relative': true }, relative(iso));
  }

  function refreshTimes() {
    for (const el of document.querySelectorAll('time[data-relative]')) el.textContent = relative(el.getAttribute('datetime'));
  }

  // ---- API -----------------------------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const res = await fetch(`/api/v1${path}`, { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (res.status === 401) {
      // The session ended: sign in again and come back here.
      location.assign(`/dashboard/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new ApiProblem(401, 'signed out');
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) throw new ApiProblem(res.status, (body && body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }

  /** A list answer, bare or paged (`{ items }`). */
  const listOf = (body) => (Array.isArray(body) ? body : (body && (body.items || body.data)) || []);

  /** Re-render a region only when its data changed, so focus and screen readers are not disturbed. */
  function renderIfChanged(container, data, render) {
    if (!container) return false;
    const signature = JSON.stringify(data);
    if (container.dataset.signature === signature) return false;
    container.dataset.signature = signature;
    container.replaceChildren(...[].concat(render(data)).filter((n) => n !== null && n !== undefined && n !== false));
    return true;
  }

  function sectionProblem(container, err) {
    if (!container) return;
    const text = err instanceof ApiProblem && err.status === 503 ? `Unavailable right now (${err.message}); retrying.` : `Could not load: ${err.message}`;
    renderIfChanged(container, { problem: text }, () => h('p', { class: 'problem' }, text));
  }

  // ---- live polling ----------------------------------------------------------------------------

  function poll(tick) {
    let running = false;
    const run = async () => {
      if (running || document.hidden) return;
      running = true;
      try {
        await tick();
        showProblem('');
        const updated = $('#updated');
        if (updated) updated.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (!(err instanceof ApiProblem && err.status === 401)) showProblem(`Live updates interrupted: ${err.message}. Retrying…`);
      } finally {
        running = false;
        refreshTimes();
      }
    };
    run();
    setInterval(run, POLL_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) run();
    });
  }

  // ---- channels --------------------------------------------------------------------------------

  const TOKEN_BADGE = {
    valid: ['ok', 'Token valid'],
    expiring: ['warn', 'Token expiring'],
    reauth_required: ['bad', 'Reauthorization required'],
    disabled: ['off', 'Disabled'],
  };

  function tokenBadge(health, channel) {
    const state = (health && health.token) || (channel.status === 'active' ? 'valid' : channel.status) || 'unknown';
    const [kind, label] = TOKEN_BADGE[state] || ['off', String(state)];
    return h('span', { class: `badge ${kind}`, 'data-state': state }, label);
  }

  function webhookBadge(health) {
    const subscribed = health ? health.webhookSubscribed : null;
    if (subscribed === true) return h('span', { class: 'badge ok' }, 'Subscribed');
    if (subscribed === false) return h('span', { class: 'badge bad' }, 'Not subscribed');
    return h('span', { class: 'badge off' }, 'Not checked');
  }

  const lastSeen = new Map(); // channel id → lastEventAt, to announce changes

  function renderChannels(container, channels) {
    for (const c of channels) {
      const health = c.health || {};
      const before = lastSeen.get(c.id);
      if (before !== undefined && before !== (health.lastEventAt || null)) announce(`New event on ${c.platform} channel ${c.accountId}.`);
      lastSeen.set(c.id, health.lastEventAt || null);
    }
    renderIfChanged(container, channels, () => {
      if (channels.length === 0) return h('p', { class: 'empty' }, 'No channels connected yet.');
      return h(
        'table',
        { class: 'stack-table' },
        h('caption', { class: 'visually-hidden' }, 'Channels and their health'),
        h('thead', {}, h('tr', {}, ['Channel', 'Token', 'Webhook', 'Last event'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          channels.map((c) => {
            const health = c.health || {};
            return h(
              'tr',
              { 'data-channel-id': c.id },
              h('th', { scope: 'row' }, h('span', {}, c.platform === 'instagram' ? 'Instagram' : 'Messenger'), ' ', h('span', { class: 'mono' }, c.accountId)),
              h(
                'td',
                { 'data-field': 'token', 'data-label': 'Token' },
                tokenBadge(health, c),
                health.tokenExpiresAt ? [' ', h('span', { class: 'subtle' }, 'expires '), time(health.tokenExpiresAt)] : null,
                c.statusReason ? h('div', { class: 'subtle' }, c.statusReason) : null,
              ),
              h('td', { 'data-field': 'webhook', 'data-label': 'Webhook' }, webhookBadge(health), health.webhookCheckedAt ? [' ', h('span', { class: 'subtle' }, 'checked '), time(health.webhookCheckedAt)] : null),
              h('td', { 'data-field': 'last-event', 'data-label': 'Last event' }, time(health.lastEventAt, 'never')),
            );
          }),
        ),
      );
    });
  }

  // ---- metrics ---------------------------------------------------------------------------------

  const ms = (v) => (v === null || v === undefined ? '—' : v >= 10_000 ? `${(v / 1000).toFixed(0)} s` : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`);

  function chart(series) {
    const NS = 'http://www.w3.org/2000/svg';
    const max = Math.max(1, ...series.map((p) => Math.max(p.inbound, p.repliesSent)));
    const width = series.length * 10;
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', `0 0 ${width} 100`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    const total = series.reduce((s, p) => s + p.inbound, 0);
    const peak = Math.max(0, ...series.map((p) => p.inbound));
    svg.setAttribute('aria-label', `Messages per minute over the last ${series.length} minutes: ${total} received, at most ${peak} in one minute.`);
    series.forEach((p, i) => {
      for (const [value, offset, cls] of [
        [p.inbound, 1, 'inbound'],
        [p.repliesSent, 5, 'replies'],
      ]) {
        if (!value) continue;
        const rect = document.createElementNS(NS, 'rect');
        const height = Math.max(2, (value / max) * 96);
        rect.setAttribute('x', String(i * 10 + offset));
        rect.setAttribute('y', String(100 - height));
        rect.setAttribute('width', '4');
        rect.setAttribute('height', String(height));
        rect.setAttribute('class', cls);
        svg.append(rect);
      }
    });
    return svg;
  }

  function renderMetrics(container, m) {
    const lastMinutes = m.series.slice(-5).reduce((s, p) => s + p.inbound, 0);
    const data = { totals: m.totals, latency: m.latency, series: m.series.map((p) => [p.inbound, p.repliesSent]) };
    renderIfChanged(container, data, () => [
      h(
        'dl',
        { class: 'stats' },
        [
          ['Received', String(m.totals.inbound), 'metric-inbound'],
          ['Last 5 min', String(lastMinutes), 'metric-recent'],
          ['Replies sent', String(m.totals.repliesSent), 'metric-replies'],
          ['Reply p50', ms(m.latency.p50Ms), 'metric-p50'],
          ['Reply p95', ms(m.latency.p95Ms), 'metric-p95'],
          ['Failed sends', String(m.totals.failedReplies), 'metric-failed'],
        ].map(([label, value, field]) => h('div', {}, h('dt', {}, label), h('dd', { 'data-field': field }, value))),
      ),
      chart(m.series),
      h('p', { class: 'legend' }, 'Per minute:', h('span', { class: 'swatch inbound', 'aria-hidden': 'true' }), 'received', h('span', { class: 'swatch replies', 'aria-hidden': 'true' }), 'replies sent'),
    ]);
  }

  // ---- workflows -------------------------------------------------------------------------------

  const STATUS_LABEL = { FAILED: 'Failed', TIMED_OUT: 'Timed out', TERMINATED: 'Terminated', RUNNING: 'Running' };

  function workflowItem(w, stuck) {
    const label = w.workflowId;
    return h(
      'li',
      { 'data-workflow-id': w.workflowId, 'data-run-id': w.runId },
      h('span', { class: `badge ${stuck ? 'warn' : 'bad'}` }, stuck ? 'Stuck' : STATUS_LABEL[w.status] || w.status),
      ' ',
      w.url ? h('a', { href: w.url, class: 'temporal-link', target: '_blank', rel: 'noopener noreferrer' }, label) : h('span', { class: 'mono' }, label),
      ' ',
      h(
        'span',
        { class: 'subtle' },
        `${w.type} · `,
        stuck ? `${w.reason === 'workflow_task_failing' ? 'workflow task' : w.activityType || 'activity'} at attempt ${w.attempt}${w.failureType ? ` (${w.failureType})` : ''}, started ` : 'closed ',
        time(stuck ? w.startedAt : w.closedAt),
      ),
    );
  }

  const problemCounts = new WeakMap(); // workflows region → failing + stuck, to announce changes

  function renderWorkflows(container, wf) {
    const count = wf.failing.length + wf.stuck.length;
    const before = problemCounts.get(container);
    if (before !== undefined && count !== before) announce(`${count} failing or stuck workflow${count === 1 ? '' : 's'}.`);
    problemCounts.set(container, count);
    const data = { failing: wf.failing, stuck: wf.stuck, running: wf.running, url: wf.temporalUiUrl, truncated: wf.truncated };
    renderIfChanged(container, data, () => [
      h(
        'p',
        {},
        `${wf.running} running. `,
        h('a', { href: wf.temporalUiUrl, class: 'temporal-list-link', target: '_blank', rel: 'noopener noreferrer' }, 'All of this tenant’s workflows in the Temporal UI'),
      ),
      count === 0
        ? h('p', { class: 'empty' }, 'No failing or stuck workflows in the last 24 hours.')
        : h('ul', { class: 'workflow-list' }, wf.stuck.map((w) => workflowItem(w, true)), wf.failing.map((w) => workflowItem(w, false))),
      wf.truncated ? h('p', { class: 'note' }, 'More workflows than shown: open the Temporal UI for the full list.') : null,
    ]);
  }

  // ---- notices (banner) ------------------------------------------------------------------------

  const PLATFORM_ACCOUNT = { instagram: 'Instagram account', messenger: 'Facebook Page' };

  function daysUntil(iso) {
    return Math.max(0, Math.ceil((Date.parse(iso) - Date.now()) / 86_400_000));
  }

  /** One line per open notice, in words a business owner understands, with the way out (the portal). */
  function noticeItem(n) {
    const account = `${PLATFORM_ACCOUNT[n.platform] || n.platform} ${n.accountId}`;
    let message;
    if (n.kind === 'reauth_required') {
      message = `${account} needs to be reconnected — replies are on hold${n.parkedReplies > 0 ? ` (${n.parkedReplies} parked)` : ''}`;
    } else if (n.expiresAt) {
      const days = daysUntil(n.expiresAt);
      message = `${account}: token expires ${days === 0 ? 'today' : `in ${days} day${days === 1 ? '' : 's'}`} — reconnect it to avoid an interruption`;
    } else {
      message = `${account}: token expires soon — reconnect it to avoid an interruption`;
    }
    return h(
      'p',
      { class: `notice ${n.level === 'critical' ? 'critical' : 'warning'}`, 'data-notice-id': n.id, 'data-kind': n.kind, 'data-channel-id': n.channelId },
      h('span', { class: 'notice-text' }, message),
      ' ',
      h('a', { href: '/portal', class: 'notice-action' }, 'Reconnect in the portal'),
    );
  }

  function renderNotices(container, notices) {
    // Only what the banner shows: the relative "in N days" is recomputed on every poll.
    const data = notices.map((n) => [n.id, n.kind, n.level, n.parkedReplies, n.expiresAt ? daysUntil(n.expiresAt) : null, n.accountId]);
    renderIfChanged(container, data, () => notices.map(noticeItem));
    container.hidden = notices.length === 0;
  }

  // ---- tenant sections -------------------------------------------------------------------------

  async function loadTenant(tenantId, regions) {
    const t = encodeURIComponent(tenantId);
    const jobs = [
      regions.notices && api(`/tenants/${t}/notices`).then((b) => renderNotices(regions.notices, listOf(b)), (e) => {
          sectionProblem(regions.notices, e);
          regions.notices.hidden = false;
        }),
      regions.channels && api(`/tenants/${t}/channels`).then((b) => renderChannels(regions.channels, listOf(b)), (e) => sectionProblem(regions.channels, e)),
      regions.metrics && api(`/tenants/${t}/metrics?window=${METRICS_WINDOW}`).then((m) => renderMetrics(regions.metrics, m), (e) => sectionProblem(regions.metrics, e)),
      regions.workflows && api(`/tenants/${t}/workflows`).then((w) => renderWorkflows(regions.workflows, w), (e) => sectionProblem(regions.workflows, e)),
      regions.conversations &&
        api(`/tenants/${t}/conversations?limit=20`).then((b) => renderConversations(regions.conversations, tenantId, listOf(b)), (e) => sectionProblem(regions.conversations, e)),
    ];
    await Promise.all(jobs.filter(Boolean));
  }

  function renderConversations(container, tenantId, conversations) {
    renderIfChanged(container, conversations, () => {
      if (conversations.length === 0) return h('p', { class: 'empty' }, 'No conversations yet.');
      return h(
        'table',
        { class: 'stack-table' },
        h('caption', { class: 'visually-hidden' }, 'Recent conversations'),
        h('thead', {}, h('tr', {}, ['Conversation', 'Platform', 'Handled by', 'Messages', 'Last message'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          conversations.map((c) =>
            h(
              'tr',
              { 'data-conversation-id': c.id },
              h('th', { scope: 'row' }, h('a', { href: `/dashboard/tenants/${encodeURIComponent(tenantId)}/conversations/${encodeURIComponent(c.id)}` }, c.customerId ? `Customer ${c.customerId}` : `Conversation ${String(c.id).slice(0, 8)}`)),
              h('td', { 'data-label': 'Platform' }, c.platform === 'instagram' ? 'Instagram' : 'Messenger'),
              h('td', { 'data-label': 'Handled by' }, c.state === 'human_active' ? h('span', { class: 'badge warn' }, 'Human agent') : h('span', { class: 'badge ok' }, 'Assistant')),
              h('td', { 'data-label': 'Messages' }, String(c.messageCount)),
              h('td', { 'data-label': 'Last message' }, time(c.lastMessageAt || c.lastInboundAt, '—')),
            ),
          ),
        ),
      );
    });
  }

  // ---- pages -----------------------------------------------------------------------------------

  function overview() {
    const root = $('#tenants');
    const cards = new Map();
    poll(async () => {
      const tenants = listOf(await api('/tenants?limit=200'));
      const live = tenants.slice(0, OVERVIEW_LIVE_TENANTS);
      renderIfChanged(root, tenants.map((t) => [t.id, t.name]), () => {
        cards.clear();
        if (tenants.length === 0) return h('p', { class: 'empty' }, 'No tenants yet.');
        const nodes = live.map((t) => {
          const regions = {
            channels: h('div', { class: 'table-wrap' }, h('p', { class: 'empty' }, 'Loading channels…')),
            metrics: h('div', {}, h('p', { class: 'empty' }, 'Loading metrics…')),
            workflows: h('div', {}, h('p', { class: 'empty' }, 'Loading workflows…')),
          };
          cards.set(t.id, regions);
          const headingId = `tenant-${t.id}`;
          return h(
            'article',
            { class: 'tenant-card', 'aria-labelledby': headingId, 'data-tenant-id': t.id },
            h('h3', { id: headingId }, h('a', { href: `/dashboard/tenants/${encodeURIComponent(t.id)}` }, t.name || t.id)),
            h('h4', { class: 'visually-hidden' }, 'Channels'),
            regions.channels,
            h('div', { class: 'row' }, h('section', {}, h('h4', {}, `Throughput (last ${METRICS_WINDOW} min)`), regions.metrics), h('section', {}, h('h4', {}, 'Failing and stuck workflows'), regions.workflows)),
          );
        });
        if (tenants.length > live.length) {
          nodes.push(
            h('h3', {}, 'More tenants'),
            h('ul', { class: 'more-tenants' }, tenants.slice(live.length).map((t) => h('li', {}, h('a', { href: `/dashboard/tenants/${encodeURIComponent(t.id)}` }, t.name || t.id)))),
          );
        }
        return nodes;
      });
      const noticesTenant = document.body.dataset.noticesTenantId;
      await Promise.all([
        ...[...cards].map(([id, regions]) => loadTenant(id, regions)),
        noticesTenant && $('#notices') ? loadTenant(noticesTenant, { notices: $('#notices') }) : null,
      ]);
    });
  }

  function tenant() {
    const tenantId = document.body.dataset.tenantId;
    const regions = { notices: $('#notices'), channels: $('#channels'), metrics: $('#metrics'), workflows: $('#workflows'), conversations: $('#conversations') };
    // The name is a nicety: the page works without it.
    api(`/tenants/${encodeURIComponent(tenantId)}`).then(
      (t) => {
        if (t && t.name) {
          $('#tenant-name').replaceChildren(document.createTextNode(t.name));
          document.title = `${t.name} · Switchboard`;
        }
      },
      () => undefined,
    );
    poll(() => loadTenant(tenantId, regions));
  }

  /** Outbound states that need the tenant's eye, labelled; the others show as their plain name. */
  const MESSAGE_STATUS = {
    parked: { label: 'Parked', badge: 'warn', cls: 'parked' },
    outside_window: { label: 'Expired', badge: 'off', cls: 'not-sent' },
    failed: { label: 'Failed', badge: 'bad', cls: 'not-sent' },
  };

  function messageItem(m) {
    const who = m.author === 'customer' ? 'Customer' : m.author === 'bot' ? 'Assistant' : m.author === 'human_agent' ? 'Agent' : m.author;
    const content = m.deleted
      ? h('p', { class: 'text redacted' }, 'Deleted by the customer')
      : m.redacted
        ? h('p', { class: 'text redacted' }, 'Content hidden for your role')
        : typeof m.text === 'string' && m.text !== ''
          ? h('p', { class: 'text' }, m.text)
          : h('p', { class: 'text redacted' }, `[${m.kind || 'message'}]`);
    // Attachment and story links are the customer's (and expire): named, not followed from here.
    const extras = [];
    if (Array.isArray(m.attachments) && m.attachments.length > 0) extras.push(`Attachments: ${m.attachments.map((a) => a.type).join(', ')}`);
    if (m.storyUrl) extras.push('Refers to a story');
    const status = Object.prototype.hasOwnProperty.call(MESSAGE_STATUS, m.status) ? MESSAGE_STATUS[m.status] : undefined;
    return h(
      'li',
      { class: `message ${m.direction === 'outbound' ? 'outbound' : 'inbound'}${status ? ` ${status.cls}` : ''}`, 'data-message-id': m.id, 'data-status': m.status },
      h('p', { class: 'meta' }, `${who} · ${m.kind || 'text'} · `, status ? h('span', { class: `badge ${status.badge}` }, status.label) : m.status || '', ' · ', time(m.sentAt || m.createdAt)),
      content,
      // Why a reply waits or was not sent (parked for reauthorization, window closed, failure): our wording, as text.
      m.statusReason ? h('p', { class: 'status-reason' }, m.statusReason) : null,
      extras.length > 0 ? h('p', { class: 'meta' }, extras.join(' · ')) : null,
    );
  }

  function conversation() {
    const { tenantId, conversationId } = document.body.dataset;
    const facts = $('#conversation');
    const list = $('#messages');
    const items = new Map();
    poll(async () => {
      let body;
      try {
        body = await api(`/tenants/${encodeURIComponent(tenantId)}/conversations/${encodeURIComponent(conversationId)}`);
      } catch (err) {
        if (err instanceof ApiProblem && err.status === 404) {
          renderIfChanged(facts, 'missing', () => [h('dt', {}, 'Status'), h('dd', {}, 'There is no such conversation.')]);
          return;
        }
        throw err;
      }
      const c = body.conversation;
      const messages = body.messages;
      renderIfChanged(facts, c, () =>
        [
          ['Platform', c.platform === 'instagram' ? 'Instagram' : 'Messenger'],
          ['Handled by', c.state === 'human_active' ? `a human agent${c.stateReason ? ` (${c.stateReason})` : ''}` : 'the assistant'],
          ['Customer', h('span', { class: 'mono' }, c.customerId)],
          ['Messages', String(c.messageCount)],
          ['Started', time(c.createdAt)],
          ['Last message', time(c.lastMessageAt, '—')],
          body.next ? ['Shown', `the latest ${messages.length} messages`] : undefined,
        ]
          .filter(Boolean)
          .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
      );
      if (items.size === 0) list.replaceChildren();
      if (messages.length === 0 && items.size === 0) list.replaceChildren(h('li', { class: 'empty' }, 'No messages.'));
      for (const m of messages) {
        const next = messageItem(m);
        const signature = JSON.stringify(m);
        const current = items.get(m.id);
        if (!current) {
          if (items.size === 0) list.replaceChildren();
          list.append(next);
          items.set(m.id, { el: next, signature });
        } else if (current.signature !== signature) {
          current.el.replaceWith(next);
          items.set(m.id, { el: next, signature });
        }
      }
    });
  }

  function table(caption, columns, rows) {
    if (rows.length === 0) return h('p', { class: 'empty' }, `${caption}: none.`);
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('caption', {}, caption),
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell))))),
      ),
    );
  }

  function renderKeyStatus(container, k) {
    const pending = k.pending.rewrap + k.pending.reencrypt;
    renderIfChanged(container, k, () => [
      h(
        'dl',
        { class: 'stats' },
        [
          ['Active master key', `v${k.activeMasterKeyVersion}`],
          ['Configured versions', k.configuredMasterKeyVersions.map((v) => `v${v}`).join(', ') || '—'],
          ['Data keys to rewrap', String(k.pending.rewrap)],
          ['Secrets to re-encrypt', String(k.pending.reencrypt)],
          ['Rotation policy', `every ${k.policy.maxAgeDays} days or ${k.policy.maxEncryptions.toLocaleString()} encryptions`],
          ['Data keys due for rotation', String(k.dueForRotation)],
        ].map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value))),
      ),
      h('p', {}, pending === 0 ? h('span', { class: 'badge ok' }, 'Up to date') : h('span', { class: 'badge warn' }, 'Rotation pending'), ' ', pending === 0 ? 'Every data key is wrapped by the active master key and every secret uses a current data key.' : 'Run the rotation below (or wait for the one running) to finish.'),
      table(
        'Master keys',
        ['Version', 'Data keys wrapped', 'Configured', 'Retired'],
        k.masterKeys.map((m) => [`v${m.version}`, String(m.dataKeys), m.configured ? 'yes' : 'no', m.retired ? 'yes' : 'no']),
      ),
      table(
        'Tenant data keys',
        ['Version', 'Tenants', 'Superseded', 'Encryptions', 'Oldest'],
        k.dataKeys.map((d) => [`v${d.version}`, String(d.tenants), String(d.superseded), String(d.encryptions), time(d.oldestCreatedAt, '—')]),
      ),
      tenantKeyTable(k.tenantDataKeys),
      table(
        'Stored secrets',
        ['Column', 'Per data key version', 'On superseded keys'],
        k.secrets.map((x) => [`${x.table}.${x.column}`, Object.entries(x.byDataKeyVersion).map(([v, n]) => `v${v}: ${n}`).join(', ') || '—', String(x.onSupersededKeys)]),
      ),
    ]);
  }

  /** Due keys first, then the oldest: the ones an operator looks for, bounded for many tenants. */
  const TENANT_KEY_ROWS = 50;
  function tenantKeyTable(all) {
    const sorted = all.slice().sort((a, b) => Number(b.due) - Number(a.due) || b.ageDays - a.ageDays);
    const shown = sorted.slice(0, TENANT_KEY_ROWS);
    return h(
      'div',
      {},
      table(
        'Data keys per tenant',
        ['Tenant', 'Version', 'Master key', 'Age (days)', 'Encryptions', 'State', 'Rotation'],
        shown.map((d) => [
          h('code', {}, d.tenantId),
          `v${d.version}`,
          `v${d.masterKeyVersion}`,
          String(d.ageDays),
          d.encryptions.toLocaleString(),
          d.superseded ? 'superseded' : 'current',
          d.due ? h('span', { class: 'badge warn' }, `due (${d.dueBecause.join(', ')})`) : '—',
        ]),
      ),
      sorted.length > shown.length ? h('p', { class: 'note' }, `${shown.length} of ${sorted.length} keys shown; npm run cli -- keys:status lists all.`) : null,
    );
  }

  function keys() {
    const container = $('#key-status');
    poll(async () => renderKeyStatus(container, await api('/platform/keys/status')));
  }

  function login() {
    const form = $('#login');
    const problem = $('#login-problem');
    const next = document.body.dataset.next || '/dashboard';
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      problem.hidden = true;
      const button = form.querySelector('button');
      button.disabled = true;
      try {
        const res = await fetch('/auth/login', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ email: form.email.value, password: form.password.value }),
        });
        if (res.ok) {
          location.assign(next);
          return;
        }
        const body = await res.json().catch(() => null);
        problem.textContent = res.status === 401 ? 'Wrong email or password.' : (body && body.error && body.error.message) || `Sign-in failed (HTTP ${res.status}).`;
        problem.hidden = false;
        form.password.focus();
      } catch {
        problem.textContent = 'The server could not be reached. Try again.';
        problem.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
  }

  function signOut() {
    const button = $('#sign-out');
    if (!button) return;
    button.addEventListener('click', async () => {
      try {
        const session = await fetch('/auth/session', { credentials: 'same-origin' }).then((r) => (r.ok ? r.json() : null));
        if (session && session.csrfToken) {
          await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin', headers: { 'x-csrf-token': session.csrfToken } });
        }
      } finally {
        location.assign('/dashboard/login');
      }
    });
  }

  signOut();
  const pages = { overview, tenant, conversation, keys, login };
  if (pages[page]) pages[page]();
})();
