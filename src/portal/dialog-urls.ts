import { createHash } from 'node:crypto';
import type { Config } from '../config';
import { FACEBOOK_MESSAGING_SCOPES, INSTAGRAM_MESSAGING_SCOPES } from '../meta/messaging-scopes';
import type { LoginFlow } from '../../workflows/onboarding-definitions';

/**
 * Where the connect button sends the browser: Meta's consent dialog for the chosen login flow
 * (contract §5.1–5.3), with the one configured redirect URI and the state that binds the answer
 * to this session and tenant.
 */

export type DialogConfig = Pick<
  Config,
  'META_APP_ID' | 'INSTAGRAM_APP_ID' | 'INSTAGRAM_APP_SECRET' | 'FACEBOOK_LOGIN_CONFIG_ID' | 'OAUTH_REDIRECT_URI' | 'FACEBOOK_DIALOG_BASE' | 'INSTAGRAM_DIALOG_BASE' | 'GRAPH_API_VERSION'
>;

/**
 * A flow is offered only when the worker can finish it: its app id, and for Instagram Login the
 * Instagram app's own secret (META_APP_SECRET is always set); as src/meta/oauth-client.ts decides.
 */
export function flowAvailable(config: DialogConfig, flow: LoginFlow): boolean {
  return flow === 'facebook' ? config.META_APP_ID !== undefined : config.INSTAGRAM_APP_ID !== undefined && config.INSTAGRAM_APP_SECRET !== undefined;
}

/** RFC 7636 S256: base64url(SHA-256(verifier)). */
export function pkceChallenge(codeVerifier: string): string {
  return createHash('sha256').update(codeVerifier, 'ascii').digest('base64url');
}

/** Joins a configured base URL and a path without doubling or dropping a slash. */
function at(base: string, pathname: string): URL {
  return new URL(base.replace(/\/+$/, '') + pathname);
}

export function dialogUrl(config: DialogConfig, flow: LoginFlow, state: string, codeVerifier?: string): string {
  if (flow === 'facebook') {
    if (!config.META_APP_ID) throw new Error('META_APP_ID is not configured');
    const url = at(config.FACEBOOK_DIALOG_BASE, `/${config.GRAPH_API_VERSION}/dialog/oauth`);
    url.searchParams.set('client_id', config.META_APP_ID);
    url.searchParams.set('redirect_uri', config.OAUTH_REDIRECT_URI);
    url.searchParams.set('state', state);
    url.searchParams.set('response_type', 'code');
    if (config.FACEBOOK_LOGIN_CONFIG_ID) url.searchParams.set('config_id', config.FACEBOOK_LOGIN_CONFIG_ID);
    else url.searchParams.set('scope', FACEBOOK_MESSAGING_SCOPES.join(','));
    if (codeVerifier) {
      url.searchParams.set('code_challenge', pkceChallenge(codeVerifier));
      url.searchParams.set('code_challenge_method', 'S256');
    }
    return url.href;
  }
  if (!config.INSTAGRAM_APP_ID) throw new Error('INSTAGRAM_APP_ID is not configured');
  const url = at(config.INSTAGRAM_DIALOG_BASE, '/oauth/authorize');
  url.searchParams.set('client_id', config.INSTAGRAM_APP_ID);
  url.searchParams.set('redirect_uri', config.OAUTH_REDIRECT_URI);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', INSTAGRAM_MESSAGING_SCOPES.join(','));
  url.searchParams.set('state', state);
  return url.href;
}
