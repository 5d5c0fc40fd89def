import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The dashboard's static files (one script, one stylesheet), read once at start and served from
 * memory. They are plain files, not TypeScript: `<root>/src/dashboard/assets`, found by walking up
 * to package.json (the same from `src/dashboard/` under tsx and `dist/src/dashboard/` when built),
 * so there is no build step and no copy into dist/.
 */

export interface Asset {
  body: Buffer;
  type: string;
  /** Content hash: the ETag, and the `?v=` that makes a new release bypass cached copies. */
  hash: string;
}

export const ASSET_FILES = { 'dashboard.js': 'application/javascript; charset=utf-8', 'dashboard.css': 'text/css; charset=utf-8' } as const;
export type AssetName = keyof typeof ASSET_FILES;

function findAssetsDir(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'src', 'dashboard', 'assets');
    if (existsSync(path.join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`no src/dashboard/assets directory above ${from}`);
  }
}

export function loadAssets(dir: string = findAssetsDir(__dirname)): Record<AssetName, Asset> {
  const load = (name: AssetName): Asset => {
    const body = readFileSync(path.join(dir, name));
    return { body, type: ASSET_FILES[name], hash: createHash('sha256').update(body).digest('base64url').slice(0, 16) };
  };
  return { 'dashboard.js': load('dashboard.js'), 'dashboard.css': load('dashboard.css') };
}
