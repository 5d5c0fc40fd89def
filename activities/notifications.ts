import { ApplicationFailure } from '@temporalio/activity';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../src/audit/log';
import type { SecretVault } from '../src/crypto/vault';
import { loadNotifyWebhook, notificationRecipients } from '../src/db/tenant-settings';
import { inTenant } from '../src/db/tenant-scope';
import type { Logger } from '../src/logger';
import { composeEpisodeEmail, createMailer, MailError, portalUrlOf, type Mailer } from '../src/notifications/email';
import { getEpisode, recordEpisodeEmail, recordEpisodeWebhook, type Episode } from '../src/notifications/episodes';
import { deliverNotification, eventTypeOf, type NotificationEvent } from '../src/notifications/webhook';
import {
  NOTIFICATION_EMAIL_REJECTED,
  NOTIFICATION_EPISODE_MISSING,
  NOTIFICATION_WEBHOOK_REJECTED,
  type NotificationInput,
  type NotificationKind,
} from '../workflows/token-lifecycle-definitions';

/**
 * The notification workflow's I/O (workflows/notification.ts): load an episode, e-mail it once,
 * deliver the signed webhook, record each outcome in the tenant's audit chain. Idempotent under
 * retries: the e-mail is skipped once `email_sent_at` is set, the webhook once `webhook_sent_at`
 * is, and each audit event carries a key per (episode, way of delivery).
 */

export interface NotificationDeps {
  /** `smtp://` / `smtps://`; unset: e-mail is not sent (`email_error = 'smtp not configured'`). */
  smtpUrl?: string;
  from: string;
  /** For the reconnect link in e-mails (`${publicBaseUrl}/portal`). */
  publicBaseUrl: string;
  /** https-only, public-address-only webhooks (src/notifications/webhook.ts). */
  production: boolean;
  webhookTimeoutMs?: number;
}

const DEFAULT_DEPS: NotificationDeps = { from: 'Switchboard <notifications@switchboard.local>', publicBaseUrl: 'http://localhost:3000', production: false };

export interface NotificationPlan {
  found: boolean;
  closed: boolean;
  kind: NotificationKind | null;
  channelId: string | null;
  /** The tenant configured a webhook URL when the episode was loaded. */
  webhookConfigured: boolean;
}

export type EmailOutcome =
  | { status: 'sent'; recipients: number }
  | { status: 'already_sent' }
  | { status: 'not_configured' }
  | { status: 'no_recipients' }
  | { status: 'episode_closed' };

export type WebhookOutcome =
  | { status: 'sent'; attempts: number; httpStatus: number }
  | { status: 'already_sent' }
  | { status: 'not_configured' }
  | { status: 'episode_closed' };

export interface NotificationOutcomeInput {
  tenantId: string;
  episodeId: string;
  via: 'email' | 'webhook' | 'episode';
  outcome: 'sent' | 'failed' | 'skipped';
  /** Why it failed or was skipped: an error class or status, never an address or API text. */
  reason?: string;
  details?: { recipients?: number; attempts?: number; httpStatus?: number };
}

interface ChannelFacts {
  platform: 'messenger' | 'instagram';
  accountId: string;
  parkedReplies: number;
}

async function channelFacts(pool: Pool, tenantId: string, channelId: string): Promise<ChannelFacts | null> {
  return inTenant(pool, tenantId, async (tx) => {
    const { rows } = await tx.query<{ platform: 'messenger' | 'instagram'; account_id: string; parked: number }>(
      `SELECT c.platform, c.account_id,
              (SELECT count(*)::int FROM messages m WHERE m.channel_id = c.id AND m.status = 'parked') AS parked
         FROM channels c WHERE c.id = $1`,
      [channelId],
    );
    const r = rows[0];
    return r ? { platform: r.platform, accountId: r.account_id, parkedReplies: r.parked } : null;
  });
}

async function requireEpisode(pool: Pool, input: NotificationInput): Promise<Episode> {
  const episode = await getEpisode(pool, input.tenantId, input.episodeId);
  // Deleted with its channel or tenant: nothing to tell anyone, and retrying will not bring it back.
  if (!episode) throw ApplicationFailure.nonRetryable(`episode ${input.episodeId} does not exist`, NOTIFICATION_EPISODE_MISSING);
  return episode;
}

