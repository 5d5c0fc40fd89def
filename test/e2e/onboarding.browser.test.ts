import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { onboardingWorkflowId } from '../../workflows/onboarding-definitions';
import { collectPageProblems, launchChromium, screenshot } from '../support/browser';
import { ROOT } from '../support/paths';
import { eventually, startTestStack, type TestStack } from '../support/stack';
import { postWebhook, textDelivery } from '../support/webhooks';

/**
 * The whole self-service onboarding in headless Chromium, against the real stack (gateway →
 * Temporal → the onboarding saga on the real worker → PostgreSQL, the Graph sandbox as Meta with
 * its consent dialog): sign up, tick the checklist, connect through the sandbox's dialog (Allow),
 * pick the account, configure the assistant with a catalog, go live — for Facebook Login and for
 * Instagram Login — then a signed webhook to the new channel gets the assistant's answer at the
 * Send API. Each run's wall time is printed and written to test/artifacts/onboarding-timings.json
 * (the target: under 60 s of machine time); screenshots go to test/artifacts/screenshots/.
 */

const TIMINGS_FILE = path.join(ROOT, 'test', 'artifacts', 'onboarding-timings.json');
/** The bar for one onboarding, machine time. */
const TARGET_MS = 60_000;
/** The sandbox's default persona (src/sandbox/oauth-store.ts): Page A, and the Instagram-Login account. */
const PAGE_ID = '104829376511820';
const IG_ACCOUNT = '17841469920315587';

const CATALOG_CSV = 'sku,name,description,price,currency,stock\nRJ-1,Rain jacket,Waterproof jacket,89.90,EUR,4\nWB-2,Wool beanie,Merino wool,24.00,EUR,12\n';

interface Timing {
  flow: 'facebook' | 'instagram';
  /** Sign-up page opened → "You're live" shown. */
  onboardingMs: number;
  /** …→ the assistant's answer to the first customer message reached the Send API. */
  firstReplyMs: number;
  startedAt: string;
}

