import { randomBytes } from 'node:crypto';
import { connectChannel } from '../../src/db/channels';
import { createTenant } from '../../src/db/tenants';
import { onboardingWorkflowId, type OnboardingStatus } from '../../workflows/onboarding-definitions';
import { createTestAccount, eventually, startTestStack, type TestStack } from '../support/stack';

/**
 * The onboarding portal over HTTP against the real stack (gateway → Temporal → the onboarding
 * saga on the real worker → PostgreSQL, the Graph sandbox as Meta): sign-up is idempotent, the
 * checklist gates the connect button, every post needs the session's CSRF token, the OAuth
 * callback's `state` is bound to the session and the tenant and works once, and a cancelled
 * consent brings the client back to step 2 with a message. A refused callback never reaches the
 * saga: its history does not grow.
 */

type Status = OnboardingStatus & { key: string; problem: { code: string; message: string } | null };

let stack: TestStack;
let ipCounter = 0;

/** A browser without JavaScript: one cookie, redirects not followed, its own client IP. */
class Visitor {
  cookie = '';
  readonly ip = `203.0.113.${++ipCounter}`;

  async req(path: string, init: { method?: string; form?: Record<string, string | string[]>; headers?: Record<string, string>; body?: string | FormData } = {}): Promise<Response> {
    const headers: Record<string, string> = { 'x-forwarded-for': this.ip, ...init.headers };
    if (this.cookie) headers.cookie = this.cookie;
    let body = init.body;
    if (init.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(init.form)) for (const one of Array.isArray(v) ? v : [v]) params.append(k, one);
      body = params.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(`${stack.gatewayUrl}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    const set = res.headers.get('set-cookie');
    if (set) {
      const pair = set.split(';')[0]!;
      this.cookie = pair.endsWith('=') ? '' : pair;
    }
    return res;
  }

  async page(path = '/portal'): Promise<string> {
    const res = await this.req(path);
    expect(res.status).toBe(200);
    return res.text();
  }

  async csrf(): Promise<string> {
    const m = /name="_csrf" value="([^"]+)"/.exec(await this.page());
    if (!m) throw new Error('no CSRF token on the setup page');
    return m[1]!;
  }

  async status(): Promise<Status> {
    const res = await this.req('/portal/status.json');
    expect(res.status).toBe(200);
    return (await res.json()) as Status;
  }
}

/** The page's text as a reader sees it (the pages escape ' and " in text too). */
const decoded = async (res: Response) => (await res.text()).replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

const CHECKED = { req_professional: 'yes', req_page: 'yes', req_admin: 'yes' };

function newBusiness() {
  const tag = randomBytes(4).toString('hex');
  return { businessName: `Shop ${tag}`, email: `owner-${tag}@shop.example`, password: `a long passphrase ${tag}` };
}

async function signUp(fields = newBusiness()): Promise<{ visitor: Visitor; tenantId: string; fields: typeof fields }> {
  const visitor = new Visitor();
  const res = await visitor.req('/portal/signup', { form: fields });
  expect(res.status).toBe(303);
  expect(res.headers.get('location')).toBe('/portal');
  const status = await eventually(async () => {
    const s = await visitor.status();
    return s.step === 'awaiting_oauth' ? s : undefined;
  });
  return { visitor, tenantId: status.tenantId, fields };
}

/** Presses "Connect with …" with every box ticked: the dialog URL the portal redirects to. */
async function connect(visitor: Visitor, flow: 'facebook' | 'instagram' = 'facebook'): Promise<URL> {
  const res = await visitor.req(`/portal/connect?flow=${flow}`, { form: { _csrf: await visitor.csrf(), ...CHECKED } });
  expect(res.status).toBe(303);
  return new URL(res.headers.get('location')!);
}

const historyLength = async (tenantId: string) => (await stack.client.workflow.getHandle(onboardingWorkflowId(tenantId)).fetchHistory()).events!.length;
const oauthStates = async (tenantId: string) => (await stack.db.ownerPool.query('SELECT used_at FROM oauth_states WHERE tenant_id = $1', [tenantId])).rows as Array<{ used_at: Date | null }>;
const auditRows = async (tenantId: string | null, action: string) =>
  (await stack.db.ownerPool.query<{ outcome: string; reason: string | null; actor_type: string; details: Record<string, unknown> }>('SELECT outcome, reason, actor_type, details FROM audit_events WHERE tenant_id IS NOT DISTINCT FROM $1 AND action = $2 ORDER BY id', [tenantId, action])).rows;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack?.close());

describe('sign-up', () => {
  it('creates the tenant, its owner, a session and one onboarding saga; the same sign-up again signs in to the same tenant', async () => {
    const fields = newBusiness();
    const { visitor, tenantId } = await signUp(fields);
    expect(visitor.cookie).toMatch(/^sb_session=/);
    const tenants = await stack.db.ownerPool.query('SELECT id FROM tenants WHERE name = $1', [fields.businessName]);
    expect(tenants.rows).toEqual([{ id: tenantId }]);
    const users = await stack.db.ownerPool.query('SELECT tenant_id, role FROM tenant_users WHERE email = $1', [fields.email]);
    expect(users.rows).toEqual([{ tenant_id: tenantId, role: 'owner' }]);
    expect((await auditRows(tenantId, 'tenant.created')).map((r) => r.actor_type)).toEqual(['tenant_user']);

    // A retry (double click, timed-out request) and two at once: no second tenant, no second saga.
    const again = new Visitor();
    const res = await again.req('/portal/signup', { form: fields });
    expect(res.status).toBe(303);
    const both = await Promise.all([new Visitor(), new Visitor()].map(async (v) => ({ v, res: await v.req('/portal/signup', { form: fields }) })));
    for (const { res: r } of both) expect(r.status).toBe(303);
    for (const v of [again, ...both.map((b) => b.v)]) expect((await v.status()).tenantId).toBe(tenantId);
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM tenants WHERE name = $1', [fields.businessName])).rows[0].n).toBe(1);
    const runs: string[] = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = '${onboardingWorkflowId(tenantId)}'` })) runs.push(w.runId);
    expect(runs).toHaveLength(1);
  });

  it('refuses an existing email with another password, bad fields with what to fix, and a form posted from another site', async () => {
    const { fields } = await signUp();
    const other = new Visitor();
    const taken = await other.req('/portal/signup', { form: { ...fields, businessName: 'Impostor', password: 'another long passphrase' } });
    expect(taken.status).toBe(409);
    expect(await taken.text()).toContain('An account with this email already exists');
    expect(other.cookie).toBe('');
    expect((await stack.db.ownerPool.query("SELECT count(*)::int AS n FROM tenants WHERE name = 'Impostor'")).rows[0].n).toBe(0);

    const bad = await new Visitor().req('/portal/signup', { form: { businessName: ' ', email: 'not-an-email', password: 'short' } });
    expect(bad.status).toBe(400);
    const html = await bad.text();
    expect(html).toContain('Enter the name of your business.');
    expect(html).toContain('Enter an email address like name@example.com.');
    expect(html).toContain('at least 12 characters');
    expect(html).toMatch(/id="email"[^>]*aria-invalid="true"/);
    expect(html).not.toContain('short');

    const cross = await new Visitor().req('/portal/signup', { form: newBusiness(), headers: { origin: 'https://evil.example' } });
    expect(cross.status).toBe(403);
  });

  it('escapes what the business typed', async () => {
    const fields = { ...newBusiness(), businessName: `<script>alert(1)</script> "Shop"` };
    const { visitor } = await signUp(fields);
    const html = await visitor.page();
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &quot;Shop&quot;');
    expect(html).not.toContain('<script>alert(1)');
  });
});

