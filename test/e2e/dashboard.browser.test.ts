import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Client, Connection } from '@temporalio/client';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { connectChannel } from '../../src/db/channels';
import { updateTenantSettings } from '../../src/db/tenant-settings';
import { createTenant } from '../../src/db/tenants';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { AesGcmPayloadCodec } from '../../src/temporal/payload-codec';
import { conversationWorkflowId } from '../../src/temporal/ids';
import { DASHBOARD_CSP } from '../../src/dashboard/router';
import { closeEpisodes } from '../../src/notifications/episodes';
import { noteTokenExpiring, requireReauth } from '../../src/notifications/reauth';
import { collectPageProblems, launchChromium, screenshot, startTemporalUiStandIn, type TemporalUiStandIn } from '../support/browser';
import { createTestAccount, eventually, signIn, startTestStack, type TestStack } from '../support/stack';
import { PAGE_A, PAGE_B, postWebhook, textDelivery } from '../support/webhooks';

/**
 * The dashboard in headless Chromium against the real stack (gateway → Temporal → worker →
 * PostgreSQL → Graph sandbox): sign in, watch a channel's health change live when a webhook
 * arrives, read the conversation, follow the Temporal UI link of a failing workflow; a viewer
 * cannot reach key rotation. Screenshots of each step go to test/artifacts/screenshots/.
 */

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const LIVE_UPDATE_MS = 6000;

