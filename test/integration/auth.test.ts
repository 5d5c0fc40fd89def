import { createHash, randomBytes, scryptSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { createApiKey, revokeApiKey } from '../../src/auth/api-keys';
import { createSession, purgeEndedSessions, revokeSessionsOf } from '../../src/auth/sessions';
import type { Config } from '../../src/config';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { createTenant } from '../../src/db/tenants';
import { createGatewayApp } from '../../src/gateway/app';
import { createLogger } from '../../src/logger';
import { AesGcmPayloadCodec, createDataConverter } from '../../src/temporal/payload-codec';
import { createTestAccount, createTestDatabase, LogCapture, signIn, testConfig, type TestDatabase } from '../support/stack';

/**
 * Sign-in, sessions, CSRF, API keys and login throttling on the real gateway app and a real
 * database. Each test that fails logins on purpose uses its own client IP (X-Forwarded-For; the
 * app trusts its proxy), so the per-IP counts of one test never reach another.
 */

let db: TestDatabase;
let config: Config;
let connection: Connection;
let url: string;
let server: Server;
let tenantId: string;
const logs = new LogCapture();
const json = { 'content-type': 'application/json' };

const login = (email: string, password: string, ip = '198.51.100.1', extra: Record<string, string> = {}) =>
  fetch(`${url}/auth/login`, { method: 'POST', headers: { ...json, 'x-forwarded-for': ip, ...extra }, body: JSON.stringify({ email, password }) });

async function auditRows(action: string) {
  const { rows } = await db.ownerPool.query<{ tenant_id: string | null; actor_type: string; actor_id: string | null; resource: string; outcome: string; reason: string | null; ip: string | null; details: Record<string, unknown> }>(
    'SELECT tenant_id, actor_type, actor_id, resource, outcome, reason, ip, details FROM audit_events WHERE action = $1 ORDER BY id',
    [action],
  );
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  config = testConfig({ DATABASE_URL: db.url, LOGIN_MAX_FAILURES_PER_IP: '8' });
  const keys = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const codec = await AesGcmPayloadCodec.fromKeyProvider(keys);
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: await createDataConverter(codec) });
  const app = createGatewayApp({ config, pool: db.pool, temporal: { client, connection }, codec, vault: new SecretVault(db.pool, keys), logger: createLogger('test', 'debug', { destination: logs.stream }) });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  tenantId = (await createTenant(db.pool, 'Auth Shop')).id;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await connection.close();
  await db.drop();
});

