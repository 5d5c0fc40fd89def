import { createHash, randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { SecretLocation, SecretVault } from '../crypto/vault';
import type { AuditActor } from './channels';
import { recordSecretDecrypt } from './channels';
import { withTenant } from './tenant-scope';

/**
 * The onboarding saga's database side (migrations/0012_onboarding.sql, docs/onboarding.md): the
 * portal's OAuth `state` store, the sealed token grants the saga refers to by id, and the channel
 * and tenant changes its steps and compensations make. Every function works inside the tenant's
 * own scope (`withTenant`).
 */

export type OAuthFlow = 'facebook' | 'instagram';

const SYSTEM: AuditActor = { type: 'system', id: 'onboarding' };

// ---- OAuth state ---------------------------------------------------------------------------

/** How long a `state` (and the dialog it was issued for) stays usable. */
export const OAUTH_STATE_TTL_MS = 10 * 60_000;
/** Expired and used states are kept this long (so a late callback says "expired", not "unknown"), then swept. */
const OAUTH_STATE_KEEP_MS = 24 * 3_600_000;

const STATE_BYTES = 16;
const STATE_PATTERN = /^[A-Za-z0-9_-]{22}$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** base64url SHA-256 of a state: what the saga is told to expect (BeginOAuth.stateHash). */
export function hashOAuthState(state: string): string {
  return sha256(state).toString('base64url');
}

/** PKCE S256 challenge of a verifier (RFC 7636 §4.2). */
export function pkceChallenge(codeVerifier: string): string {
  return createHash('sha256').update(codeVerifier, 'ascii').digest('base64url');
}

const verifierLocation = (tenantId: string, rowId: string): SecretLocation => ({ tenantId, table: 'oauth_states', column: 'code_verifier', rowId });

export interface CreatedOAuthState {
  /** 128 random bits, base64url: goes into the dialog URL; never stored. */
  state: string;
  /** base64url SHA-256 of `state` (what the row and the saga keep). */
  stateHash: string;
  /** Epoch ms. */
  expiresAt: number;
  /** PKCE (Facebook Login, when a vault was given to seal it): the verifier the code exchange sends… */
  codeVerifier?: string;
  /** …and the S256 challenge the dialog URL carries (`code_challenge`, `code_challenge_method=S256`). */
  codeChallenge?: string;
}

/**
 * A new OAuth attempt for the portal session `sessionId` of `tenantId`. Stores only the state's
 * hash. For Facebook Login with `opts.vault`, also a PKCE verifier, sealed by the vault (Instagram
 * Login documents no PKCE). A reconnect attempt names its channel (`channelId`): the callback then
 * goes to that channel's reconnect saga instead of the onboarding. Sweeps the tenant's
 * long-expired attempts on the way.
 */
export async function createOAuthState(
  pool: Pool,
  input: { tenantId: string; sessionId: string; flow: OAuthFlow; channelId?: string },
  opts: { vault?: SecretVault; ttlMs?: number } = {},
): Promise<CreatedOAuthState> {
  const state = randomBytes(STATE_BYTES).toString('base64url');
  const hash = sha256(state);
  const ttlMs = opts.ttlMs ?? OAUTH_STATE_TTL_MS;
  const codeVerifier = input.flow === 'facebook' && opts.vault ? randomBytes(48).toString('base64url') : undefined;
  return withTenant(pool, input.tenantId, async (tx) => {
    await tx.query(`DELETE FROM oauth_states WHERE tenant_id = $1 AND expires_at < now() - make_interval(secs => $2::double precision / 1000)`, [input.tenantId, OAUTH_STATE_KEEP_MS]);
    const { rows } = await tx.query<{ id: string; expires_at: Date }>(
      `INSERT INTO oauth_states (tenant_id, state_hash, session_id, flow, expires_at, channel_id)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000), $6) RETURNING id, expires_at`,
      [input.tenantId, hash, input.sessionId, input.flow, ttlMs, input.channelId ?? null],
    );
    const row = rows[0]!;
    if (codeVerifier && opts.vault) {
      const sealed = await opts.vault.encrypt(verifierLocation(input.tenantId, row.id), codeVerifier, tx);
      await tx.query('UPDATE oauth_states SET code_verifier_ciphertext = $2, code_verifier_key_version = $3 WHERE id = $1', [row.id, sealed.blob, sealed.keyVersion]);
    }
    return {
      state,
      stateHash: hash.toString('base64url'),
      expiresAt: row.expires_at.getTime(),
      ...(codeVerifier && { codeVerifier, codeChallenge: pkceChallenge(codeVerifier) }),
    };
  });
}

export type OAuthStateProblem = 'unknown' | 'expired' | 'used' | 'other_session';

/** `channelId`: a reconnect attempt of that channel (absent: an onboarding attempt). */
export type ConsumedOAuthState = { flow: OAuthFlow; stateHash: string; codeVerifier?: string; channelId?: string } | { problem: OAuthStateProblem };

/**
 * The callback's `state`, used once: atomically marks it used and answers its flow (and PKCE
 * verifier), or why it cannot be used. Another tenant's state is `unknown` (invisible in this
 * scope). A state presented from another session is refused without being burnt, so a stranger
 * holding a victim's callback URL cannot spend the victim's attempt.
 */
export async function consumeOAuthState(
  pool: Pool,
  tenantId: string,
  state: string,
  sessionId: string,
  opts: { vault?: SecretVault } = {},
): Promise<ConsumedOAuthState> {
  if (typeof state !== 'string' || !STATE_PATTERN.test(state)) return { problem: 'unknown' };
  const hash = sha256(state);
  return withTenant(pool, tenantId, async (tx) => {
    const { rows } = await tx.query<{ id: string; session_id: string; flow: OAuthFlow; expired: boolean; used: boolean; verifier: Buffer | null; channel_id: string | null }>(
      `SELECT id, session_id, flow, expires_at <= now() AS expired, used_at IS NOT NULL AS used, code_verifier_ciphertext AS verifier, channel_id
         FROM oauth_states WHERE state_hash = $1 FOR UPDATE`,
      [hash],
    );
    const r = rows[0];
    if (!r) return { problem: 'unknown' as const };
    if (r.used) return { problem: 'used' as const };
    if (r.session_id !== sessionId) return { problem: 'other_session' as const };
    if (r.expired) return { problem: 'expired' as const };
    await tx.query('UPDATE oauth_states SET used_at = now() WHERE id = $1', [r.id]);
    let codeVerifier: string | undefined;
    if (r.verifier) {
      if (!opts.vault) throw new TypeError('this OAuth state has a sealed PKCE verifier: pass the vault to consume it');
      codeVerifier = await opts.vault.decrypt(verifierLocation(tenantId, r.id), r.verifier, tx);
    }
    return { flow: r.flow, stateHash: hash.toString('base64url'), ...(codeVerifier && { codeVerifier }), ...(r.channel_id && { channelId: r.channel_id }) };
  });
}

// ---- Token grants --------------------------------------------------------------------------

/** A grant row is swept after this even if no saga deleted it (a saga uses it within minutes). */
export const GRANT_KEEP_MS = 24 * 3_600_000;

const grantLocation = (tenantId: string, grantId: string): SecretLocation => ({ tenantId, table: 'onboarding_grants', column: 'token', rowId: grantId });

export interface GrantToken {
  flow: OAuthFlow;
  kind: 'short' | 'long';
  token: string;
  expiresAt: Date | null;
}

/** What the grant row holds, without decrypting it (null: no such row). */
export async function grantState(pool: Pool, tenantId: string, grantId: string): Promise<{ flow: OAuthFlow; kind: 'short' | 'long'; expiresAt: Date | null } | null> {
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ flow: OAuthFlow; token_kind: 'short' | 'long'; token_expires_at: Date | null }>(
      'SELECT flow, token_kind, token_expires_at FROM onboarding_grants WHERE id = $1 AND discard_after > now()',
      [grantId],
    ),
  );
  const r = rows[0];
  return r ? { flow: r.flow, kind: r.token_kind, expiresAt: r.token_expires_at } : null;
}

