import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { AuditAction } from '../audit/types';
import type { SecretVault } from '../crypto/vault';
import { closeEpisodes } from '../notifications/episodes';
import type { TokenCandidate, TokenCheckOutcome } from '../../workflows/token-lifecycle-definitions';
import type { ChannelStatus, GraphApi } from './channels';
import { withPlatform, withTenant } from './tenant-scope';

/**
 * The token sweep's reads and writes (workflows/token-rotation.ts, activities/token-rotation.ts).
 * The work list crosses tenants through the allow-listed `token_sweep_candidates()` (ids and token
 * metadata only); everything else happens inside the channel's tenant. Every outcome's audit
 * event commits with the change it describes, keyed by (sweep, channel) so a retried activity
 * writes it once.
 */

const SYSTEM = { type: 'system' as const, id: 'token-rotation' };

/** One audit event per channel and sweep, whatever the retries. */
export const tokenCheckAuditKey = (sweepId: string, channelId: string): string => `token-check:${sweepId}:${channelId.toLowerCase()}`;

export async function tokenSweepCandidates(pool: Pool, after: string | null, limit: number): Promise<TokenCandidate[]> {
  const { rows } = await withPlatform(pool, (tx) =>
    tx.query<{ channel_id: string; tenant_id: string; platform: 'messenger' | 'instagram'; graph_api: GraphApi; token_expires_at: Date | null; token_issued_at: Date }>(
      'SELECT channel_id, tenant_id, platform, graph_api, token_expires_at, token_issued_at FROM token_sweep_candidates($1, $2)',
      [after, limit],
    ),
  );
  return rows.map((r) => ({
    channelId: r.channel_id,
    tenantId: r.tenant_id,
    platform: r.platform,
    graphApi: r.graph_api,
    tokenExpiresAt: r.token_expires_at?.getTime() ?? null,
    tokenIssuedAt: r.token_issued_at.getTime(),
  }));
}

export interface ChannelTokenState {
  status: ChannelStatus;
  platform: 'messenger' | 'instagram';
  graphApi: GraphApi;
  accountId: string;
  tokenExpiresAt: number | null;
  tokenIssuedAt: number;
  tokenCheckFailures: number;
}

/** The channel as the check sees it now (a reconnect may have happened since the sweep listed it); null when gone. */
export async function channelTokenState(pool: Pool, tenantId: string, channelId: string): Promise<ChannelTokenState | null> {
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ status: ChannelStatus; platform: 'messenger' | 'instagram'; graph_api: GraphApi; account_id: string; token_expires_at: Date | null; token_issued_at: Date; token_check_failures: number }>(
      'SELECT status, platform, graph_api, account_id, token_expires_at, token_issued_at, token_check_failures FROM channels WHERE id = $1',
      [channelId],
    ),
  );
  const r = rows[0];
  return r
    ? {
        status: r.status,
        platform: r.platform,
        graphApi: r.graph_api,
        accountId: r.account_id,
        tokenExpiresAt: r.token_expires_at?.getTime() ?? null,
        tokenIssuedAt: r.token_issued_at.getTime(),
        tokenCheckFailures: r.token_check_failures,
      }
    : null;
}

interface CheckAudit {
  sweepId: string;
  /** Extra facts: outcome, graph calls, expiry. Never a token. */
  details?: Record<string, unknown>;
}

/**
 * Stores a refreshed Instagram token (sealed, like `connectChannel`) with its new expiry and issue
 * time, resets the failure count, closes an open `token_expiring` episode and appends
 * `token.refreshed`, all in one transaction. Only if the row still holds the token that was
 * refreshed (`expectedIssuedAt`): a reconnect meanwhile stored a newer one, which stays. Returns
 * whether it stored.
 */
