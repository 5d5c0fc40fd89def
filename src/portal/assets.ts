import { loadStaticAssets, type StaticAsset } from '../gateway/static-assets';

/** The portal's one script and one stylesheet (src/portal/assets/), served like the dashboard's. */
export const PORTAL_ASSET_FILES = { 'portal.js': 'application/javascript; charset=utf-8', 'portal.css': 'text/css; charset=utf-8' } as const;
export type PortalAssetName = keyof typeof PORTAL_ASSET_FILES;
export type PortalAsset = StaticAsset;

export function loadPortalAssets(dir?: string): Record<PortalAssetName, PortalAsset> {
  return loadStaticAssets('portal', PORTAL_ASSET_FILES, dir);
}