describe('POST /auth/login', () => {
  it('signs a tenant user in: an httpOnly SameSite=Lax session cookie, stored only as a hash, audited in the tenant chain', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'admin');
    const res = await login(user.email.toUpperCase(), user.password, '198.51.100.10', { 'x-request-id': 'req-login-1' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { principal: Record<string, unknown>; csrfToken: string; expiresAt: string };
    expect(body.principal).toEqual({ kind: 'tenant_user', id: user.id, role: 'admin', tenantId, credential: 'session' });
    expect(body.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Absolute lifetime: 7 days by default.
    expect(new Date(body.expiresAt).getTime() - Date.now()).toBeGreaterThan(7 * 86_400_000 - 60_000);

    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^sb_session=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toMatch(/; path=\//i);
    expect(setCookie).toMatch(/; httponly/i);
    expect(setCookie).toMatch(/; samesite=lax/i);
    // Plain HTTP: a Secure cookie would never come back.
    expect(setCookie).not.toMatch(/; secure/i);
    const token = setCookie.split(';')[0]!.slice('sb_session='.length);

    const { rows } = await db.ownerPool.query<{ token_hash: Buffer; principal: string; user_id: string; tenant_id: string; ip: string }>('SELECT token_hash, principal, user_id, tenant_id, ip FROM sessions WHERE user_id = $1', [user.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.token_hash.equals(createHash('sha256').update(token).digest())).toBe(true);
    expect(rows[0]).toMatchObject({ principal: 'tenant_user', tenant_id: tenantId, ip: '198.51.100.10' });
    const dump = JSON.stringify((await db.ownerPool.query('SELECT * FROM sessions')).rows);
    expect(dump).not.toContain(token);

    const audited = (await auditRows('auth.login')).filter((r) => r.actor_id === user.id);
    expect(audited).toEqual([expect.objectContaining({ tenant_id: tenantId, actor_type: 'tenant_user', outcome: 'success', reason: null, ip: '198.51.100.10' })]);
    expect(JSON.stringify(audited)).not.toContain(user.email);
    expect(JSON.stringify(audited)).not.toContain(user.password);
  });

  it('marks the cookie Secure when the request came over TLS (X-Forwarded-Proto from the proxy)', async () => {
    const op = await createTestAccount(db.pool, null, 'operator');
    const res = await login(op.email, op.password, '198.51.100.11', { 'x-forwarded-proto': 'https' });
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toMatch(/; secure/i);
    expect(((await res.json()) as { principal: { kind: string; tenantId: null } }).principal).toMatchObject({ kind: 'operator', tenantId: null });
  });

  it('answers the same 401 for a wrong password, an unknown email and a disabled account; each audited with its reason, never the password', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    const disabled = await createTestAccount(db.pool, tenantId, 'viewer');
    await db.ownerPool.query('UPDATE tenant_users SET disabled_at = now() WHERE id = $1', [disabled.id]);
    const ip = '198.51.100.20';
    const answers = [
      await login(user.email, 'not-the-password-at-all', ip),
      await login('nobody-here@example.test', 'whatever-password-1', ip),
      await login(disabled.email, disabled.password, ip),
    ];
    for (const res of answers) {
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: { code: 'invalid_login', message: 'wrong email or password' } });
      expect(res.headers.get('set-cookie')).toBeNull();
    }
    const failures = (await auditRows('auth.login')).filter((r) => r.ip === ip);
    expect(failures.map((r) => [r.outcome, r.reason, r.tenant_id, r.actor_type])).toEqual([
      ['failure', 'wrong_password', tenantId, 'tenant_user'],
      ['failure', 'unknown_account', null, 'operator'],
      ['failure', 'account_disabled', tenantId, 'tenant_user'],
    ]);
    expect(failures[1]!.actor_id).toBeNull();
    // The email is kept masked, the password not at all.
    expect(String(failures[1]!.details.email)).toMatch(/\*\*\*/);
    const everything = JSON.stringify(failures) + logs.lines.join('\n');
    expect(everything).not.toContain('not-the-password-at-all');
    expect(everything).not.toContain(disabled.password);
    expect(everything).not.toContain('nobody-here@example.test');
  });

  it('answers 400 naming the missing field, 415 for other content types', async () => {
    const res = await fetch(`${url}/auth/login`, { method: 'POST', headers: json, body: JSON.stringify({ email: 'a@example.test' }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('password: is required');
    const text = await fetch(`${url}/auth/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    expect(text.status).toBe(415);
  });

  it('accepts a form post from this site (303 to `next`) and refuses one from another site', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'developer');
    const form = new URLSearchParams({ email: user.email, password: user.password, next: '/dashboard' }).toString();
    const res = await fetch(`${url}/auth/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '198.51.100.30', origin: url }, body: form });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    expect(res.headers.get('set-cookie')).toMatch(/^sb_session=/);

    const evil = await fetch(`${url}/auth/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' }, body: form });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('set-cookie')).toBeNull();
  });
});

describe('under row-level security', () => {
  it("re-hashes a tenant user's password made with older parameters at sign-in, in the tenant's scope", async () => {
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    const salt = randomBytes(16);
    const weak = `scrypt$14$8$1$${salt.toString('base64url')}$${scryptSync(user.password.normalize('NFC'), salt, 32, { N: 2 ** 14, r: 8, p: 1 }).toString('base64url')}`;
    await db.ownerPool.query('UPDATE tenant_users SET password_hash = $2 WHERE id = $1', [user.id, weak]);
    expect((await login(user.email, user.password, '198.51.100.90')).status).toBe(200);
    const stored = (await db.ownerPool.query<{ password_hash: string }>('SELECT password_hash FROM tenant_users WHERE id = $1', [user.id])).rows[0]!.password_hash;
    expect(stored).toMatch(/^scrypt\$15\$/);
  });

  it('purges ended sessions of the platform and of every tenant, and keeps live ones', async () => {
    const otherTenant = (await createTenant(db.pool, 'Purge Shop')).id;
    const op = await createTestAccount(db.pool, null, 'operator');
    const a = await createTestAccount(db.pool, tenantId, 'viewer');
    const b = await createTestAccount(db.pool, otherTenant, 'viewer');
    const lifetimes = { idleMs: 3_600_000, absoluteMs: 86_400_000 };
    const ended = [
      await createSession(db.pool, { kind: 'operator', operatorId: op.id }, { lifetimes }),
      await createSession(db.pool, { kind: 'tenant_user', userId: a.id, tenantId }, { lifetimes }),
      await createSession(db.pool, { kind: 'tenant_user', userId: b.id, tenantId: otherTenant }, { lifetimes }),
    ].map((s) => s.id);
    const live = (await createSession(db.pool, { kind: 'tenant_user', userId: b.id, tenantId: otherTenant }, { lifetimes })).id;
    await db.ownerPool.query(`UPDATE sessions SET revoked_at = now() - interval '31 days' WHERE id = ANY($1::uuid[])`, [ended]);
    expect(await purgeEndedSessions(db.pool)).toBeGreaterThanOrEqual(3);
    const { rows } = await db.ownerPool.query<{ id: string }>('SELECT id FROM sessions WHERE id = ANY($1::uuid[])', [[...ended, live]]);
    expect(rows.map((r) => r.id)).toEqual([live]);
  });

  it('revokes an API key by id alone (platform keys first, then each tenant in its scope)', async () => {
    const platform = await createApiKey(db.pool, { tenantId: null, role: 'operator', name: 'p', createdBy: 'cli:test' });
    const tenantKey = await createApiKey(db.pool, { tenantId, role: 'viewer', name: 't', createdBy: 'cli:test' });
    expect(await revokeApiKey(db.pool, platform.id)).toEqual({ revoked: true, tenantId: null });
    expect(await revokeApiKey(db.pool, tenantKey.id)).toEqual({ revoked: true, tenantId });
    expect(await revokeApiKey(db.pool, tenantKey.id)).toEqual({ revoked: false, tenantId });
    expect(await revokeApiKey(db.pool, '00000000-0000-4000-8000-000000000000')).toBeUndefined();
    // Given the wrong scope, the key is not found there.
    expect(await revokeApiKey(db.pool, tenantKey.id, null)).toBeUndefined();
  });
});

describe('login throttling', () => {
  it('answers 429 with retry-after after 5 failures for one account, even with the right password; audited', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    for (let i = 0; i < 5; i++) expect((await login(user.email, `wrong-password-${i}`, `198.51.100.${40 + i}`)).status).toBe(401);
    const blocked = await login(user.email, user.password, '198.51.100.50');
    expect(blocked.status).toBe(429);
    const retryAfter = Number(blocked.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    expect(((await blocked.json()) as { error: { code: string } }).error.code).toBe('too_many_attempts');
    expect((await auditRows('auth.login')).at(-1)).toMatchObject({ outcome: 'failure', reason: 'throttled_account', ip: '198.51.100.50' });

    // Once the window is over, the right password works again.
    await db.ownerPool.query(`UPDATE login_throttle SET window_start = now() - interval '16 minutes'`);
    expect((await login(user.email, user.password, '198.51.100.51')).status).toBe(200);
  });

  it('resets the account count on success', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    for (let i = 0; i < 4; i++) expect((await login(user.email, `wrong-password-${i}`, `198.51.100.${60 + i}`)).status).toBe(401);
    expect((await login(user.email, user.password, '198.51.100.64')).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await login(user.email, `wrong-password-${i}`, `198.51.100.${70 + i}`)).status).toBe(401);
    expect((await login(user.email, user.password, '198.51.100.74')).status).toBe(200);
  });

  it('answers 429 for an IP that failed too often across accounts (limit 8 here), shared through the database', async () => {
    const ip = '203.0.113.7';
    for (let i = 0; i < 8; i++) expect((await login(`spray-${i}@example.test`, 'some-password-1', ip)).status).toBe(401);
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    const blocked = await login(user.email, user.password, ip);
    expect(blocked.status).toBe(429);
    expect((await auditRows('auth.login')).at(-1)).toMatchObject({ reason: 'throttled_ip' });
    // Another IP is not affected; the table holds no email or IP in clear.
    expect((await login(user.email, user.password, '203.0.113.8')).status).toBe(200);
    const dump = JSON.stringify((await db.ownerPool.query('SELECT * FROM login_throttle')).rows);
    expect(dump).not.toContain(ip);
    expect(dump).not.toContain('spray-');
  });
});

describe('sessions', () => {
  it('answers the principal and CSRF token at GET /auth/session; 401 without a session', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'owner');
    const { cookie, csrfToken } = await signIn(url, user.email, user.password);
    const res = await fetch(`${url}/auth/session`, { headers: { cookie } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ principal: { kind: 'tenant_user', id: user.id, role: 'owner', tenantId, credential: 'session' }, csrfToken });
    expect((await fetch(`${url}/auth/session`)).status).toBe(401);
  });

  it('logs out only with the CSRF token; the session is revoked server-side and the cookie cleared', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'admin');
    const { cookie, csrfToken } = await signIn(url, user.email, user.password);
    const noCsrf = await fetch(`${url}/auth/logout`, { method: 'POST', headers: { cookie } });
    expect(noCsrf.status).toBe(403);
    expect((await fetch(`${url}/auth/session`, { headers: { cookie } })).status).toBe(200);

    const out = await fetch(`${url}/auth/logout`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrfToken } });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/sb_session=;.*expires=Thu, 01 Jan 1970/i);
    const after = await fetch(`${url}/auth/session`, { headers: { cookie } });
    expect(after.status).toBe(401);
    expect(((await after.json()) as { error: { message: string } }).error.message).toMatch(/the session has ended/);
    const { rows } = await db.ownerPool.query('SELECT revoked_at, revoked_reason FROM sessions WHERE user_id = $1', [user.id]);
    expect(rows).toEqual([{ revoked_at: expect.any(Date), revoked_reason: 'logout' }]);
    expect((await auditRows('auth.logout')).at(-1)).toMatchObject({ tenant_id: tenantId, actor_type: 'tenant_user', actor_id: user.id, outcome: 'success' });
    expect((await auditRows('auth.denied')).some((r) => r.actor_id === user.id && r.reason === 'csrf_token_invalid')).toBe(true);
  });

  it('ends a session that was revoked, idle for 12 h, past its absolute end, or whose account was disabled', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'viewer');
    const check = async (cookie: string) => (await fetch(`${url}/auth/session`, { headers: { cookie } })).status;

    const revoked = await signIn(url, user.email, user.password);
    expect(await revokeSessionsOf(db.pool, tenantId, user.id, 'operator_revoked')).toBe(1);
    expect(await check(revoked.cookie)).toBe(401);

    const idle = await signIn(url, user.email, user.password);
    await db.ownerPool.query(`UPDATE sessions SET last_seen_at = now() - interval '12 hours 1 minute' WHERE user_id = $1 AND revoked_at IS NULL`, [user.id]);
    expect(await check(idle.cookie)).toBe(401);

    const old = await signIn(url, user.email, user.password);
    expect(await check(old.cookie)).toBe(200);
    await db.ownerPool.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND revoked_at IS NULL AND last_seen_at > now() - interval '1 hour'`, [user.id]);
    expect(await check(old.cookie)).toBe(401);

    const live = await signIn(url, user.email, user.password);
    expect(await check(live.cookie)).toBe(200);
    await db.ownerPool.query('UPDATE tenant_users SET disabled_at = now() WHERE id = $1', [user.id]);
    expect(await check(live.cookie)).toBe(401);
  });

  it('needs the CSRF header for a cookie-authenticated change, not for a read nor for an API key', async () => {
    const user = await createTestAccount(db.pool, tenantId, 'admin');
    const { cookie, csrfToken } = await signIn(url, user.email, user.password);
    const settings = `${url}/admin/tenants/${tenantId}/settings`;
    expect((await fetch(settings, { headers: { cookie } })).status).toBe(200);

    const without = await fetch(settings, { method: 'PUT', headers: { cookie, ...json }, body: JSON.stringify({ debounceMs: 900 }) });
    expect(without.status).toBe(403);
    expect(((await without.json()) as { error: { code: string } }).error.code).toBe('csrf_failed');
    const forged = await fetch(settings, { method: 'PUT', headers: { cookie, ...json, 'x-csrf-token': `${csrfToken.slice(0, -2)}AA` }, body: JSON.stringify({ debounceMs: 900 }) });
    expect(forged.status).toBe(403);
    const withToken = await fetch(settings, { method: 'PUT', headers: { cookie, ...json, 'x-csrf-token': csrfToken }, body: JSON.stringify({ debounceMs: 900 }) });
    expect(withToken.status).toBe(200);
    expect((await auditRows('settings.updated')).at(-1)).toMatchObject({ tenant_id: tenantId, actor_type: 'tenant_user', actor_id: user.id });

    const key = (await createApiKey(db.pool, { tenantId, role: 'admin', name: 'ci', createdBy: 'cli:test' })).key;
    const byKey = await fetch(settings, { method: 'PUT', headers: { authorization: `Bearer ${key}`, ...json }, body: JSON.stringify({ debounceMs: 950 }) });
    expect(byKey.status).toBe(200);
  });
});

describe('API keys', () => {
  it('are shown once, stored as a hash, record their last use, and stop working when revoked', async () => {
    const created = await createApiKey(db.pool, { tenantId, role: 'viewer', name: 'reporting', createdBy: 'cli:test' });
    expect(created.key).toMatch(new RegExp(`^sb_${created.prefix}_[A-Za-z0-9_-]{43}$`));
    const { rows } = await db.ownerPool.query<{ secret_hash: Buffer; last_used_at: Date | null }>('SELECT secret_hash, last_used_at FROM api_keys WHERE id = $1', [created.id]);
    expect(rows[0]!.secret_hash.equals(createHash('sha256').update(created.key).digest())).toBe(true);
    expect(rows[0]!.last_used_at).toBeNull();
    const secret = created.key.split('_').slice(2).join('_');
    expect(JSON.stringify((await db.ownerPool.query('SELECT * FROM api_keys')).rows)).not.toContain(secret);

    const headers = { authorization: `Bearer ${created.key}` };
    expect((await fetch(`${url}/admin/tenants/${tenantId}/settings`, { headers })).status).toBe(200);
    const used = (await db.ownerPool.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])).rows[0]!.last_used_at;
    expect(used).toBeInstanceOf(Date);
    // At most one write a minute: a second call leaves it as it was.
    expect((await fetch(`${url}/auth/session`, { headers })).status).toBe(200);
    expect((await db.ownerPool.query<{ last_used_at: Date }>('SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])).rows[0]!.last_used_at).toEqual(used);

    expect(await revokeApiKey(db.pool, created.id)).toEqual({ revoked: true, tenantId });
    const after = await fetch(`${url}/admin/tenants/${tenantId}/settings`, { headers });
    expect(after.status).toBe(401);
    expect(((await after.json()) as { error: { message: string } }).error.message).toMatch(/not valid/);
    expect((await auditRows('auth.denied')).at(-1)).toMatchObject({ reason: 'invalid_credentials', tenant_id: null });
    expect(logs.lines.join('\n')).not.toContain(secret);
  });

  it('refuses a key with a right prefix but a wrong secret', async () => {
    const created = await createApiKey(db.pool, { tenantId, role: 'viewer', name: 'x', createdBy: 'cli:test' });
    const forged = `sb_${created.prefix}_${'A'.repeat(43)}`;
    expect((await fetch(`${url}/admin/tenants/${tenantId}/settings`, { headers: { authorization: `Bearer ${forged}` } })).status).toBe(401);
  });

  it('refuses a platform key with a tenant role and a tenant key with the operator role', async () => {
    await expect(createApiKey(db.pool, { tenantId: null, role: 'admin', name: 'x', createdBy: 'cli:test' })).rejects.toThrow('a platform key (no tenant) must have the role operator');
    await expect(createApiKey(db.pool, { tenantId, role: 'operator', name: 'x', createdBy: 'cli:test' })).rejects.toThrow(/a tenant key must have a tenant role/);
  });
});
