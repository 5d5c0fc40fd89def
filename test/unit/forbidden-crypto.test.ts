import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../support/paths';

/**
 * The original plan derived keys with PBKDF2 on every call and used the removed, IV-ignoring
 * `createCipher`. Neither may appear in shipped code (tests may name them, as this one does).
 */
const FORBIDDEN = [/\bpbkdf2(Sync)?\b/i, /\bcreateCipher\s*\(/, /\bcreateDecipher\s*\(/, /\baes-\d+-(ecb|cbc)\b/i];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.(ts|js|cjs|mjs)$/.test(name) ? [full] : [];
  });
}

describe('no weak or removed crypto in shipped code', () => {
  const files = ['src', 'workflows', 'activities', 'scripts', 'bench'].flatMap((d) => sourceFiles(path.join(ROOT, d)));

  it('scans the source tree', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it('finds no PBKDF2, createCipher/createDecipher, ECB or CBC', () => {
    const hits = files.flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, i) => (FORBIDDEN.some((re) => re.test(line)) ? [`${path.relative(ROOT, file)}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(hits).toEqual([]);
  });
});