describe('the dashboard in a browser', () => {
  let stack: TestStack;
  let ui: TemporalUiStandIn;
  let browser: Browser;
  let tenantId: string;
  let channelId: string;
  let admin: { email: string; password: string };
  let viewer: { email: string; password: string };
  let operator: { email: string; password: string };
  const contexts: BrowserContext[] = [];

  async function signedInPage(account: { email: string; password: string }, screenshotName?: string): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    const problems = collectPageProblems(page);
    await page.goto(`${stack.gatewayUrl}/dashboard`);
    // Signed out: the dashboard sends the browser to its sign-in page, and back after it.
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
    expect(new URL(page.url()).searchParams.get('next')).toBe('/dashboard');
    await page.getByLabel('Email').fill(account.email);
    await page.getByLabel('Password').fill(account.password);
    if (screenshotName) await screenshot(page, screenshotName);
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/dashboard`), page.getByRole('button', { name: 'Sign in' }).click()]);
    return { page, problems };
  }

  /** CSP refusals and script errors; failed requests the page shows as problems (a 404 while loading) are not errors of the page. */
  const pageErrors = (problems: string[]) => problems.filter((p) => p.startsWith('pageerror') || /Content Security Policy|Refused to/i.test(p));

  beforeAll(async () => {
    let client: Client | undefined;
    // Started before the stack (whose config names its URL); it asks the stack's Temporal client once that exists.
    ui = await startTemporalUiStandIn(async (workflowId, runId) => {
      const d = await client!.workflow.getHandle(workflowId, runId).describe();
      return d.runId === runId ? { status: d.status.name, type: d.type } : undefined;
    });
    // The conversation's run must still be open when the test terminates it, however slow the machine.
    stack = await startTestStack({ TEMPORAL_UI_URL: ui.url, CONVERSATION_IDLE_TIMEOUT_MS: '600000' });
    client = stack.client;
    tenantId = (await createTenant(stack.db.pool, 'Dashboard Shop')).id;
    channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_A, accessToken: 'EAAB-dashboard-token' })).id;
    await updateTenantSettings(stack.db.pool, stack.vault, tenantId, { debounceMs: 200, assistant: { businessName: 'Dashboard Shop' } }, { actor: { type: 'operator', id: 'test' } });
    admin = await createTestAccount(stack.db.pool, tenantId, 'admin');
    viewer = await createTestAccount(stack.db.pool, tenantId, 'viewer');
    operator = await createTestAccount(stack.db.pool, null, 'operator');
    browser = await launchChromium();
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await stack?.close();
    await ui?.close();
  });

  it('signed out, every page sends the browser to sign in; pages carry a strict CSP', async () => {
    for (const path of ['/dashboard', `/dashboard/tenants/${tenantId}`, '/dashboard/keys']) {
      const res = await fetch(`${stack.gatewayUrl}${path}`, { redirect: 'manual' });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe(`/dashboard/login?next=${encodeURIComponent(path)}`);
    }
    const login = await fetch(`${stack.gatewayUrl}/dashboard/login?next=${encodeURIComponent('https://evil.example/')}`);
    expect(login.status).toBe(200);
    expect(login.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    expect(DASHBOARD_CSP).toContain("script-src 'self'");
    const html = await login.text();
    // Never an open redirect after sign-in; never an inline script.
    expect(html).toContain('name="next" value="/dashboard"');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
  });

  it('a tenant admin sees the channel come alive after a webhook without reloading, reads the conversation and follows the Temporal UI link', async () => {
    const { page, problems } = await signedInPage(admin, '01-sign-in');
    const row = page.locator(`tr[data-channel-id="${channelId}"]`);
    const lastEvent = row.locator('[data-field="last-event"]');
    await lastEvent.getByText('never').waitFor();
    expect(await row.locator('[data-field="token"] .badge').textContent()).toBe('Token valid');
    // No key rotation for a tenant admin: no link.
    expect(await page.locator('a[href="/dashboard/keys"]').count()).toBe(0);
    await screenshot(page, '02-overview-before-webhook');

    // A marker on the window survives only if the page is never reloaded.
    await page.evaluate('window.__noReload = true');
    const customer = `70${Date.now() % 1_000_000_000}`;
    const text = 'Do you have the rain jacket? <img src=x onerror="window.__xss=1"><b>bold</b>';
    const res = await postWebhook(stack.gatewayUrl, textDelivery({ pageId: PAGE_A, customerId: customer, mid: `m_dash_${Date.now()}`, text }));
    expect(res.status).toBe(200);
    const sent = Date.now();
    // "never" gives way to the time of the event.
    await lastEvent.locator('time').waitFor({ timeout: LIVE_UPDATE_MS });
    const elapsed = Date.now() - sent;
    expect(elapsed).toBeLessThanOrEqual(LIVE_UPDATE_MS);
    expect(await lastEvent.locator('time').getAttribute('datetime')).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(await lastEvent.textContent()).not.toContain('never');
    await page.locator('[data-field="metric-inbound"]').getByText('1', { exact: true }).first().waitFor({ timeout: LIVE_UPDATE_MS });
    expect(await page.evaluate('window.__noReload')).toBe(true);
    await screenshot(page, '03-overview-after-webhook');

    // The tenant page lists the conversation; the conversation view shows the message as text.
    await Promise.all([page.waitForURL(`**/dashboard/tenants/${tenantId}`), page.getByRole('link', { name: 'Dashboard Shop' }).click()]);
    const conversationLink = page.locator('#conversations a[href*="/conversations/"]').first();
    await conversationLink.waitFor({ timeout: LIVE_UPDATE_MS });
    await screenshot(page, '04-tenant');
    await Promise.all([page.waitForURL('**/conversations/**'), conversationLink.click()]);
    const inbound = page.locator('.message.inbound .text').first();
    await inbound.waitFor();
    expect(await inbound.textContent()).toBe(text);
    // The customer's markup stayed text: no element, no script ran.
    expect(await page.locator('.messages img, .messages b').count()).toBe(0);
    expect(await page.evaluate('window.__xss')).toBeUndefined();
    // The assistant's answer appears live too.
    await page.locator('.message.outbound .text').first().waitFor({ timeout: 30_000 });
    await screenshot(page, '05-conversation');

    // A run that ends badly is listed as failing, with a link to that very run in the Temporal UI.
    const workflowId = conversationWorkflowId(tenantId, channelId, customer);
    const handle = stack.client.workflow.getHandle(workflowId);
    const { runId } = await handle.describe();
    await handle.terminate('dashboard test: an operator stopped it');
    await page.goBack();
    await page.waitForURL(`**/dashboard/tenants/${tenantId}`);
    const item = page.locator(`#workflows li[data-workflow-id="${workflowId}"]`);
    await item.waitFor({ timeout: 15_000 });
    const link = item.locator('a.temporal-link');
    expect(await link.getAttribute('href')).toBe(`${ui.url}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`);
    expect(await item.locator('.badge').textContent()).toBe('Terminated');
    expect(await page.locator('#workflows a.temporal-list-link').getAttribute('href')).toBe(`${ui.url}/namespaces/default/workflows?query=${encodeURIComponent(`TenantId="${tenantId}"`)}`);
    expect(await page.locator('#workflows').textContent()).not.toMatch(/null|undefined/);
    await screenshot(page, '06-failing-workflows');

    const [temporalPage] = await Promise.all([page.context().waitForEvent('page'), link.click()]);
    await temporalPage.waitForLoadState();
    expect(await temporalPage.locator('h1').textContent()).toBe(`Workflow ${workflowId}`);
    expect(await temporalPage.locator('#run-id').textContent()).toBe(runId);
    expect(await temporalPage.locator('#status').textContent()).toBe('TERMINATED');
    await screenshot(temporalPage, '07-temporal-ui-run');
    expect(pageErrors(problems)).toEqual([]);
  }, 120_000);

  it('a viewer sees no key rotation link and gets 403 at /dashboard/keys; an operator gets the keys page', async () => {
    const { page, problems } = await signedInPage(viewer);
    await page.locator(`tr[data-channel-id="${channelId}"]`).waitFor();
    expect(await page.locator('a[href="/dashboard/keys"]').count()).toBe(0);
    await screenshot(page, '08-viewer-overview');
    // Readable on a phone: the page reflows instead of scrolling sideways (wide tables scroll in their own box).
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    await screenshot(page, '08-viewer-overview-phone');
    const res = await page.goto(`${stack.gatewayUrl}/dashboard/keys`);
    expect(res!.status()).toBe(403);
    expect(await page.locator('h1').textContent()).toBe('Not allowed');
    expect(await page.locator('main').textContent()).toContain('keys.rotate');
    await screenshot(page, '09-viewer-keys-403');
    expect(pageErrors(problems)).toEqual([]);

    const op = await signedInPage(operator);
    const keysLink = op.page.locator('a[href="/dashboard/keys"]');
    expect(await keysLink.count()).toBe(1);
    await Promise.all([op.page.waitForURL('**/dashboard/keys'), keysLink.click()]);
    await op.page.getByRole('heading', { name: 'Encryption keys' }).waitFor();
    await op.page.locator('#key-status :is(table, dl)').first().waitFor({ timeout: LIVE_UPDATE_MS });
    await screenshot(op.page, '10-operator-keys');
    expect(pageErrors(op.problems)).toEqual([]);
  });

  it('open notices show as a banner on a tenant user\'s overview and the tenant page, live, and go when resolved', async () => {
    // The episodes as requireReauth / noteTokenExpiring leave them; the e-mail side is tested in test/integration/notifications.test.ts.
    const quiet = { start: async () => undefined };
    const deadId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_B, accessToken: 'EAAB-dashboard-token-b' })).id;
    await requireReauth(stack.db.pool, quiet, createLogger('test', 'silent'), { tenantId, channelId: deadId, reason: 'GraphAuthExpired (code 190)' });
    const conversation = await stack.db.ownerPool.query<{ id: string }>('INSERT INTO conversations (tenant_id, channel_id, customer_id) VALUES ($1, $2, $3) RETURNING id', [tenantId, deadId, '7291845503619911']);
    for (let i = 0; i < 2; i++) {
      await stack.db.ownerPool.query(
        "INSERT INTO messages (tenant_id, channel_id, conversation_id, direction, author, kind, status, error) VALUES ($1, $2, $3, 'outbound', 'bot', 'text', 'parked', '{}')",
        [tenantId, deadId, conversation.rows[0]!.id],
      );
    }

    const { page, problems } = await signedInPage(admin);
    const critical = page.locator('#notices .notice.critical');
    await critical.waitFor({ timeout: LIVE_UPDATE_MS });
    expect(await critical.locator('.notice-text').textContent()).toBe(`Facebook Page ${PAGE_B} needs to be reconnected — replies are on hold (2 parked)`);
    expect(await critical.locator('a').getAttribute('href')).toBe('/portal');

    await page.goto(`${stack.gatewayUrl}/dashboard/tenants/${tenantId}`);
    await critical.waitFor({ timeout: LIVE_UPDATE_MS });
    // A token about to expire appears without a reload, below the critical one.
    await noteTokenExpiring(stack.db.pool, quiet, { tenantId, channelId, level: 'warning', reason: 'token expires soon', expiresAt: new Date(Date.now() + 3 * 86_400_000 - 60_000) });
    const warning = page.locator('#notices .notice.warning');
    await warning.waitFor({ timeout: LIVE_UPDATE_MS });
    expect(await warning.locator('.notice-text').textContent()).toBe(`Facebook Page ${PAGE_A}: token expires in 3 days — reconnect it to avoid an interruption`);
    await screenshot(page, '11-tenant-notices');

    // Resolved (the reconnect closes the episodes): the banner goes.
    await closeEpisodes(stack.db.pool, tenantId, deadId, ['reauth_required'], 'reconnected');
    await closeEpisodes(stack.db.pool, tenantId, channelId, ['token_expiring'], 'refreshed');
    await page.locator('#notices').waitFor({ state: 'hidden', timeout: LIVE_UPDATE_MS });
    expect(await page.locator('#notices .notice').count()).toBe(0);
    expect(pageErrors(problems)).toEqual([]);
  }, 60_000);
});

