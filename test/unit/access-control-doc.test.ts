import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PERMISSION_NAMES, renderAccessControlDoc, ROLES } from '../../src/auth/permissions';

/** docs/access-control.md is generated from src/auth/permissions.ts; it must not drift. */
describe('docs/access-control.md', () => {
  const committed = readFileSync(path.join(__dirname, '..', '..', 'docs', 'access-control.md'), 'utf8');

  it('is exactly what `npm run docs:access-control` generates from the permission matrix', () => {
    if (committed !== renderAccessControlDoc()) {
      throw new Error('docs/access-control.md differs from src/auth/permissions.ts: run `npm run docs:access-control` and commit the result');
    }
  });

  it('has one row per permission with one mark per role', () => {
    for (const p of PERMISSION_NAMES) {
      const row = committed.split('\n').find((l) => l.startsWith(`| \`${p}\` |`));
      expect(row).toBeDefined();
      expect(row!.split('|').slice(3, -1).map((c) => c.trim())).toHaveLength(ROLES.length);
    }
  });
});