/** Seals and stores (or replaces: short → long) the grant's user token. Sweeps the tenant's stale grants. */
export async function saveGrant(
  pool: Pool,
  vault: SecretVault,
  input: { tenantId: string; grantId: string; flow: OAuthFlow; kind: 'short' | 'long'; token: string; expiresAt: Date | null },
): Promise<void> {
  await withTenant(pool, input.tenantId, async (tx) => {
    await tx.query('DELETE FROM onboarding_grants WHERE tenant_id = $1 AND discard_after <= now()', [input.tenantId]);
    const sealed = await vault.encrypt(grantLocation(input.tenantId, input.grantId), input.token, tx);
    await tx.query(
      `INSERT INTO onboarding_grants (id, tenant_id, flow, token_kind, token_ciphertext, token_key_version, token_expires_at, discard_after)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::double precision / 1000))
       ON CONFLICT (id) DO UPDATE SET token_kind = EXCLUDED.token_kind, token_ciphertext = EXCLUDED.token_ciphertext,
         token_key_version = EXCLUDED.token_key_version, token_expires_at = EXCLUDED.token_expires_at`,
      [input.grantId, input.tenantId, input.flow, input.kind, sealed.blob, sealed.keyVersion, input.expiresAt, GRANT_KEEP_MS],
    );
  });
}

