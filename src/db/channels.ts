import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { CipherContext, TokenCipher } from '../crypto/token-cipher';
import type { Platform } from '../shared/types';

export type GraphApi = 'facebook' | 'instagram';
export type ChannelStatus = 'active' | 'reauth_required' | 'disabled';

export interface ChannelRoute {
  id: string;
  tenantId: string;
  platform: Platform;
  status: ChannelStatus;
}

export interface ChannelCredentials extends ChannelRoute {
  accountId: string;
  graphApi: GraphApi;
  accessToken: string;
}

export class ChannelConflictError extends Error {
  constructor(platform: Platform, accountId: string) {
    super(`${platform} account ${accountId} is already connected to another tenant`);
    this.name = 'ChannelConflictError';
  }
}

const tokenContext = (channelId: string): CipherContext => ({ table: 'channels', column: 'access_token', rowId: channelId });

/**
 * Stores a channel with its token encrypted. Connecting an account the same tenant already owns
 * replaces the token and reactivates it (a reconnect); another tenant's account is refused.
 */
export async function connectChannel(
  pool: Pool,
  cipher: TokenCipher,
  input: { tenantId: string; platform: Platform; accountId: string; accessToken: string; graphApi?: GraphApi },
): Promise<{ id: string }> {
  const existing = await pool.query<{ id: string; tenant_id: string }>(
    'SELECT id, tenant_id FROM channels WHERE platform = $1 AND account_id = $2',
    [input.platform, input.accountId],
  );
  const row = existing.rows[0];
  if (row && row.tenant_id !== input.tenantId) throw new ChannelConflictError(input.platform, input.accountId);
  const id = row?.id ?? randomUUID();
  const ciphertext = cipher.encrypt(input.accessToken, tokenContext(id));
  // Messenger channels always use a Page token; Instagram defaults to Instagram Login.
  const graphApi = input.graphApi ?? (input.platform === 'messenger' ? 'facebook' : 'instagram');
  await pool.query(
    `INSERT INTO channels (id, tenant_id, platform, account_id, graph_api, access_token_ciphertext)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (id) DO UPDATE SET access_token_ciphertext = EXCLUDED.access_token_ciphertext,
       graph_api = EXCLUDED.graph_api, status = 'active', status_reason = NULL, status_changed_at = now()`,
    [id, input.tenantId, input.platform, input.accountId, graphApi, ciphertext],
  );
  return { id };
}

export async function findChannelByAccount(pool: Pool, platform: Platform, accountId: string): Promise<ChannelRoute | null> {
  const { rows } = await pool.query<{ id: string; tenant_id: string; platform: Platform; status: ChannelStatus }>(
    'SELECT id, tenant_id, platform, status FROM channels WHERE platform = $1 AND account_id = $2',
    [platform, accountId],
  );
  const r = rows[0];
  return r ? { id: r.id, tenantId: r.tenant_id, platform: r.platform, status: r.status } : null;
}

/** Decrypts a channel's token. Only the send path calls this; the token never leaves the activity. */
export async function loadChannelCredentials(pool: Pool, cipher: TokenCipher, channelId: string): Promise<ChannelCredentials> {
  const { rows } = await pool.query<{
    id: string; tenant_id: string; platform: Platform; status: ChannelStatus; account_id: string; graph_api: GraphApi; access_token_ciphertext: Buffer;
  }>('SELECT id, tenant_id, platform, status, account_id, graph_api, access_token_ciphertext FROM channels WHERE id = $1', [channelId]);
  const r = rows[0];
  if (!r) throw new Error(`channel ${channelId} does not exist`);
  return {
    id: r.id,
    tenantId: r.tenant_id,
    platform: r.platform,
    status: r.status,
    accountId: r.account_id,
    graphApi: r.graph_api,
    accessToken: cipher.decrypt(r.access_token_ciphertext, tokenContext(r.id)),
  };
}

/** Idempotent: returns true only for the call that moved the channel out of `active`. */
export async function markChannelReauthRequired(pool: Pool, channelId: string, reason: string): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE channels SET status = 'reauth_required', status_reason = $2, status_changed_at = now()
     WHERE id = $1 AND status = 'active'`,
    [channelId, reason],
  );
  return rowCount === 1;
}
