import { randomBytes } from 'node:crypto';
import { runCredentialHousekeeping } from '../../src/auth/housekeeping';
import { createSession } from '../../src/auth/sessions';
import { createTenant } from '../../src/db/tenants';
import { createTestAccount, createTestDatabase, type TestDatabase } from '../support/stack';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

const lifetimes = { idleMs: 3_600_000, absoluteMs: 86_400_000 };

it('purges sessions that ended over 30 days ago (platform and tenant scopes) and throttle windows that are over, nothing else', async () => {
  const tenantId = (await createTenant(db.pool, 'Housekeeping')).id;
  const operator = await createTestAccount(db.pool, null, 'operator');
  const user = await createTestAccount(db.pool, tenantId, 'viewer');
  const sessions = {
    operatorOld: await createSession(db.pool, { kind: 'operator', operatorId: operator.id }, { lifetimes }),
    userOld: await createSession(db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes }),
    userRecentlyRevoked: await createSession(db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes }),
    userOpen: await createSession(db.pool, { kind: 'tenant_user', userId: user.id, tenantId }, { lifetimes }),
  };
  // Ended 40 days ago (revoked, or expired), and revoked yesterday.
  await db.ownerPool.query(`UPDATE sessions SET revoked_at = now() - interval '40 days' WHERE id = $1`, [sessions.operatorOld.id]);
  await db.ownerPool.query(`UPDATE sessions SET created_at = now() - interval '50 days', expires_at = now() - interval '40 days' WHERE id = $1`, [sessions.userOld.id]);
  await db.ownerPool.query(`UPDATE sessions SET revoked_at = now() - interval '1 day' WHERE id = $1`, [sessions.userRecentlyRevoked.id]);
  const windowMs = 15 * 60_000;
  await db.ownerPool.query(
    `INSERT INTO login_throttle (scope, key_hash, window_start, failures) VALUES ('ip', $1, now() - interval '1 hour', 3), ('account', $2, now() - interval '1 minute', 2)`,
    [randomBytes(32), randomBytes(32)],
  );

  expect(await runCredentialHousekeeping(db.pool, { windowMs, perAccount: 5, perIp: 30 })).toEqual({ sessions: 2, throttleRows: 1 });

  const left = (await db.ownerPool.query<{ id: string }>('SELECT id FROM sessions ORDER BY id')).rows.map((r) => r.id);
  expect(left.sort()).toEqual([sessions.userRecentlyRevoked.id, sessions.userOpen.id].sort());
  expect((await db.ownerPool.query<{ scope: string }>('SELECT scope FROM login_throttle')).rows).toEqual([{ scope: 'account' }]);
  // Idempotent: a second gateway doing the same finds nothing.
  expect(await runCredentialHousekeeping(db.pool, { windowMs, perAccount: 5, perIp: 30 })).toEqual({ sessions: 0, throttleRows: 0 });
});
