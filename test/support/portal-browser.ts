import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { onboardingWorkflowId } from '../../workflows/onboarding-definitions';
import { collectPageProblems, launchChromium, screenshot } from './browser';
import { eventually, startTestStack, type TestStack } from './stack';

/**
 * The onboarding portal driven in headless Chromium, as a business owner does it: sign up, tick
 * the checklist, connect through the sandbox's consent dialog, configure the assistant. Shared by
 * test/e2e/onboarding.browser.test.ts and test/e2e/reconnect.browser.test.ts.
 */

/** The sandbox's default persona (src/sandbox/oauth-store.ts): Page A, and the Instagram-Login account. */
export const SANDBOX_PAGE_ID = '104829376511820';
export const SANDBOX_IG_ACCOUNT = '17841469920315587';

export const CATALOG_CSV = 'sku,name,description,price,currency,stock\nRJ-1,Rain jacket,Waterproof jacket,89.90,EUR,4\nWB-2,Wool beanie,Merino wool,24.00,EUR,12\n';

/** Script errors and CSP violations among what a page reported. */
export const pageErrors = (problems: string[]): string[] => problems.filter((p) => p.startsWith('pageerror') || /Content Security Policy|Refused to/i.test(p));

/** What a browser suite runs on: the whole test stack, Chromium, and the portal driver on both. */
export interface PortalBrowserSuite {
  stack: TestStack;
  pb: PortalBrowser;
  /** The pages, then the browser, then the stack. */
  close(): Promise<void>;
}

/** Starts a browser suite's stack and Chromium; a browser that will not start takes the stack down with it. */
export async function startPortalBrowserSuite(): Promise<PortalBrowserSuite> {
  const stack = await startTestStack();
  let browser: Browser;
  try {
    browser = await launchChromium();
  } catch (err) {
    await stack.close();
    throw err;
  }
  const pb = new PortalBrowser(stack, browser);
  return {
    stack,
    pb,
    async close() {
      await pb.close();
      await browser.close();
      await stack.close();
    },
  };
}

export class PortalBrowser {
  private readonly contexts: BrowserContext[] = [];

  constructor(
    private readonly stack: TestStack,
    private readonly browser: Browser,
  ) {}

  async newPage(width = 1280, height = 900): Promise<{ page: Page; problems: string[] }> {
    const context = await this.browser.newContext({ viewport: { width, height } });
    this.contexts.push(context);
    const page = await context.newPage();
    return { page, problems: collectPageProblems(page) };
  }

  async close(): Promise<void> {
    for (const c of this.contexts) await c.close().catch(() => undefined);
  }

  /** Fills in the sign-up form; the browser lands on the setup page. */
  async signUp(page: Page, name: string, shot: string): Promise<void> {
    await page.goto(`${this.stack.gatewayUrl}/portal/signup`);
    const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    await page.getByLabel('Business name').fill(name);
    await page.getByLabel('Email').fill(`owner-${tag}@shop.example`);
    await page.getByLabel('Password').fill(`a long passphrase ${tag}`);
    await screenshot(page, `${shot}-01-sign-up`);
    await Promise.all([page.waitForURL(`${this.stack.gatewayUrl}/portal`), page.getByRole('button', { name: 'Create account' }).click()]);
  }

  /** Step 2: the buttons wait for the three boxes; then the chosen one leads to the sandbox's consent page, and Allow back. */
  async connect(page: Page, flow: 'facebook' | 'instagram', shot: string): Promise<void> {
    const button = page.getByRole('button', { name: flow === 'facebook' ? 'Connect with Facebook' : 'Connect with Instagram' });
    await button.waitFor({ timeout: 20_000 });
    expect(await page.locator('.progress [aria-current="step"]').textContent()).toContain('Connect Instagram or Facebook');
    expect(await button.isDisabled()).toBe(true);
    for (const label of ['business or creator', 'linked to a Facebook Page', 'admin of that Facebook Page']) await page.getByLabel(label).check();
    expect(await button.isEnabled()).toBe(true);
    await screenshot(page, `${shot}-02-checklist`);
    await Promise.all([page.waitForURL(`${this.stack.sandbox.url}/**`), button.click()]);
    await this.allow(page, `${shot}-03-consent`);
  }