describe('the setup page', () => {
  it('needs a signed-in business; serves a strict CSP and no inline script', async () => {
    const anonymous = await new Visitor().req('/portal');
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get('location')).toBe('/portal/login');
    expect((await new Visitor().req('/portal/status.json')).status).toBe(401);

    const { visitor } = await signUp();
    const res = await visitor.req('/portal');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(html).toContain('aria-current="step"');
    for (const label of ['business or creator', 'linked to a Facebook Page', 'admin of that Facebook Page']) expect(html).toContain(label);
    expect(html).toContain('Connect with Facebook');
    expect(html).toContain('Connect with Instagram');
  });

  it('the checklist gates the connect button: without the three boxes nothing starts', async () => {
    const { visitor, tenantId } = await signUp();
    const before = await historyLength(tenantId);
    const csrf = await visitor.csrf();
    const res = await visitor.req('/portal/connect?flow=facebook', { form: { _csrf: csrf, req_professional: 'yes', req_page: 'yes' } });
    expect(res.status).toBe(400);
    const html = await res.text();
    expect(html).toContain('Tick all three requirements before connecting');
    // The ticked boxes stay ticked; focus goes to the problem.
    expect(html).toMatch(/id="req_professional"[^>]*checked/);
    expect(html).not.toMatch(/id="req_admin"[^>]*checked/);
    expect(html).toMatch(/role="alert"[^>]*data-focus/);
    expect(await oauthStates(tenantId)).toEqual([]);
    expect(await historyLength(tenantId)).toBe(before);
  });

  it('every post needs the CSRF token of the session', async () => {
    const { visitor, tenantId } = await signUp();
    const before = await historyLength(tenantId);
    for (const [path, form] of [
      ['/portal/connect?flow=facebook', CHECKED],
      ['/portal/select', { account: '104829376511820' }],
      ['/portal/restart', {}],
      ['/portal/logout', {}],
    ] as const) {
      const res = await visitor.req(path, { form: { ...form, _csrf: 'forged' } });
      expect({ path, status: res.status }).toEqual({ path, status: 403 });
    }
    // The multipart assistant form too.
    const multipart = new FormData();
    multipart.set('persona', 'friendly');
    multipart.set('language', 'en');
    const configure = await visitor.req('/portal/configure', { method: 'POST', body: multipart });
    expect(configure.status).toBe(403);
    expect(await oauthStates(tenantId)).toEqual([]);
    expect(await historyLength(tenantId)).toBe(before);
    expect((await auditRows(tenantId, 'auth.denied')).filter((r) => r.reason === 'csrf_token_invalid')).toHaveLength(5);
    // Still signed in: the forged logout did nothing.
    expect((await visitor.req('/portal')).status).toBe(200);
  });
});

