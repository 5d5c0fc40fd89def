import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { AuditEventInput } from '../audit/types';
import type { Queryable, SecretLocation, SecretVault } from '../crypto/vault';
import type { Platform } from '../shared/types';
import { inTenant, withTenant } from './tenant-scope';

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

/** Who did it, for the audit trail (default: the platform itself). */
export type AuditActor = AuditEventInput['actor'];
const SYSTEM: AuditActor = { type: 'system', id: 'switchboard' };

/** Why a token was decrypted: every decrypt is counted per tenant and purpose (secret_decrypts). */
export type TokenPurpose = 'graph.send' | 'graph.subscribe' | 'graph.refresh' | 'graph.validate';

/**
 * Stores a channel with its token encrypted. Connecting an account the same tenant already owns
 * replaces the token and reactivates it (a reconnect); another tenant's account is refused.
 * The `token.stored` audit event is appended in the same transaction: a token stored without its
 * audit row is impossible.
 */
export async function connectChannel(
  pool: Pool,
  vault: SecretVault,
  input: {
    tenantId: string;
    platform: Platform;
    accountId: string;
    accessToken: string;
    graphApi?: GraphApi;
    /** The id of a NEW channel (the onboarding saga picks it before the step, for its compensation); default random. */
    id?: string;
    /** A NEW channel starts `disabled` with this reason instead of `active` (onboarding: live only at go-live); a reconnect is unaffected. */
    pendingReason?: string;
    /** When the token expires (null: never / unknown); omitted = left as it is. */
    tokenExpiresAt?: Date | null;
  },
  opts: { actor?: AuditActor; requestId?: string; ip?: string } = {},
): Promise<{ id: string; reconnect: boolean }> {
  // Messenger channels always use a Page token; Instagram defaults to Instagram Login.
  const graphApi = input.graphApi ?? (input.platform === 'messenger' ? 'facebook' : 'instagram');
  // Another tenant's channel for the account is invisible here (row-level security): the unique
  // (platform, account_id) index refuses the insert instead, answered as the same conflict.
  return withTenant(pool, input.tenantId, async (client) => {
    const existing = await client.query<{ id: string; tenant_id: string }>(
      'SELECT id, tenant_id FROM channels WHERE platform = $1 AND account_id = $2 FOR UPDATE',
      [input.platform, input.accountId],
    );
    const row = existing.rows[0];
    const id = row?.id ?? input.id ?? randomUUID();
    // Encrypted inside the transaction: the token and its data key usage commit together.
    const sealed = await vault.encrypt(tokenLocation(input.tenantId, id), input.accessToken, client);
    await client.query(
      `INSERT INTO channels (id, tenant_id, platform, account_id, graph_api, access_token_ciphertext, token_key_version, status, status_reason, token_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8::text IS NULL THEN 'active' ELSE 'disabled' END, $8, $9)
       ON CONFLICT (id) DO UPDATE SET access_token_ciphertext = EXCLUDED.access_token_ciphertext,
         token_key_version = EXCLUDED.token_key_version, graph_api = EXCLUDED.graph_api,
         status = 'active', status_reason = NULL, status_changed_at = now(),
         token_issued_at = now(), token_check_failures = 0,
         token_expires_at = CASE WHEN $10 THEN EXCLUDED.token_expires_at ELSE channels.token_expires_at END`,
      [id, input.tenantId, input.platform, input.accountId, graphApi, sealed.blob, sealed.keyVersion, input.pendingReason ?? null, input.tokenExpiresAt ?? null, input.tokenExpiresAt !== undefined],
    ).catch((err: unknown) => {
      if ((err as { code?: string; constraint?: string }).code === '23505') throw new ChannelConflictError(input.platform, input.accountId);
      throw err;
    });
    await appendAuditEvent(client, {
      tenantId: input.tenantId,
      actor: opts.actor ?? SYSTEM,
      action: 'token.stored',
      resource: `channel:${id}`,
      outcome: 'success',
      ip: opts.ip,
      requestId: opts.requestId,
      details: { platform: input.platform, graphApi, reconnect: row !== undefined, keyVersion: sealed.keyVersion },
    });
    return { id, reconnect: row !== undefined };
  });
}

