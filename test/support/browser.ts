import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ROOT } from './paths';

/**
 * Headless Chromium for the dashboard's browser tests: Debian's `chromium` package driven by
 * `playwright-core` (no browser download). A machine without it fails the test with the fix in
 * the message — a skipped browser test would pass CI without ever running (.ci/run installs it).
 */

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join(ROOT, 'test', 'artifacts', 'screenshots');

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install Debian's package (sudo apt-get install -y --no-install-recommends chromium; .ci/run does) or point CHROMIUM_PATH at a Chromium binary`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--headless', '--no-sandbox'] });
}

/** A full-page screenshot under test/artifacts/screenshots (git-ignored, kept by CI as artifacts). */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Script errors and CSP violations a page reported: a dashboard page must have none. */
export function collectPageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  return problems;
}

export interface TemporalUiStandIn {
  url: string;
  /** Paths (with query) the browser requested. */
  requests: string[];
  close(): Promise<void>;
}

const escapeText = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The test stack's Temporal dev server runs without its Web UI, so `TEMPORAL_UI_URL` points here:
 * a stand-in that answers the UI's two routes the dashboard links to, from the real server — a
 * run's history page exists only if `describe` finds that very workflow id and run id, and says
 * its status; the list page echoes its visibility query. Following a dashboard link therefore
 * proves it names a real run, with the UI's URL scheme.
 */
export async function startTemporalUiStandIn(describe: (workflowId: string, runId: string) => Promise<{ status: string; type: string } | undefined>): Promise<TemporalUiStandIn> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      requests.push(url.pathname + url.search);
      const run = /^\/namespaces\/([^/]+)\/workflows\/([^/]+)\/([^/]+)\/history$/.exec(url.pathname);
      const list = /^\/namespaces\/([^/]+)\/workflows$/.exec(url.pathname);
      const page = (status: number, title: string, body: string) => {
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><title>${escapeText(title)}</title><h1>${escapeText(title)}</h1>${body}`);
      };
      if (run) {
        const [, namespace, workflowId, runId] = run.map((p) => decodeURIComponent(p ?? ''));
        const found = await describe(workflowId!, runId!).catch(() => undefined);
        if (!found) return page(404, 'Workflow not found', '');
        return page(200, `Workflow ${workflowId}`, `<p id="namespace">${escapeText(namespace!)}</p><p id="run-id">${escapeText(runId!)}</p><p id="status">${escapeText(found.status)}</p><p id="type">${escapeText(found.type)}</p>`);
      }
      if (list) return page(200, 'Workflows', `<p id="query">${escapeText(url.searchParams.get('query') ?? '')}</p>`);
      page(404, 'Not found', '');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