/**
 * Decrypts a grant's token for one purpose; counted (secret_decrypts) and audited
 * (`token.decrypted`) like a channel token, in one transaction, before the token is returned.
 */
export async function loadGrant(pool: Pool, vault: SecretVault, tenantId: string, grantId: string, purpose: string): Promise<GrantToken | null> {
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ flow: OAuthFlow; token_kind: 'short' | 'long'; token_ciphertext: Buffer; token_expires_at: Date | null }>(
      'SELECT flow, token_kind, token_ciphertext, token_expires_at FROM onboarding_grants WHERE id = $1 AND discard_after > now()',
      [grantId],
    ),
  );
  const r = rows[0];
  if (!r) return null;
  const token = await vault.decrypt(grantLocation(tenantId, grantId), r.token_ciphertext);
  await withTenant(pool, tenantId, async (tx) => {
    await recordSecretDecrypt(tx, tenantId, purpose);
    await appendAuditEvent(tx, {
      tenantId,
      actor: SYSTEM,
      action: 'token.decrypted',
      resource: `onboarding_grant:${grantId}`,
      outcome: 'success',
      details: { purpose, flow: r.flow, kind: r.token_kind },
    });
  });
  return { flow: r.flow, kind: r.token_kind, token, expiresAt: r.token_expires_at };
}

/** Deletes a grant (idempotent): true when a row went. */
export async function deleteGrant(pool: Pool, tenantId: string, grantId: string): Promise<boolean> {
  const { rowCount } = await withTenant(pool, tenantId, (tx) => tx.query('DELETE FROM onboarding_grants WHERE id = $1', [grantId]));
  return (rowCount ?? 0) > 0;
}

// ---- Channels ------------------------------------------------------------------------------

/** `channels.status_reason` of a channel the saga stored and has not put live yet. */
export const ONBOARDING_PENDING_REASON = 'onboarding';

/** Which of these channel ids exist in the tenant (a retried store step skips what it already stored). */
export async function existingChannelIds(pool: Pool, tenantId: string, channelIds: readonly string[]): Promise<Set<string>> {
  if (channelIds.length === 0) return new Set();
  const { rows } = await withTenant(pool, tenantId, (tx) => tx.query<{ id: string }>('SELECT id FROM channels WHERE id = ANY($1::uuid[])', [channelIds]));
  return new Set(rows.map((r) => r.id));
}

/** Epoch ms each channel's token expires (null: never / unknown). */
export async function channelTokenExpiries(pool: Pool, tenantId: string, channelIds: readonly string[]): Promise<Map<string, number | null>> {
  if (channelIds.length === 0) return new Map();
  const { rows } = await withTenant(pool, tenantId, (tx) =>
    tx.query<{ id: string; token_expires_at: Date | null }>('SELECT id, token_expires_at FROM channels WHERE id = ANY($1::uuid[])', [channelIds]),
  );
  return new Map(rows.map((r) => [r.id, r.token_expires_at?.getTime() ?? null]));
}

/** Records the outcome of a subscription check on the channels it covers. */
export async function markWebhookSubscription(pool: Pool, tenantId: string, channelIds: readonly string[], subscribed: boolean): Promise<void> {
  if (channelIds.length === 0) return;
  await withTenant(pool, tenantId, (tx) =>
    tx.query('UPDATE channels SET webhook_subscribed = $2, webhook_checked_at = now() WHERE id = ANY($1::uuid[])', [channelIds, subscribed]),
  );
}

/**
 * Go-live: the saga's pending channels become `active`, with the final `onboarding.completed`
 * audit event in the same transaction. Idempotent: a retry flips nothing twice and the audit
 * event carries an idempotency key.
 */
