import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Context } from 'koa';

/**
 * Static files of the gateway's pages (the dashboard's and the portal's script and stylesheet):
 * plain files, not TypeScript, read once at start and served from memory. They live in
 * `<root>/src/<folder>/assets`, found by walking up to package.json (the same from `src/` under tsx
 * and from `dist/src/` when built), so there is no build step and no copy into dist/.
 */

export interface StaticAsset {
  body: Buffer;
  type: string;
  /** Content hash: the ETag, and the `?v=` that makes a new release bypass cached copies. */
  hash: string;
}

function findAssetsDir(folder: string, from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'src', folder, 'assets');
    if (existsSync(path.join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`no src/${folder}/assets directory above ${from}`);
  }
}

/** `files`: file name → content type. */
export function loadStaticAssets<N extends string>(folder: string, files: Readonly<Record<N, string>>, dir: string = findAssetsDir(folder, __dirname)): Record<N, StaticAsset> {
  const out = {} as Record<N, StaticAsset>;
  for (const name of Object.keys(files) as N[]) {
    const body = readFileSync(path.join(dir, name));
    out[name] = { body, type: files[name], hash: createHash('sha256').update(body).digest('base64url').slice(0, 16) };
  }
  return out;
}

/** Answers `GET …/assets/:name`: 404 for an unknown name, 304 for a current ETag, else the file. */
export function serveStaticAsset(ctx: Context, assets: Readonly<Record<string, StaticAsset>>, name: string): void {
  if (!Object.hasOwn(assets, name)) {
    ctx.status = 404;
    ctx.type = 'text';
    ctx.body = 'not found';
    return;
  }
  const asset = assets[name]!;
  ctx.set('etag', `"${asset.hash}"`);
  // Versioned URLs (?v=hash) may be cached for good; the bare name must be revalidated.
  ctx.set('cache-control', ctx.query.v === asset.hash ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (ctx.get('if-none-match') === `"${asset.hash}"`) {
    ctx.status = 304;
    return;
  }
  ctx.type = asset.type;
  ctx.body = asset.body;
}
