import { Client as PgClient } from 'pg';
import { ensureAppLoginRole, withCredentials } from '../../src/db/app-role';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * The app's login role belongs to the cluster, so parallel set-ups of different databases (test
 * files, two migrate jobs) race on the same pg_authid row. Each must still end with a role that
 * logs in with the password it was given.
 */

let a: TestDatabase;
let b: TestDatabase;

beforeAll(async () => {
  [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
});

afterAll(async () => {
  await Promise.all([a?.drop(), b?.drop()]);
});

it('survives concurrent set-ups of the same role from two databases', async () => {
  const user = 'sb_test_role_race';
  const password = 'race-password-0123';
  await Promise.all(Array.from({ length: 12 }, (_, i) => ensureAppLoginRole(i % 2 === 0 ? a.ownerPool : b.ownerPool, user, password)));
  for (const db of [a, b]) {
    const client = new PgClient({ connectionString: withCredentials(db.ownerUrl, user, password) });
    await client.connect();
    const { rows } = await client.query<{ u: string }>('SELECT current_user AS u');
    await client.end();
    expect(rows[0]!.u).toBe(user);
  }
});