/**
 * The two endpoints the dashboard adds to /api/v1, on a tenant of their own (exact counts): the
 * metrics computed from PostgreSQL, the workflows read from Temporal visibility.
 */
describe('the dashboard API: metrics and workflows', () => {
  let stack: TestStack;
  let tenantId: string;
  let channelId: string;
  let otherTenantId: string;
  let admin: { email: string; password: string };
  const customer = `71${Date.now() % 1_000_000_000}`;

  const get = (path: string, cookie: string) => fetch(`${stack.gatewayUrl}/api/v1${path}`, { headers: { cookie } });

  beforeAll(async () => {
    stack = await startTestStack();
    tenantId = (await createTenant(stack.db.pool, 'Metrics Shop')).id;
    otherTenantId = (await createTenant(stack.db.pool, 'Another Shop')).id;
    channelId = (await connectChannel(stack.db.pool, stack.vault, { tenantId, platform: 'messenger', accountId: PAGE_B, accessToken: 'EAAB-metrics-token' })).id;
    await updateTenantSettings(stack.db.pool, stack.vault, tenantId, { debounceMs: 200 }, { actor: { type: 'operator', id: 'test' } });
    admin = await createTestAccount(stack.db.pool, tenantId, 'admin');
    expect((await postWebhook(stack.gatewayUrl, textDelivery({ pageId: PAGE_B, customerId: customer, mid: `m_metrics_${Date.now()}`, text: 'Do you have the rain jacket?' }))).status).toBe(200);
    // The bot's answer is stored as sent (read as the schema owner: this is the test looking).
    await eventually(async () => {
      const { rows } = await stack.db.ownerPool.query("SELECT 1 FROM messages WHERE tenant_id = $1 AND author = 'bot' AND sent_at IS NOT NULL", [tenantId]);
      return rows.length === 1;
    }, 30_000);
  });
  afterAll(() => stack?.close());

  it('metrics count the message and the reply per minute and report the bot reply latency', async () => {
    const { cookie } = await signIn(stack.gatewayUrl, admin.email, admin.password);
    const res = await get(`/tenants/${tenantId}/metrics?window=15`, cookie);
    expect(res.status).toBe(200);
    const m = (await res.json()) as Json;
    expect(m.series).toHaveLength(15);
    expect(m.totals).toEqual({ inbound: 1, repliesSent: 1, botReplies: 1, humanReplies: 0, failedReplies: 0 });
    expect(m.series.reduce((s: number, p: Json) => s + p.inbound, 0)).toBe(1);
    expect(m.series.reduce((s: number, p: Json) => s + p.repliesSent, 0)).toBe(1);
    // Latency = the reply's sent_at minus the inbound message's created_at, as stored.
    const { rows } = await stack.db.ownerPool.query<{ ms: number }>(
      `SELECT (extract(epoch FROM (o.sent_at - i.created_at)) * 1000)::float8 AS ms
       FROM messages o JOIN messages i ON i.id = o.in_reply_to WHERE o.tenant_id = $1 AND o.author = 'bot'`,
      [tenantId],
    );
    expect(m.latency).toEqual({ samples: 1, p50Ms: Math.round(rows[0]!.ms), p95Ms: Math.round(rows[0]!.ms), maxMs: Math.round(rows[0]!.ms) });
    expect(m.latency.p50Ms).toBeGreaterThan(0);

    // Nothing of this tenant shows in another's numbers (the operator may read both).
    const op = await createTestAccount(stack.db.pool, null, 'operator');
    const opCookie = (await signIn(stack.gatewayUrl, op.email, op.password)).cookie;
    const other = (await (await get(`/tenants/${otherTenantId}/metrics?window=15`, opCookie)).json()) as Json;
    expect(other.totals).toEqual({ inbound: 0, repliesSent: 0, botReplies: 0, humanReplies: 0, failedReplies: 0 });
    expect(other.latency).toEqual({ samples: 0, p50Ms: null, p95Ms: null, maxMs: null });
    // …and a tenant admin cannot ask for another tenant's.
    expect((await get(`/tenants/${otherTenantId}/metrics`, cookie)).status).toBe(404);
    const bad = await get(`/tenants/${tenantId}/metrics?window=0`, cookie);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as Json).error.code).toBe('invalid_request');
  });

  it('workflows lists a terminated run as failing with its Temporal UI link; a role without conversations.read gets it masked and unlinked', async () => {
    const workflowId = conversationWorkflowId(tenantId, channelId, customer);
    const handle = stack.client.workflow.getHandle(workflowId);
    const { runId } = await handle.describe();
    await handle.terminate('dashboard test');
    const ui = stack.config.TEMPORAL_UI_URL.replace(/\/+$/, '');

    const { cookie } = await signIn(stack.gatewayUrl, admin.email, admin.password);
    const body = await eventually(async () => {
      const json = (await (await get(`/tenants/${tenantId}/workflows`, cookie)).json()) as Json;
      return json.failing?.length > 0 ? json : undefined;
    }, 10_000);
    expect(body.failing).toEqual([
      { workflowId, runId, type: 'conversationWorkflow', status: 'TERMINATED', startedAt: expect.any(String), closedAt: expect.any(String), url: `${ui}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history` },
    ]);
    expect(body).toMatchObject({ tenantId, running: 0, stuck: [], truncated: false, temporalUiUrl: `${ui}/namespaces/default/workflows?query=${encodeURIComponent(`TenantId="${tenantId}"`)}` });

    const developer = await createTestAccount(stack.db.pool, tenantId, 'developer');
    const devCookie = (await signIn(stack.gatewayUrl, developer.email, developer.password)).cookie;
    const masked = (await (await get(`/tenants/${tenantId}/workflows`, devCookie)).json()) as Json;
    expect(masked.failing).toHaveLength(1);
    expect(masked.failing[0].url).toBeNull();
    expect(masked.failing[0].workflowId).toBe(`conversation/${tenantId}/${channelId}/***${customer.slice(-4)}`);
    expect(JSON.stringify(masked)).not.toContain(customer);
  });

  it('workflows lists a run whose send keeps failing as stuck (activity at attempt 3+), with the failure type and a link', async () => {
    const who = `72${Date.now() % 1_000_000_000}`;
    // Meta answers 500 to every send for a while: the send activity retries with backoff (1 s, 2 s, …).
    stack.sandbox.failNext({ count: 50, preset: 'server_error', match: '/messages' });
    try {
      expect((await postWebhook(stack.gatewayUrl, textDelivery({ pageId: PAGE_B, customerId: who, mid: `m_stuck_${Date.now()}`, text: 'hello?' }))).status).toBe(200);
      const workflowId = conversationWorkflowId(tenantId, channelId, who);
      const { cookie } = await signIn(stack.gatewayUrl, admin.email, admin.password);
      const stuck = await eventually(async () => {
        const json = (await (await get(`/tenants/${tenantId}/workflows`, cookie)).json()) as Json;
        return (json.stuck as Json[] | undefined)?.find((w) => w.workflowId === workflowId);
      }, 20_000, 500);
      const { runId } = await stack.client.workflow.getHandle(workflowId).describe();
      expect(stuck).toMatchObject({ runId, type: 'conversationWorkflow', status: 'RUNNING', reason: 'activity_retrying', activityType: 'sendOutbound', failureType: 'GraphTransient' });
      expect(stuck.attempt).toBeGreaterThanOrEqual(3);
      expect(stuck.url).toBe(`${stack.config.TEMPORAL_UI_URL.replace(/\/+$/, '')}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`);
      await stack.client.workflow.getHandle(workflowId).terminate('dashboard test: stuck on purpose');
    } finally {
      stack.sandbox.reset();
    }
  }, 40_000);

  it('workflows answers 503 with a JSON error when Temporal is unreachable', async () => {
    // A gateway on the same database whose Temporal client points at a closed port.
    const connection = Connection.lazy({ address: '127.0.0.1:1', connectTimeout: 500 });
    const codec = await AesGcmPayloadCodec.fromKeyProvider(stack.keys);
    const app = createGatewayApp({
      config: { ...stack.config, TEMPORAL_RPC_TIMEOUT_MS: 1000 },
      pool: stack.db.pool,
      temporal: { client: new Client({ connection }), connection },
      codec,
      logger: createLogger('test', 'silent'),
    });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { cookie } = await signIn(url, admin.email, admin.password);
      const res = await fetch(`${url}/api/v1/tenants/${tenantId}/workflows`, { headers: { cookie } });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: { code: 'temporal_unavailable', message: expect.stringMatching(/Temporal did not answer/) } });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await connection.close().catch(() => undefined);
    }
  });
});
