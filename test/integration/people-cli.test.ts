import { randomBytes } from 'node:crypto';
import { resolveApiKey } from '../../src/auth/api-keys';
import { verifyPassword } from '../../src/auth/passwords';
import { createSession } from '../../src/auth/sessions';
import { createTenant } from '../../src/db/tenants';
import { runCli, type CliResult } from '../support/cli';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * `operators:create`, `users:create`, `api-keys:create|revoke` and `sessions:revoke` as an operator
 * runs them (a child process on a test database): passwords only on stdin, keys printed once,
 * nothing secret in the audit trail.
 */

const MASTER_KEYS = `1:${randomBytes(32).toString('base64')}`;
let db: TestDatabase;
let tenantId: string;

const cli = (args: string[], stdin = ''): Promise<CliResult> => runCli(args, { databaseUrl: db.url, masterKeys: MASTER_KEYS, env: { USER: 'ops-test' }, stdin });

async function ok<T = Record<string, unknown>>(args: string[], stdin?: string): Promise<T> {
  const r = await cli(args, stdin);
  if (r.code !== 0) throw new Error(`cli ${args[0]} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const auditDump = async () => JSON.stringify((await db.ownerPool.query('SELECT * FROM audit_events ORDER BY id')).rows);

beforeAll(async () => {
  db = await createTestDatabase();
  tenantId = (await createTenant(db.pool, 'CLI People Shop')).id;
});
afterAll(() => db.drop());

it('creates an operator and a tenant user with passwords from stdin, hashed, audited without the password', async () => {
  const password = 'operator pass phrase 1';
  const op = await ok<{ id: string; email: string }>(['operators:create', '--email', 'Ops@Example.test', '--password', '-'], `${password}\n`);
  expect(op.email).toBe('Ops@Example.test');
  const stored = (await db.ownerPool.query<{ password_hash: string }>('SELECT password_hash FROM operators WHERE id = $1', [op.id])).rows[0]!.password_hash;
  expect(await verifyPassword(password, stored)).toBe(true);

  const user = await ok<{ id: string; role: string; tenantId: string }>(['users:create', '--tenant', tenantId, '--email', 'dev@example.test', '--role', 'developer', '--password', '-'], 'developer password 2');
  expect(user).toMatchObject({ role: 'developer', tenantId });

  const dump = await auditDump();
  expect(dump).not.toContain(password);
  expect(dump).not.toContain('developer password 2');
  const { rows } = await db.ownerPool.query<{ action: string; tenant_id: string | null }>(`SELECT action, tenant_id FROM audit_events WHERE action IN ('operator.created', 'user.created') ORDER BY id`);
  expect(rows).toEqual([{ action: 'operator.created', tenant_id: null }, { action: 'user.created', tenant_id: tenantId }]);
});

it('refuses a password on the command line, a short password, a duplicate email (any case) and a bad role, with exit 2', async () => {
  const literal = await cli(['operators:create', '--email', 'x@example.test', '--password', 'hunter2hunter2']);
  expect(literal.code).toBe(2);
  expect(literal.stderr).toContain('--password: must be - : the password is read from stdin');
  expect(await auditDump()).not.toContain('hunter2hunter2');

  const short = await cli(['operators:create', '--email', 'y@example.test', '--password', '-'], 'short');
  expect(short.code).toBe(2);
  expect(short.stderr).toContain('the password must be at least 12 characters long (it has 5)');

  const dup = await cli(['users:create', '--tenant', tenantId, '--email', 'OPS@example.TEST', '--role', 'viewer', '--password', '-'], 'another long password');
  expect(dup.code).toBe(2);
  expect(dup.stderr).toContain('already exists');

  const role = await cli(['users:create', '--tenant', tenantId, '--email', 'z@example.test', '--role', 'superuser', '--password', '-'], 'another long password');
  expect(role.code).toBe(2);
  expect(role.stderr).toContain('--role: must be one of owner, admin, developer, viewer');
});

it('creates API keys (printed once, audited by prefix only) and revokes them', async () => {
  const created = await ok<{ id: string; key: string; prefix: string; role: string; tenantId: string | null }>(['api-keys:create', '--tenant', tenantId, '--role', 'viewer', '--name', 'reporting']);
  expect(created.key).toMatch(/^sb_[0-9a-z]{12}_/);
  expect(await resolveApiKey(db.pool, created.key)).toMatchObject({ kind: 'api_key', role: 'viewer', tenantId });
  const platform = await ok<{ key: string; tenantId: null; role: string }>(['api-keys:create', '--tenant', 'platform', '--role', 'operator', '--name', 'ops-automation']);
  expect(platform).toMatchObject({ tenantId: null, role: 'operator' });
  expect((await cli(['api-keys:create', '--tenant', 'platform', '--role', 'admin', '--name', 'x'])).stderr).toContain('a platform key (no tenant) must have the role operator');

  const dump = await auditDump();
  // The secret is everything after `sb_<prefix>_` (base64url: it may itself contain `_`).
  const secret = created.key.slice(`sb_${created.prefix}_`.length);
  expect(secret).toHaveLength(43);
  expect(dump).not.toContain(secret);
  expect(dump).toContain(created.prefix);

  expect(await ok(['api-keys:revoke', '--id', created.id])).toEqual({ id: created.id, revoked: 'now' });
  expect(await ok(['api-keys:revoke', '--id', created.id])).toEqual({ id: created.id, revoked: 'already' });
  expect(await resolveApiKey(db.pool, created.key)).toBeUndefined();
});

it('revokes every session of a user', async () => {
  const { rows } = await db.ownerPool.query<{ id: string }>(`SELECT id FROM tenant_users WHERE email = 'dev@example.test'`);
  const userId = rows[0]!.id;
  for (let i = 0; i < 2; i++) await createSession(db.pool, { kind: 'tenant_user', userId, tenantId }, { lifetimes: { idleMs: 3_600_000, absoluteMs: 86_400_000 } });
  expect(await ok(['sessions:revoke', '--user', userId])).toEqual({ user: userId, sessionsRevoked: 2 });
  expect((await db.ownerPool.query('SELECT 1 FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [userId])).rowCount).toBe(0);
  const unknown = await cli(['sessions:revoke', '--user', '00000000-0000-4000-8000-000000000000']);
  expect(unknown.code).toBe(2);
});