export async function storeRefreshedToken(
  pool: Pool,
  vault: SecretVault,
  input: { tenantId: string; channelId: string; accessToken: string; issuedAt: number; expiresAt: number | null; expectedIssuedAt: number } & CheckAudit,
): Promise<boolean> {
  return withTenant(pool, input.tenantId, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      // Compared in whole milliseconds: the column keeps microseconds, a JS Date does not.
      `SELECT id FROM channels WHERE id = $1 AND status = 'active' AND floor(extract(epoch FROM token_issued_at) * 1000)::bigint = $2 FOR UPDATE`,
      [input.channelId, input.expectedIssuedAt],
    );
    if (!rows[0]) return false;
    const sealed = await vault.encrypt({ tenantId: input.tenantId, table: 'channels', column: 'access_token', rowId: input.channelId }, input.accessToken, tx);
    await tx.query(
      `UPDATE channels SET access_token_ciphertext = $2, token_key_version = $3, token_issued_at = $4, token_expires_at = $5,
              token_checked_at = now(), token_check_failures = 0
        WHERE id = $1`,
      [input.channelId, sealed.blob, sealed.keyVersion, new Date(input.issuedAt), input.expiresAt === null ? null : new Date(input.expiresAt)],
    );
    await closeEpisodes(tx, input.tenantId, input.channelId, ['token_expiring'], 'token refreshed');
    await appendAuditEvent(
      tx,
      {
        tenantId: input.tenantId,
        actor: SYSTEM,
        action: 'token.refreshed',
        resource: `channel:${input.channelId}`,
        outcome: 'success',
        details: { channel: input.channelId, sweep: input.sweepId, keyVersion: sealed.keyVersion, expiresAt: input.expiresAt === null ? null : new Date(input.expiresAt).toISOString(), ...input.details },
      },
      { idempotencyKey: tokenCheckAuditKey(input.sweepId, input.channelId) },
    );
    return true;
  });
}

/**
 * A Page token found valid (`valid`) or valid with its subscription re-created (`resubscribed`):
 * its expiry as `debug_token` reported it, the subscription as found or made, the check time, and
 * `token.validated` / `token.resubscribed`, in one transaction.
 */
export async function recordTokenValidated(
  pool: Pool,
  input: { tenantId: string; channelId: string; outcome: 'valid' | 'resubscribed'; tokenExpiresAt: number | null; webhookSubscribed: boolean } & CheckAudit,
): Promise<void> {
  const action: AuditAction = input.outcome === 'valid' ? 'token.validated' : 'token.resubscribed';
  await withTenant(pool, input.tenantId, async (tx) => {
    await tx.query(
      `UPDATE channels SET token_expires_at = $2, token_checked_at = now(), token_check_failures = 0,
              webhook_subscribed = $3, webhook_checked_at = now()
        WHERE id = $1`,
      [input.channelId, input.tokenExpiresAt === null ? null : new Date(input.tokenExpiresAt), input.webhookSubscribed],
    );
    await appendAuditEvent(
      tx,
      { tenantId: input.tenantId, actor: SYSTEM, action, resource: `channel:${input.channelId}`, outcome: 'success', details: { channel: input.channelId, sweep: input.sweepId, ...input.details } },
      { idempotencyKey: tokenCheckAuditKey(input.sweepId, input.channelId) },
    );
  });
}

/**
 * A check that did not come to a verdict (`transient_failure`) or that found the token dead
 * (`reauth_required`, the channel change itself is `requireReauth`'s): `token.check_failed` with
 * the reason. A transient failure also counts in `token_check_failures` (once per sweep: the
 * audit key says whether this sweep already counted it); the next sweep tries again.
 */
export async function recordTokenCheckFailed(
  pool: Pool,
  input: { tenantId: string; channelId: string; outcome: Extract<TokenCheckOutcome, 'transient_failure' | 'reauth_required'>; reason: string } & CheckAudit,
): Promise<{ failures: number | null }> {
  return withTenant(pool, input.tenantId, async (tx) => {
    const appended = await appendAuditEvent(
      tx,
      {
        tenantId: input.tenantId,
        actor: SYSTEM,
        action: 'token.check_failed',
        resource: `channel:${input.channelId}`,
        outcome: 'failure',
        reason: input.reason,
        details: { channel: input.channelId, sweep: input.sweepId, outcome: input.outcome, ...input.details },
      },
      { idempotencyKey: tokenCheckAuditKey(input.sweepId, input.channelId) },
    );
    if (input.outcome !== 'transient_failure' || appended.duplicate) return { failures: null };
    const { rows } = await tx.query<{ token_check_failures: number }>(
      'UPDATE channels SET token_check_failures = token_check_failures + 1, token_checked_at = now() WHERE id = $1 RETURNING token_check_failures',
      [input.channelId],
    );
    return { failures: rows[0]?.token_check_failures ?? null };
  });
}
