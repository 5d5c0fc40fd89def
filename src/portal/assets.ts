import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The portal's two static files, read once and served from memory under a content-hash URL, the
 * way the dashboard serves its own (src/dashboard/assets.ts): plain files found by walking up to
 * package.json, so the same code works from src/ under tsx and from dist/ when built.
 */

export interface PortalAsset {
  body: Buffer;
  type: string;
  hash: string;
}

export const PORTAL_ASSET_FILES = { 'portal.js': 'application/javascript; charset=utf-8', 'portal.css': 'text/css; charset=utf-8' } as const;
export type PortalAssetName = keyof typeof PORTAL_ASSET_FILES;

function findAssetsDir(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'src', 'portal', 'assets');
    if (existsSync(path.join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`no src/portal/assets directory above ${from}`);
  }
}

export function loadPortalAssets(dir: string = findAssetsDir(__dirname)): Record<PortalAssetName, PortalAsset> {
  const load = (name: PortalAssetName): PortalAsset => {
    const body = readFileSync(path.join(dir, name));
    return { body, type: PORTAL_ASSET_FILES[name], hash: createHash('sha256').update(body).digest('base64url').slice(0, 16) };
  };
  return { 'portal.js': load('portal.js'), 'portal.css': load('portal.css') };
}