export function createNotificationActivities({ pool, vault, logger, notifications }: { pool: Pool; vault: SecretVault; logger: Logger; notifications?: NotificationDeps }) {
  const deps = notifications ?? DEFAULT_DEPS;
  let mailer: Mailer | undefined;
  const mailerOf = (smtpUrl: string) => (mailer ??= createMailer({ smtpUrl, from: deps.from }));

  return {
    async loadNotificationEpisode(input: NotificationInput): Promise<NotificationPlan> {
      const episode = await getEpisode(pool, input.tenantId, input.episodeId);
      if (!episode) return { found: false, closed: true, kind: null, channelId: null, webhookConfigured: false };
      const { rows } = await inTenant(pool, input.tenantId, (tx) =>
        tx.query<{ url: string | null }>('SELECT notify_webhook_url AS url FROM tenant_settings WHERE tenant_id = $1', [input.tenantId]),
      );
      return { found: true, closed: episode.closedAt !== null, kind: episode.kind, channelId: episode.channelId, webhookConfigured: Boolean(rows[0]?.url) };
    },

    /**
     * Sends the episode's one e-mail and marks it sent right after the SMTP server accepted it.
     * A crash between the two (or a lost acceptance) sends it again on the retry: at least once,
     * with the same Message-ID, which is the best SMTP allows.
     */
    async sendEpisodeEmail(input: NotificationInput): Promise<EmailOutcome> {
      const episode = await requireEpisode(pool, input);
      if (episode.emailSentAt) return { status: 'already_sent' };
      if (episode.closedAt) return { status: 'episode_closed' };
      if (!deps.smtpUrl) {
        await recordEpisodeEmail(pool, input.tenantId, episode.id, { sent: false, error: 'smtp not configured' });
        return { status: 'not_configured' };
      }
      const recipients = await notificationRecipients(pool, input.tenantId);
      if (recipients.length === 0) {
        await recordEpisodeEmail(pool, input.tenantId, episode.id, { sent: false, error: 'no recipients (no notify_email and no active owner)' });
        return { status: 'no_recipients' };
      }
      const channel = await channelFacts(pool, input.tenantId, episode.channelId);
      if (!channel) return { status: 'episode_closed' };
      const mail = composeEpisodeEmail({
        kind: episode.kind,
        level: episode.level,
        reason: episode.reason,
        expiresAt: episode.expiresAt,
        channel: { platform: channel.platform, accountId: channel.accountId },
        parkedReplies: channel.parkedReplies,
        portalUrl: portalUrlOf(deps.publicBaseUrl),
      });
      try {
        await mailerOf(deps.smtpUrl).send({ ...mail, to: recipients, messageId: `<episode-${episode.id}@switchboard>` });
      } catch (err) {
        const e = err instanceof MailError ? err : new MailError('SMTP error', false);
        await recordEpisodeEmail(pool, input.tenantId, episode.id, { sent: false, error: e.message });
        logger.warn({ tenantId: input.tenantId, episodeId: episode.id, error: e.message, permanent: e.permanent }, 'notification e-mail failed');
        throw e.permanent ? ApplicationFailure.nonRetryable(e.message, NOTIFICATION_EMAIL_REJECTED) : ApplicationFailure.retryable(e.message, 'NotificationEmailFailed');
      }
      await recordEpisodeEmail(pool, input.tenantId, episode.id, { sent: true });
      logger.info({ tenantId: input.tenantId, episodeId: episode.id, kind: episode.kind, recipients: recipients.length }, 'notification e-mail sent');
      return { status: 'sent', recipients: recipients.length };
    },

    /**
     * One signed delivery attempt; every attempt is counted on the episode. The secret is
     * decrypted here only, per attempt. An episode closed meanwhile (the channel was reconnected
     * while the receiver was down) is not announced any more.
     */
    async deliverEpisodeWebhook(input: NotificationInput): Promise<WebhookOutcome> {
      const episode = await requireEpisode(pool, input);
      if (episode.webhookSentAt) return { status: 'already_sent' };
      if (episode.closedAt) return { status: 'episode_closed' };
      const channel = await channelFacts(pool, input.tenantId, episode.channelId);
      if (!channel) return { status: 'episode_closed' };
      const webhook = await loadNotifyWebhook(pool, vault, input.tenantId);
      if (!webhook) return { status: 'not_configured' };
      const event: NotificationEvent = {
        id: episode.id,
        type: eventTypeOf(episode.kind),
        tenantId: input.tenantId,
        channel: { id: episode.channelId, platform: channel.platform, accountId: channel.accountId },
        level: episode.level,
        reason: episode.reason,
        ...(episode.expiresAt ? { expiresAt: episode.expiresAt.toISOString() } : {}),
        occurredAt: episode.openedAt.toISOString(),
      };
      const result = await deliverNotification(webhook.url, webhook.secret, event, { production: deps.production, timeoutMs: deps.webhookTimeoutMs });
      await recordEpisodeWebhook(pool, input.tenantId, episode.id, result.ok ? { sent: true } : { sent: false, error: result.error });
      const attempts = episode.webhookAttempts + 1;
      if (result.ok) return { status: 'sent', attempts, httpStatus: result.status };
      logger.warn({ tenantId: input.tenantId, episodeId: episode.id, error: result.error, attempts, final: !result.retryable }, 'notification webhook failed');
      throw result.retryable
        ? ApplicationFailure.retryable(result.error, 'NotificationWebhookFailed')
        : ApplicationFailure.nonRetryable(result.error, NOTIFICATION_WEBHOOK_REJECTED);
    },

    /** `notification.sent` / `.failed` / `.skipped` in the tenant's chain, once per (episode, way of delivery). */
    async recordNotificationOutcome(input: NotificationOutcomeInput): Promise<void> {
      const episode = await getEpisode(pool, input.tenantId, input.episodeId);
      await appendAuditEvent(
        pool,
        {
          tenantId: input.tenantId,
          actor: { type: 'system', id: 'switchboard' },
          action: input.outcome === 'sent' ? 'notification.sent' : input.outcome === 'failed' ? 'notification.failed' : 'notification.skipped',
          resource: episode ? `channel:${episode.channelId}` : `notification_episode:${input.episodeId}`,
          outcome: input.outcome === 'failed' ? 'failure' : 'success',
          ...(input.reason ? { reason: input.reason.slice(0, 200) } : {}),
          details: { episode: input.episodeId, via: input.via, ...(episode ? { kind: episode.kind, level: episode.level } : {}), ...input.details },
        },
        { idempotencyKey: `notify:${input.episodeId}:${input.via}` },
      );
    },
  };
}