/** Webhook routing, before any tenant is known: through the allow-listed `route_channel()`. */
export async function findChannelByAccount(pool: Pool, platform: Platform, accountId: string): Promise<ChannelRoute | null> {
  const { rows } = await pool.query<{ id: string; tenant_id: string; platform: Platform; status: ChannelStatus }>(
    'SELECT channel_id AS id, tenant_id, platform, status FROM route_channel($1, $2)',
    [platform, accountId],
  );
  const r = rows[0];
  return r ? { id: r.id, tenantId: r.tenant_id, platform: r.platform, status: r.status } : null;
}

/**
 * Decrypts a channel's token for one purpose and counts the decrypt. Only activities call this;
 * the token never leaves them and no API returns it. The decrypt counter and the `token.decrypted`
 * audit event commit together before the token is returned: no decrypt goes unaudited.
 */
export async function loadChannelCredentials(
  pool: Pool,
  vault: SecretVault,
  channel: { tenantId: string; channelId: string },
  purpose: TokenPurpose,
  opts: { actor?: AuditActor } = {},
): Promise<ChannelCredentials> {
  const { channelId } = channel;
  const { rows } = await withTenant(pool, channel.tenantId, (tx) =>
    tx.query<{
      id: string; tenant_id: string; platform: Platform; status: ChannelStatus; account_id: string; graph_api: GraphApi; access_token_ciphertext: Buffer;
    }>('SELECT id, tenant_id, platform, status, account_id, graph_api, access_token_ciphertext FROM channels WHERE id = $1', [channelId]),
  );
  const r = rows[0];
  if (!r) throw new Error(`channel ${channelId} does not exist`);
  const accessToken = await vault.decrypt(tokenLocation(r.tenant_id, r.id), r.access_token_ciphertext);
  await withTenant(pool, r.tenant_id, async (client) => {
    await recordSecretDecrypt(client, r.tenant_id, purpose);
    await appendAuditEvent(client, {
      tenantId: r.tenant_id,
      actor: opts.actor ?? SYSTEM,
      action: 'token.decrypted',
      resource: `channel:${r.id}`,
      outcome: 'success',
      details: { purpose, channel: r.id, platform: r.platform },
    });
  });
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

/**
 * Idempotent: returns true only for the call that moved the channel out of `active`. That call
 * appends `channel.reauth_required` in the same transaction; a repeat changes and records nothing.
 */
export async function markChannelReauthRequired(
  db: Pool | Queryable,
  channel: { tenantId: string; channelId: string },
  reason: string,
  opts: { actor?: AuditActor; idempotencyKey?: string } = {},
): Promise<boolean> {
  const { channelId } = channel;
  return inTenant(db, channel.tenantId, async (client) => {
    const { rows } = await client.query<{ tenant_id: string; platform: Platform }>(
      `UPDATE channels SET status = 'reauth_required', status_reason = $2, status_changed_at = now()
       WHERE id = $1 AND status = 'active' RETURNING tenant_id, platform`,
      [channelId, reason],
    );
    const r = rows[0];
    if (!r) return false;
    await appendAuditEvent(
      client,
      {
        tenantId: r.tenant_id,
        actor: opts.actor ?? SYSTEM,
        action: 'channel.reauth_required',
        resource: `channel:${channelId}`,
        outcome: 'success',
        reason,
        details: { channel: channelId, platform: r.platform, from: 'active', to: 'reauth_required' },
      },
      { idempotencyKey: opts.idempotencyKey },
    );
    return true;
  });
}

export async function recordSecretDecrypt(pool: Queryable, tenantId: string, purpose: string): Promise<void> {
  await pool.query(
    `INSERT INTO secret_decrypts (tenant_id, purpose, day, count, last_at) VALUES ($1, $2, current_date, 1, now())
     ON CONFLICT (tenant_id, purpose, day) DO UPDATE SET count = secret_decrypts.count + 1, last_at = now()`,
    [tenantId, purpose],
  );
}
