import type { TestStack } from './stack';

/**
 * The portal over HTTP as a browser without JavaScript sees it: one cookie, redirects not
 * followed, its own client IP (the sign-in throttle counts per IP). For the reconnect tests;
 * test/integration/portal.test.ts keeps its own copy for the onboarding.
 */

let ipCounter = 0;

export class PortalVisitor {
  cookie = '';
  readonly ip = `198.51.100.${(++ipCounter % 250) + 1}`;

  constructor(private readonly stack: Pick<TestStack, 'gatewayUrl'>) {}

  async req(path: string, init: { method?: string; form?: Record<string, string | string[]>; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { 'x-forwarded-for': this.ip, ...init.headers };
    if (this.cookie) headers.cookie = this.cookie;
    let body: string | undefined;
    if (init.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(init.form)) for (const one of Array.isArray(v) ? v : [v]) params.append(k, one);
      body = params.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(`${this.stack.gatewayUrl}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    const set = res.headers.get('set-cookie');
    if (set) {
      const pair = set.split(';')[0]!;
      this.cookie = pair.endsWith('=') ? '' : pair;
    }
    return res;
  }

  /** Signs in through the portal's form. */
  async signIn(email: string, password: string): Promise<void> {
    const res = await this.req('/portal/login', { form: { email, password } });
    if (res.status !== 303) throw new Error(`portal sign-in failed: ${res.status}`);
  }

  /** The page's text as a reader sees it (entities decoded). */
  async text(path = '/portal'): Promise<string> {
    const res = await this.req(path);
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
    return decodeEntities(await res.text());
  }

  async csrf(path = '/portal'): Promise<string> {
    const m = /name="_csrf" value="([^"]+)"/.exec(await this.text(path));
    if (!m) throw new Error(`no CSRF token on ${path}`);
    return m[1]!;
  }

  async json<T = Record<string, unknown>>(path: string): Promise<T> {
    const res = await this.req(path);
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
    return (await res.json()) as T;
  }
}

export function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The page's visible text, roughly: tags dropped, whitespace collapsed. */
export function visibleText(html: string): string {
  return decodeEntities(html.replace(/<[^>]+>/g, ' ')).replace(/\s+/g, ' ').trim();
}