  /** On the sandbox's consent page: Allow → the callback → back on the portal. */
  async allow(page: Page, shot: string): Promise<void> {
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    await screenshot(page, shot);
    await Promise.all([page.waitForURL(`${this.stack.gatewayUrl}/portal**`), page.getByRole('button', { name: 'Allow' }).click()]);
  }

  /** What the page shows, the last Graph calls and why the workflow's current activity keeps failing: a stuck run says where it is stuck. */
  async diagnose(page: Page, workflowId?: string): Promise<string> {
    const lines = [`the page shows: ${(await page.locator('main').innerText()).slice(0, 600)}`, 'last Graph calls:'];
    lines.push(...this.stack.sandbox.requests().slice(-12).map((r) => `  ${r.method} ${r.path} → ${r.status}`));
    try {
      const d = await this.stack.client.workflow.getHandle(workflowId ?? onboardingWorkflowId(await this.tenantOf(page))).describe();
      for (const a of d.raw.pendingActivities ?? []) {
        const failure = await decodeOptionalFailureToOptionalError(this.stack.client.workflow.options.loadedDataConverter, a.lastFailure);
        lines.push(`pending activity ${a.activityType?.name}, attempt ${a.attempt}: ${failure?.message ?? 'no failure yet'}`);
      }
    } catch (e) {
      lines.push(`(no workflow description: ${(e as Error).message})`);
    }
    return lines.join('\n');
  }

  /** The page reaches what `until` waits for by itself: a marker on the window survives only if it is never reloaded. */
  async followsLive(page: Page, until: () => Promise<unknown>, workflowId?: string): Promise<void> {
    await page.evaluate('window.__noReload = true');
    await until().catch(async (err: unknown) => {
      await screenshot(page, `failed-${Date.now()}`);
      throw new Error(`${(err as Error).message}\n${await this.diagnose(page, workflowId)}`);
    });
    expect(await page.evaluate('window.__noReload')).toBe(true);
  }

  /** Step 3: the assistant, with a catalog; then the page follows the saga to "You're live" by itself. */
  async configure(page: Page, shot: string): Promise<void> {
    await this.followsLive(page, () => page.getByRole('heading', { name: 'Set up your assistant' }).waitFor({ timeout: 30_000 }));
    expect(await page.locator('.progress [aria-current="step"]').textContent()).toContain('Set up your assistant');
    await page.getByLabel('How should the assistant sound?').fill('Warm and brief. Mentions prices in euros.');
    await page.getByLabel('Language it answers in').selectOption('en');
    await page.getByLabel(/Product catalog/).setInputFiles({ name: 'catalog.csv', mimeType: 'text/csv', buffer: Buffer.from(CATALOG_CSV) });
    await screenshot(page, `${shot}-05-assistant`);
    await Promise.all([page.waitForURL(`${this.stack.gatewayUrl}/portal`), page.getByRole('button', { name: 'Save and go live' }).click()]);
    await this.followsLive(page, () => page.getByRole('heading', { name: "You're live" }).waitFor({ timeout: 30_000 }));
    await screenshot(page, `${shot}-06-live`);
  }

  /** The tenant's active channel for the account, once there. */
  async channel(tenantId: string, accountId: string): Promise<{ id: string; status: string; webhook_subscribed: boolean | null }> {
    return eventually(async () => {
      const { rows } = await this.stack.db.ownerPool.query<{ id: string; status: string; webhook_subscribed: boolean | null }>(
        'SELECT id, status, webhook_subscribed FROM channels WHERE tenant_id = $1 AND account_id = $2',
        [tenantId, accountId],
      );
      return rows[0]?.status === 'active' ? rows[0] : undefined;
    });
  }

  async tenantOf(page: Page): Promise<string> {
    const res = await page.request.get(`${this.stack.gatewayUrl}/portal/status.json`);
    return ((await res.json()) as { tenantId: string }).tenantId;
  }
}
