import type { Pool } from 'pg';
import { inTenant, type Queryable } from '../db/tenant-scope';
import type { NotificationKind } from '../../workflows/token-lifecycle-definitions';

/**
 * Notification episodes (migration 0013): a channel needs reauthorization, or its token is about
 * to expire, from the moment it is noticed until it is resolved. The partial unique index on
 * (channel_id, kind) WHERE closed_at IS NULL is what makes "once per episode" hold however many
 * calls fail at once: every later report finds the open episode instead of opening another.
 */

export interface Episode {
  id: string;
  tenantId: string;
  channelId: string;
  kind: NotificationKind;
  level: 'warning' | 'critical';
  reason: string;
  expiresAt: Date | null;
  openedAt: Date;
  closedAt: Date | null;
  closedReason: string | null;
  emailSentAt: Date | null;
  emailError: string | null;
  webhookSentAt: Date | null;
  webhookAttempts: number;
  webhookError: string | null;
}

interface EpisodeRow {
  id: string;
  tenant_id: string;
  channel_id: string;
  kind: NotificationKind;
  level: 'warning' | 'critical';
  reason: string;
  expires_at: Date | null;
  opened_at: Date;
  closed_at: Date | null;
  closed_reason: string | null;
  email_sent_at: Date | null;
  email_error: string | null;
  webhook_sent_at: Date | null;
  webhook_attempts: number;
  webhook_error: string | null;
}

const COLUMNS = `id, tenant_id, channel_id, kind, level, reason, expires_at, opened_at, closed_at, closed_reason,
  email_sent_at, email_error, webhook_sent_at, webhook_attempts, webhook_error`;

function toEpisode(r: EpisodeRow): Episode {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    channelId: r.channel_id,
    kind: r.kind,
    level: r.level,
    reason: r.reason,
    expiresAt: r.expires_at,
    openedAt: r.opened_at,
    closedAt: r.closed_at,
    closedReason: r.closed_reason,
    emailSentAt: r.email_sent_at,
    emailError: r.email_error,
    webhookSentAt: r.webhook_sent_at,
    webhookAttempts: r.webhook_attempts,
    webhookError: r.webhook_error,
  };
}

export interface OpenEpisodeInput {
  channelId: string;
  kind: NotificationKind;
  level: 'warning' | 'critical';
  /** Failure type and Graph code, or the expiry: never an API message or a token. */
  reason: string;
  expiresAt?: Date | null;
}

/**
 * Opens the channel's episode of this kind, or returns the one already open (`opened: false`).
 * An open episode's level only ever rises (warning → critical); its reason stays the first one.
 */
export async function openEpisode(db: Pool | Queryable, tenantId: string, input: OpenEpisodeInput): Promise<{ episode: Episode; opened: boolean }> {
  return inTenant(db, tenantId, async (tx) => {
    const inserted = await tx.query<EpisodeRow>(
      `INSERT INTO notification_episodes (tenant_id, channel_id, kind, level, reason, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (channel_id, kind) WHERE closed_at IS NULL DO NOTHING
       RETURNING ${COLUMNS}`,
      [tenantId, input.channelId, input.kind, input.level, input.reason.slice(0, 500), input.expiresAt ?? null],
    );
    if (inserted.rows[0]) return { episode: toEpisode(inserted.rows[0]), opened: true };
    const existing = await tx.query<EpisodeRow>(
      `UPDATE notification_episodes
          SET level = CASE WHEN $3 = 'critical' THEN 'critical' ELSE level END,
              expires_at = coalesce($4, expires_at)
        WHERE channel_id = $1 AND kind = $2 AND closed_at IS NULL
        RETURNING ${COLUMNS}`,
      [input.channelId, input.kind, input.level, input.expiresAt ?? null],
    );
    const row = existing.rows[0];
    // Closed between the two statements by a concurrent reconnect: that reconnect resolved it.
    if (!row) return openEpisode(tx, tenantId, input);
    return { episode: toEpisode(row), opened: false };
  });
}

/** Ends the channel's open episodes of these kinds; returns the ids it closed. */
export async function closeEpisodes(db: Pool | Queryable, tenantId: string, channelId: string, kinds: readonly NotificationKind[], reason: string): Promise<string[]> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      `UPDATE notification_episodes SET closed_at = now(), closed_reason = $3
        WHERE channel_id = $1 AND kind = ANY($2::text[]) AND closed_at IS NULL RETURNING id`,
      [channelId, kinds, reason],
    );
    return rows.map((r) => r.id);
  });
}

export async function getEpisode(db: Pool | Queryable, tenantId: string, episodeId: string): Promise<Episode | null> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<EpisodeRow>(`SELECT ${COLUMNS} FROM notification_episodes WHERE id = $1`, [episodeId]);
    return rows[0] ? toEpisode(rows[0]) : null;
  });
}

/** The tenant's open episodes, newest first (the dashboard's and the portal's banner). */
export async function openEpisodesOfTenant(db: Pool | Queryable, tenantId: string): Promise<Episode[]> {
  return inTenant(db, tenantId, async (tx) => {
    const { rows } = await tx.query<EpisodeRow>(
      `SELECT ${COLUMNS} FROM notification_episodes WHERE closed_at IS NULL ORDER BY opened_at DESC, id LIMIT 200`,
    );
    return rows.map(toEpisode);
  });
}

/** Records the episode's e-mail outcome (sent, or why not). */
export async function recordEpisodeEmail(db: Pool | Queryable, tenantId: string, episodeId: string, outcome: { sent: true } | { sent: false; error: string }): Promise<void> {
  await inTenant(db, tenantId, (tx) =>
    tx.query(
      outcome.sent
        ? 'UPDATE notification_episodes SET email_sent_at = now(), email_error = NULL WHERE id = $1'
        : 'UPDATE notification_episodes SET email_error = $2 WHERE id = $1',
      outcome.sent ? [episodeId] : [episodeId, outcome.error.slice(0, 500)],
    ),
  );
}

/** Records one webhook delivery attempt (sent, or its error). */
export async function recordEpisodeWebhook(db: Pool | Queryable, tenantId: string, episodeId: string, outcome: { sent: true } | { sent: false; error: string }): Promise<void> {
  await inTenant(db, tenantId, (tx) =>
    tx.query(
      outcome.sent
        ? 'UPDATE notification_episodes SET webhook_sent_at = now(), webhook_error = NULL, webhook_attempts = webhook_attempts + 1 WHERE id = $1'
        : 'UPDATE notification_episodes SET webhook_error = $2, webhook_attempts = webhook_attempts + 1 WHERE id = $1',
      outcome.sent ? [episodeId] : [episodeId, outcome.error.slice(0, 500)],
    ),
  );
}