export async function activateOnboardingChannels(
  pool: Pool,
  input: { tenantId: string; channelIds: readonly string[]; idempotencyKey?: string; details?: Record<string, unknown> },
): Promise<{ activated: number }> {
  return withTenant(pool, input.tenantId, async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE channels SET status = 'active', status_reason = NULL, status_changed_at = now()
        WHERE id = ANY($1::uuid[]) AND status = 'disabled' AND status_reason = $2`,
      [input.channelIds, ONBOARDING_PENDING_REASON],
    );
    await appendAuditEvent(
      tx,
      {
        tenantId: input.tenantId,
        actor: SYSTEM,
        action: 'onboarding.completed',
        resource: `tenant:${input.tenantId}`,
        outcome: 'success',
        details: { channels: [...input.channelIds], ...input.details },
      },
      { idempotencyKey: input.idempotencyKey },
    );
    return { activated: rowCount ?? 0 };
  });
}

/** Compensation of go-live: the saga's channels stop answering (back to pending). Idempotent. */
export async function deactivateOnboardingChannels(pool: Pool, tenantId: string, channelIds: readonly string[]): Promise<number> {
  if (channelIds.length === 0) return 0;
  const { rowCount } = await withTenant(pool, tenantId, (tx) =>
    tx.query(
      `UPDATE channels SET status = 'disabled', status_reason = $2, status_changed_at = now()
        WHERE id = ANY($1::uuid[]) AND status = 'active'`,
      [channelIds, ONBOARDING_PENDING_REASON],
    ),
  );
  return rowCount ?? 0;
}

/**
 * Compensation of the store step: deletes the channels the saga created (their tokens with them),
 * each with a `channel.removed` audit event in the same transaction. Only ids the saga chose reach
 * here, never a channel that existed before it. Idempotent.
 */
export async function removeOnboardingChannels(pool: Pool, tenantId: string, channelIds: readonly string[], reason: string): Promise<number> {
  if (channelIds.length === 0) return 0;
  return withTenant(pool, tenantId, async (tx) => {
    const { rows } = await tx.query<{ id: string; platform: string }>('DELETE FROM channels WHERE id = ANY($1::uuid[]) RETURNING id, platform', [channelIds]);
    for (const r of rows) {
      await appendAuditEvent(tx, {
        tenantId,
        actor: SYSTEM,
        action: 'channel.removed',
        resource: `channel:${r.id}`,
        outcome: 'success',
        reason,
        details: { channel: r.id, platform: r.platform },
      });
    }
    return rows.length;
  });
}

// ---- Abandonment ---------------------------------------------------------------------------

export interface CryptoShredResult {
  shredded: boolean;
  dataKeysDestroyed: number;
  /** Channels the tenant still has (connected outside the saga): then nothing is destroyed. */
  channelsRemaining: number;
}

/**
 * Crypto-shreds an abandoned onboarding's tenant: its data keys are destroyed, so every secret
 * sealed under them (tokens, an AI key, PKCE verifiers, grants, in the database or in any backup)
 * is unreadable; the sealed columns that still point at them are cleared and the OAuth leftovers
 * deleted. The tenant row and its users stay: the client may come back and start again (the vault
 * creates a fresh data key on the next encryption). Refused (nothing changed) while the tenant
 * still has channels, which only an operator outside the saga could have connected. The
 * `tenant.crypto_shredded` audit event commits with the destruction. Callers evict the tenant
 * from the vault's key cache.
 */
export async function cryptoShredTenantSecrets(pool: Pool, tenantId: string, reason: string): Promise<CryptoShredResult> {
  return withTenant(pool, tenantId, async (tx) => {
    const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM channels');
    const channelsRemaining = rows[0]!.n;
    if (channelsRemaining > 0) return { shredded: false, dataKeysDestroyed: 0, channelsRemaining };
    await tx.query('DELETE FROM onboarding_grants');
    await tx.query('DELETE FROM oauth_states');
    await tx.query('UPDATE tenant_settings SET llm_api_key_ciphertext = NULL, llm_api_key_version = NULL WHERE llm_api_key_ciphertext IS NOT NULL');
    const keys = await tx.query('DELETE FROM tenant_data_keys WHERE tenant_id = $1', [tenantId]);
    const dataKeysDestroyed = keys.rowCount ?? 0;
    await appendAuditEvent(tx, {
      tenantId,
      actor: SYSTEM,
      action: 'tenant.crypto_shredded',
      resource: `tenant:${tenantId}`,
      outcome: 'success',
      reason,
      details: { dataKeysDestroyed },
    });
    return { shredded: true, dataKeysDestroyed, channelsRemaining: 0 };
  });
}