describe('the OAuth round trip', () => {
  it('connect creates a hashed single-use state and sends the browser to the configured dialog', async () => {
    const { visitor, tenantId } = await signUp();
    const fb = await connect(visitor, 'facebook');
    expect(fb.origin + fb.pathname).toBe(`${stack.config.FACEBOOK_DIALOG_BASE}/${stack.config.GRAPH_API_VERSION}/dialog/oauth`);
    expect(fb.searchParams.get('client_id')).toBe(stack.config.META_APP_ID);
    expect(fb.searchParams.get('redirect_uri')).toBe(stack.config.OAUTH_REDIRECT_URI);
    expect(fb.searchParams.get('response_type')).toBe('code');
    expect(fb.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(fb.searchParams.get('scope')).toContain('pages_messaging');
    expect(fb.searchParams.get('code_challenge_method')).toBe('S256');
    const state = fb.searchParams.get('state')!;
    const stored = await stack.db.ownerPool.query('SELECT state_hash FROM oauth_states WHERE tenant_id = $1', [tenantId]);
    expect(JSON.stringify(stored.rows)).not.toContain(state);

    const ig = await connect(visitor, 'instagram');
    expect(ig.origin + ig.pathname).toBe(`${stack.config.INSTAGRAM_DIALOG_BASE}/oauth/authorize`);
    expect(ig.searchParams.get('client_id')).toBe(stack.config.INSTAGRAM_APP_ID);
    expect(ig.searchParams.get('scope')).toBe('instagram_business_basic,instagram_business_manage_messages');
    expect((await auditRows(tenantId, 'onboarding.oauth_started')).map((r) => r.details.flow)).toEqual(['facebook', 'instagram']);
  });

  it('a state from another session, another tenant, expired, reused or made up is refused with what to do next; the saga is untouched', async () => {
    const owner = await signUp();
    const { tenantId } = owner;
    const dialog = await connect(owner.visitor);
    const state = dialog.searchParams.get('state')!;
    const callback = (s: string, extra = '&code=AQD-some-code') => `/portal/oauth/callback?state=${encodeURIComponent(s)}${extra}`;
    const before = await historyLength(tenantId);
    const statusBefore = await owner.visitor.status();

    // A colleague in the same tenant, in another browser.
    const colleagueAccount = await createTestAccount(stack.db.pool, tenantId, 'admin');
    const colleague = new Visitor();
    expect((await colleague.req('/portal/login', { form: { email: colleagueAccount.email, password: colleagueAccount.password } })).status).toBe(303);
    const otherSession = await colleague.req(callback(state));
    expect(otherSession.status).toBe(400);
    expect(await otherSession.text()).toContain('started in another browser or sign-in');

    // Another business's session.
    const stranger = await signUp();
    const otherTenant = await stranger.visitor.req(callback(state));
    expect(otherTenant.status).toBe(400);
    expect(await decoded(otherTenant)).toContain("doesn't belong to your current sign-in or business");

    // Signed out, made up, missing.
    const signedOut = await new Visitor().req(callback(state));
    expect(signedOut.status).toBe(401);
    expect((await owner.visitor.req(callback('AAAAAAAAAAAAAAAAAAAAAA'))).status).toBe(400);
    expect((await owner.visitor.req('/portal/oauth/callback?code=x')).status).toBe(400);

    // None of that spent the owner's state or reached the saga.
    expect(await oauthStates(tenantId)).toEqual([{ used_at: null }]);
    expect(await historyLength(tenantId)).toBe(before);
    expect(await owner.visitor.status()).toEqual(statusBefore);

    // Expired (10 minutes).
    await stack.db.ownerPool.query("UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", [tenantId]);
    const expired = await owner.visitor.req(callback(state));
    expect(expired.status).toBe(400);
    expect(await expired.text()).toContain('within 10 minutes');
    expect(await historyLength(tenantId)).toBe(before);

    // Used: a fresh attempt, answered (cancelled), then the same URL again.
    const fresh = (await connect(owner.visitor)).searchParams.get('state')!;
    const first = await owner.visitor.req(callback(fresh, '&error=access_denied&error_reason=user_denied&error_description=Permissions+error'));
    expect(first.status).toBe(303);
    const afterFirst = await historyLength(tenantId);
    const reused = await owner.visitor.req(callback(fresh, '&error=access_denied'));
    expect(reused.status).toBe(400);
    expect(await reused.text()).toContain('Each link works once');
    expect(await historyLength(tenantId)).toBe(afterFirst);

    const rejected = await auditRows(tenantId, 'onboarding.oauth_rejected');
    expect(rejected.map((r) => r.reason)).toEqual(['other_session', 'unknown', 'missing', 'expired', 'used']);
    expect((await auditRows(stranger.tenantId, 'onboarding.oauth_rejected')).map((r) => r.reason)).toEqual(['unknown']);
    expect((await auditRows(null, 'onboarding.oauth_rejected')).map((r) => r.reason)).toContain('signed_out');
  });

  it('a cancelled consent returns to step 2 with a message and an audit event', async () => {
    const { visitor, tenantId } = await signUp();
    for (const flow of ['facebook', 'instagram'] as const) {
      const state = (await connect(visitor, flow)).searchParams.get('state')!;
      const res = await visitor.req(`/portal/oauth/callback?error=access_denied&error_reason=user_denied&error_description=Permissions+error&state=${state}`);
      expect(res.status).toBe(303);
      const status = await eventually(async () => {
        const s = await visitor.status();
        return s.step === 'awaiting_oauth' && s.status === 'waiting' ? s : undefined;
      });
      expect(status.portalStep).toBe(2);
      const html = await visitor.page(res.headers.get('location')!);
      const platform = flow === 'facebook' ? 'Facebook' : 'Instagram';
      expect(html).toContain(`You cancelled the connection on ${platform}. To connect, click the button again and choose Allow.`);
      expect(html).toContain(`Connect with ${platform}`);
    }
    const denied = await auditRows(tenantId, 'onboarding.oauth_denied');
    expect(denied.map((r) => [r.outcome, r.details.flow])).toEqual([
      ['failure', 'facebook'],
      ['failure', 'instagram'],
    ]);
  });
});

describe('after the consent', () => {
  const PAGE_A = '104829376511820';
  const PAGE_B = '231907745812664';

  const waitStep = (visitor: Visitor, step: OnboardingStatus['step']) =>
    eventually(async () => {
      const s = await visitor.status();
      return s.step === step && s.status !== 'working' ? s : undefined;
    }, 30_000);

  const configureForm = (csrf: string, catalog?: { name: string; text: string }) => {
    const form = new FormData();
    form.set('_csrf', csrf);
    form.set('businessName', 'Bergsport Berger');
    form.set('persona', 'Warm and brief.');
    form.set('language', 'de');
    if (catalog) form.set('catalog', new Blob([catalog.text], { type: 'text/csv' }), catalog.name);
    return form;
  };

  it('the picker shows an account of another business disabled with why; the assistant form lists catalog problems; then live', async () => {
    // Page B already belongs to another business.
    const other = (await createTenant(stack.db.pool, 'Owner of Page B')).id;
    await connectChannel(stack.db.pool, stack.vault, { tenantId: other, platform: 'messenger', accountId: PAGE_B, accessToken: 'EAAB-other-business' });

    const { visitor, tenantId } = await signUp();
    const callback = new URL(stack.sandbox.authorize((await connect(visitor, 'facebook')).href, 'allow'));
    expect(callback.origin + callback.pathname).toBe(stack.config.OAUTH_REDIRECT_URI);
    expect((await visitor.req(callback.pathname + callback.search)).status).toBe(303);

    const picking = await waitStep(visitor, 'selecting_assets');
    expect(picking.assets?.find((a) => a.accountId === PAGE_B)?.connectedElsewhere).toBe(true);
    const picker = await decoded(await visitor.req('/portal'));
    expect(picker).toMatch(new RegExp(`id="asset-${PAGE_B}"[^>]*disabled`));
    expect(picker).toContain('Already connected to another Switchboard business');
    expect(picker).not.toMatch(new RegExp(`id="asset-${PAGE_A}"[^>]*disabled`));

    // Posting the disabled one anyway is refused by the saga; nothing changes.
    const refused = await visitor.req('/portal/select', { form: { _csrf: await visitor.csrf(), account: PAGE_B } });
    expect(refused.status).toBe(409);
    expect((await visitor.status()).step).toBe('selecting_assets');
    expect((await visitor.req('/portal/select', { form: { _csrf: await visitor.csrf(), account: PAGE_A } })).status).toBe(303);

    await waitStep(visitor, 'configuring_assistant');
    const bad = await visitor.req('/portal/configure', { method: 'POST', body: configureForm(await visitor.csrf(), { name: 'catalog.csv', text: 'sku,name,price\nRJ-1,Rain jacket,"89,90"\n,Beanie,5\n' }) });
    expect(bad.status).toBe(422);
    const problems = await decoded(bad);
    expect(problems).toContain('Catalog row 2, price: must use . as the decimal separator');
    expect(problems).toContain('Catalog row 3, sku: is required');
    // The form keeps what was typed.
    expect(problems).toContain('Warm and brief.');
    expect(problems).toMatch(/<option value="de" selected>/);
    expect((await visitor.status()).step).toBe('configuring_assistant');
    expect((await stack.db.ownerPool.query('SELECT count(*)::int AS n FROM products WHERE tenant_id = $1', [tenantId])).rows[0].n).toBe(0);

    const ok = await visitor.req('/portal/configure', { method: 'POST', body: configureForm(await visitor.csrf(), { name: 'catalog.csv', text: 'sku,name,price,currency\nRJ-1,Rain jacket,89.90,EUR\n' }) });
    expect(ok.status).toBe(303);
    const live = await waitStep(visitor, 'live');
    expect(live.channels).toEqual([expect.objectContaining({ platform: 'messenger', accountId: PAGE_A, live: true })]);
    const page = await decoded(await visitor.req('/portal'));
    expect(page).toContain("You're live");
    expect(page).toContain(PAGE_A);
    expect((await stack.db.ownerPool.query('SELECT sku FROM products WHERE tenant_id = $1', [tenantId])).rows).toEqual([{ sku: 'RJ-1' }]);
    expect((await auditRows(tenantId, 'catalog.imported')).map((r) => r.actor_type)).toEqual(['tenant_user']);
  });
});
