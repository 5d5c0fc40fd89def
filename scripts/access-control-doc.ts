import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderAccessControlDoc } from '../src/auth/permissions';

/** `npm run docs:access-control`: writes docs/access-control.md from the permission matrix. */
const out = path.join(__dirname, '..', 'docs', 'access-control.md');
writeFileSync(out, renderAccessControlDoc());
process.stdout.write(`wrote ${path.relative(process.cwd(), out)}\n`);
