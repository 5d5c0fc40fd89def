import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { SecretLocation, SecretVault } from '../crypto/vault';
import type { Platform } from '../shared/types';
import { withTransaction } from './pool';

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

const tokenLocation = (tenantId: string, channelId: string): SecretLocation => ({ tenantId, table: 'channels', column: 'access_token', rowId: channelId });

/** Why a token was decrypted: every decrypt is counted per tenant and purpose (secret_decrypts). */
export type TokenPurpose = 'graph.send' | 'graph.subscribe' | 'graph.refresh' | 'graph.validate';

/**
 * Stores a channel with its token encrypted. Connecting an account the same tenant already owns
 * replaces the token and reactivates it (a reconnect); another tenant's account is refused.
 */
export async function connectChannel(
  pool: Pool,
  vault: SecretVault,
  input: { tenantId: string; platform: Platform; accountId: string; accessToken: string; graphApi?: GraphApi },
): Promise<{ id: string }> {
  // Messenger channels always use a Page token; Instagram defaults to Instagram Login.
  const graphApi = input.graphApi ?? (input.platform === 'messenger' ? 'facebook' : 'instagram');
  return withTransaction(pool, async (client) => {
    const existing = await client.query<{ id: string; tenant_id: string }>(
      'SELECT id, tenant_id FROM channels WHERE platform = $1 AND account_id = $2 FOR UPDATE',
      [input.platform, input.accountId],
    );
    const row = existing.rows[0];
    if (row && row.tenant_id !== input.tenantId) throw new ChannelConflictError(input.platform, input.accountId);
    const id = row?.id ?? randomUUID();
    // Encrypted inside the transaction: the token and its data key usage commit together.
    const sealed = await vault.encrypt(tokenLocation(input.tenantId, id), input.accessToken, client);
    await client.query(
      `INSERT INTO channels (id, tenant_id, platform, account_id, graph_api, access_token_ciphertext, token_key_version)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET access_token_ciphertext = EXCLUDED.access_token_ciphertext,
         token_key_version = EXCLUDED.token_key_version, graph_api = EXCLUDED.graph_api,
         status = 'active', status_reason = NULL, status_changed_at = now()`,
      [id, input.tenantId, input.platform, input.accountId, graphApi, sealed.blob, sealed.keyVersion],
    );
    return { id };
  });
}

export async function findChannelByAccount(pool: Pool, platform: Platform, accountId: string): Promise<ChannelRoute | null> {
  const { rows } = await pool.query<{ id: string; tenant_id: string; platform: Platform; status: ChannelStatus }>(
    'SELECT id, tenant_id, platform, status FROM channels WHERE platform = $1 AND account_id = $2',
    [platform, accountId],
  );
  const r = rows[0];
  return r ? { id: r.id, tenantId: r.tenant_id, platform: r.platform, status: r.status } : null;
}

/**
 * Decrypts a channel's token for one purpose and counts the decrypt. Only activities call this;
 * the token never leaves them and no API returns it.
 */
export async function loadChannelCredentials(pool: Pool, vault: SecretVault, channelId: string, purpose: TokenPurpose): Promise<ChannelCredentials> {
  const { rows } = await pool.query<{
    id: string; tenant_id: string; platform: Platform; status: ChannelStatus; account_id: string; graph_api: GraphApi; access_token_ciphertext: Buffer;
  }>('SELECT id, tenant_id, platform, status, account_id, graph_api, access_token_ciphertext FROM channels WHERE id = $1', [channelId]);
  const r = rows[0];
  if (!r) throw new Error(`channel ${channelId} does not exist`);
  const accessToken = await vault.decrypt(tokenLocation(r.tenant_id, r.id), r.access_token_ciphertext);
  await recordSecretDecrypt(pool, r.tenant_id, purpose);
  return {
    id: r.id,
    tenantId: r.tenant_id,
    platform: r.platform,
    status: r.status,
    accountId: r.account_id,
    graphApi: r.graph_api,
    accessToken,
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

export async function recordSecretDecrypt(pool: Pool, tenantId: string, purpose: string): Promise<void> {
  await pool.query(
    `INSERT INTO secret_decrypts (tenant_id, purpose, day, count, last_at) VALUES ($1, $2, current_date, 1, now())
     ON CONFLICT (tenant_id, purpose, day) DO UPDATE SET count = secret_decrypts.count + 1, last_at = now()`,
    [tenantId, purpose],
  );
}