describe('self-service onboarding in a browser', () => {
  let stack: TestStack;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const timings: Timing[] = [];

  const pageErrors = (problems: string[]) => problems.filter((p) => p.startsWith('pageerror') || /Content Security Policy|Refused to/i.test(p));

  beforeAll(async () => {
    stack = await startTestStack();
    browser = await launchChromium();
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await stack?.close();
    if (timings.length > 0) {
      mkdirSync(path.dirname(TIMINGS_FILE), { recursive: true });
      writeFileSync(TIMINGS_FILE, `${JSON.stringify({ targetMs: TARGET_MS, recordedAt: new Date().toISOString(), runs: timings }, null, 2)}\n`);
    }
  });

  async function newPage(width = 1280, height = 900): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport: { width, height } });
    contexts.push(context);
    const page = await context.newPage();
    return { page, problems: collectPageProblems(page) };
  }

  /** Fills in the sign-up form; the browser lands on the setup page. */
  async function signUp(page: Page, name: string, shot: string) {
    await page.goto(`${stack.gatewayUrl}/portal/signup`);
    const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    await page.getByLabel('Business name').fill(name);
    await page.getByLabel('Email').fill(`owner-${tag}@shop.example`);
    await page.getByLabel('Password').fill(`a long passphrase ${tag}`);
    await screenshot(page, `${shot}-01-sign-up`);
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/portal`), page.getByRole('button', { name: 'Create account' }).click()]);
  }

  /** Step 2: the buttons wait for the three boxes; then the chosen one leads to the sandbox's consent page. */
  async function connect(page: Page, flow: 'facebook' | 'instagram', shot: string) {
    const button = page.getByRole('button', { name: flow === 'facebook' ? 'Connect with Facebook' : 'Connect with Instagram' });
    await button.waitFor({ timeout: 20_000 });
    expect(await page.locator('.progress [aria-current="step"]').textContent()).toContain('Connect Instagram or Facebook');
    expect(await button.isDisabled()).toBe(true);
    for (const label of ['business or creator', 'linked to a Facebook Page', 'admin of that Facebook Page']) await page.getByLabel(label).check();
    expect(await button.isEnabled()).toBe(true);
    await screenshot(page, `${shot}-02-checklist`);
    await Promise.all([page.waitForURL(`${stack.sandbox.url}/**`), button.click()]);
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    await screenshot(page, `${shot}-03-consent`);
    // Allow → the callback → back on the setup page, live while the saga talks to "Meta".
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/portal**`), page.getByRole('button', { name: 'Allow' }).click()]);
  }

  /** What the page shows, the last Graph calls and why the saga's current activity keeps failing: a stuck run says where it is stuck. */
  async function diagnose(page: Page): Promise<string> {
    const lines = [`the page shows: ${(await page.locator('main').innerText()).slice(0, 600)}`, 'last Graph calls:'];
    lines.push(...stack.sandbox.requests().slice(-12).map((r) => `  ${r.method} ${r.path} → ${r.status}`));
    try {
      const d = await stack.client.workflow.getHandle(onboardingWorkflowId(await tenantOf(page))).describe();
      for (const a of d.raw.pendingActivities ?? []) {
        const failure = await decodeOptionalFailureToOptionalError(stack.client.workflow.options.loadedDataConverter, a.lastFailure);
        lines.push(`pending activity ${a.activityType?.name}, attempt ${a.attempt}: ${failure?.message ?? 'no failure yet'}`);
      }
    } catch (e) {
      lines.push(`(no workflow description: ${(e as Error).message})`);
    }
    return lines.join('\n');
  }

  /** The page reaches what `until` waits for by itself: a marker on the window survives only if it is never reloaded. */
  async function followsLive(page: Page, until: () => Promise<unknown>) {
    await page.evaluate('window.__noReload = true');
    await until().catch(async (err: unknown) => {
      await screenshot(page, `failed-${Date.now()}`);
      throw new Error(`${(err as Error).message}\n${await diagnose(page)}`);
    });
    expect(await page.evaluate('window.__noReload')).toBe(true);
  }

  /** Step 3: the assistant, with a catalog; then the page follows the saga to "You're live" by itself. */
  async function configure(page: Page, shot: string) {
    await followsLive(page, () => page.getByRole('heading', { name: 'Set up your assistant' }).waitFor({ timeout: 30_000 }));
    expect(await page.locator('.progress [aria-current="step"]').textContent()).toContain('Set up your assistant');
    await page.getByLabel('How should the assistant sound?').fill('Warm and brief. Mentions prices in euros.');
    await page.getByLabel('Language it answers in').selectOption('en');
    await page.getByLabel(/Product catalog/).setInputFiles({ name: 'catalog.csv', mimeType: 'text/csv', buffer: Buffer.from(CATALOG_CSV) });
    await screenshot(page, `${shot}-05-assistant`);
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/portal`), page.getByRole('button', { name: 'Save and go live' }).click()]);
    await followsLive(page, () => page.getByRole('heading', { name: "You're live" }).waitFor({ timeout: 30_000 }));
    await screenshot(page, `${shot}-06-live`);
  }

  async function channel(tenantId: string, accountId: string) {
    return eventually(async () => {
      const { rows } = await stack.db.ownerPool.query<{ id: string; status: string; webhook_subscribed: boolean | null }>(
        'SELECT id, status, webhook_subscribed FROM channels WHERE tenant_id = $1 AND account_id = $2',
        [tenantId, accountId],
      );
      return rows[0]?.status === 'active' ? rows[0] : undefined;
    });
  }

  async function tenantOf(page: Page): Promise<string> {
    const res = await page.request.get(`${stack.gatewayUrl}/portal/status.json`);
    return ((await res.json()) as { tenantId: string }).tenantId;
  }

  /** A signed customer message to the new channel; resolves with the Send API call that answered it. */
  async function firstReply(body: string, customer: string) {
    expect((await postWebhook(stack.gatewayUrl, body)).status).toBe(200);
    return eventually(
      async () =>
        stack.sandbox.requests().find((r) => r.method === 'POST' && r.path.endsWith('/messages') && (r.body as { recipient?: { id?: string } } | undefined)?.recipient?.id === customer),
      30_000,
    );
  }

  function record(flow: Timing['flow'], started: number, startedAt: Date, live: number, replied: number) {
    const t: Timing = { flow, onboardingMs: live - started, firstReplyMs: replied - started, startedAt: startedAt.toISOString() };
    timings.push(t);
    console.log(`onboarding (${flow}): live after ${(t.onboardingMs / 1000).toFixed(1)} s, first reply after ${(t.firstReplyMs / 1000).toFixed(1)} s (target < ${TARGET_MS / 1000} s)`);
    expect(t.onboardingMs).toBeLessThan(TARGET_MS);
  }

  it('Facebook Login: sign up, checklist, consent (Allow), pick the Page, configure, live; the Page answers a signed webhook', async () => {
    const startedAt = new Date();
    const started = Date.now();
    const { page, problems } = await newPage();
    await signUp(page, 'Bergsport Berger', 'fb');
    await connect(page, 'facebook', 'fb');

    // Two Pages were shared: the picker, reached without a reload.
    await followsLive(page, () => page.getByRole('heading', { name: 'Choose the accounts Switchboard answers for' }).waitFor({ timeout: 30_000 }));
    const pageBox = page.getByLabel(/Messenger — Facebook Page “Bergsport Berger”/);
    await pageBox.check();
    await screenshot(page, 'fb-04-pick-accounts');
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/portal`), page.getByRole('button', { name: 'Connect the ticked accounts' }).click()]);
    await configure(page, 'fb');
    const live = Date.now();

    const tenantId = await tenantOf(page);
    const ch = await channel(tenantId, PAGE_ID);
    expect(ch.webhook_subscribed).toBe(true);
    const products = await stack.db.ownerPool.query('SELECT sku FROM products WHERE tenant_id = $1 ORDER BY sku', [tenantId]);
    expect(products.rows.map((r) => r.sku)).toEqual(['RJ-1', 'WB-2']);

    const customer = `72${Date.now() % 1_000_000_000}`;
    const reply = await firstReply(textDelivery({ pageId: PAGE_ID, customerId: customer, mid: `m_onb_fb_${Date.now()}`, text: 'Do you have the rain jacket?' }), customer);
    expect(reply.path).toBe(`/${stack.config.GRAPH_API_VERSION}/${PAGE_ID}/messages`);
    expect(JSON.stringify(reply.body)).toMatch(/Rain jacket/);
    record('facebook', started, startedAt, live, Date.now());

    // Readable on a phone: the live page reflows instead of scrolling sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    await screenshot(page, 'fb-07-live-phone');
    expect(pageErrors(problems)).toEqual([]);
  }, 120_000);

  it('Instagram Login: one professional account, so no picker; live, and it answers a signed Instagram webhook', async () => {
    const startedAt = new Date();
    const started = Date.now();
    const { page, problems } = await newPage(390, 844);
    await signUp(page, 'Atelier Lumen', 'ig');
    await connect(page, 'instagram', 'ig');
    await configure(page, 'ig');
    const live = Date.now();
    expect(await page.locator('.channels').textContent()).toContain(IG_ACCOUNT);

    const tenantId = await tenantOf(page);
    const ch = await channel(tenantId, IG_ACCOUNT);
    expect(ch.webhook_subscribed).toBe(true);

    const customer = `73${Date.now() % 1_000_000_000}`;
    const now = Date.now();
    const body = JSON.stringify({
      object: 'instagram',
      entry: [{ id: IG_ACCOUNT, time: now, messaging: [{ sender: { id: customer }, recipient: { id: IG_ACCOUNT }, timestamp: now, message: { mid: `m_onb_ig_${now}`, text: 'Do you have the rain jacket?' } }] }],
    });
    const reply = await firstReply(body, customer);
    expect(JSON.stringify(reply.body)).toMatch(/Rain jacket/);
    record('instagram', started, startedAt, live, Date.now());
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    expect(pageErrors(problems)).toEqual([]);
  }, 120_000);

  it('Cancel on the consent page brings the client back to step 2 with what to do', async () => {
    const { page, problems } = await newPage();
    await signUp(page, 'Cancelled Shop', 'cancel');
    const button = page.getByRole('button', { name: 'Connect with Facebook' });
    await button.waitFor({ timeout: 20_000 });
    for (const label of ['business or creator', 'linked to a Facebook Page', 'admin of that Facebook Page']) await page.getByLabel(label).check();
    await Promise.all([page.waitForURL(`${stack.sandbox.url}/**`), button.click()]);
    await Promise.all([page.waitForURL(`${stack.gatewayUrl}/portal**`), page.getByRole('button', { name: 'Cancel' }).click()]);
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: 20_000 });
    expect(await alert.textContent()).toContain('You cancelled the connection on Facebook. To connect, click the button again and choose Allow.');
    // Focus goes to the message, so a screen reader reads it first.
    expect(await page.evaluate('document.activeElement?.getAttribute("role")')).toBe('alert');
    await screenshot(page, 'cancel-01-back-to-step-2');
    expect(pageErrors(problems)).toEqual([]);
  }, 60_000);
});
