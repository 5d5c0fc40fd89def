import { loadStaticAssets, type StaticAsset } from '../gateway/static-assets';

/** The dashboard's one script and one stylesheet (src/dashboard/assets/). */
export const ASSET_FILES = { 'dashboard.js': 'application/javascript; charset=utf-8', 'dashboard.css': 'text/css; charset=utf-8' } as const;
export type AssetName = keyof typeof ASSET_FILES;
export type Asset = StaticAsset;

export function loadAssets(dir?: string): Record<AssetName, Asset> {
  return loadStaticAssets('dashboard', ASSET_FILES, dir);
}
