import { ActivityFailure, ApplicationFailure, proxyActivities, TimeoutFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { EmailOutcome, WebhookOutcome } from '../activities/notifications';
import { NOTIFICATION_EMAIL_REJECTED, NOTIFICATION_EPISODE_MISSING, NOTIFICATION_WEBHOOK_REJECTED, type NotificationInput } from './token-lifecycle-definitions';

/**
 * One run per notification episode (id `notify/<episodeId>`, started by `requireReauth` /
 * `noteTokenExpiring`): tells the tenant once that a channel needs reconnecting or that its token
 * is about to expire — an e-mail, and the tenant's signed webhook if it configured one, retried
 * durably for up to three days. Thin: the activities read the episode, send, and record; this
 * only orders them and turns their failures into audit outcomes.
 */

export interface NotificationResult {
  episodeId: string;
  /** `closed`: the episode had ended (or was gone) before anything was sent. */
  outcome: 'closed' | 'notified';
  email: EmailOutcome['status'] | 'failed' | null;
  webhook: WebhookOutcome['status'] | 'failed' | null;
}

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes: [NOTIFICATION_EPISODE_MISSING] },
});

/** SMTP outages are usually short: a dozen tries over about an hour, then the e-mail counts as failed. */
const mail = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '10 minutes', maximumAttempts: 12, nonRetryableErrorTypes: [NOTIFICATION_EMAIL_REJECTED, NOTIFICATION_EPISODE_MISSING] },
});

const DAY_MS = 86_400_000;

/** The webhook's durable policy: 5 s doubling to hourly, for three days; a 4xx (but 408/429) ends it at once. */
function webhookActivities(input: NotificationInput) {
  const r = input.webhookRetry;
  return proxyActivities<Activities>({
    startToCloseTimeout: '30 seconds',
    scheduleToCloseTimeout: r?.expireAfterMs ?? 3 * DAY_MS,
    retry: {
      initialInterval: r?.initialIntervalMs ?? 5_000,
      backoffCoefficient: 2,
      maximumInterval: r?.maximumIntervalMs ?? 3_600_000,
      nonRetryableErrorTypes: [NOTIFICATION_WEBHOOK_REJECTED, NOTIFICATION_EPISODE_MISSING],
    },
  });
}

/** What to record for a failed activity: its final error (a status or error class), or that time ran out. */
function failureReason(err: unknown): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure) return 'gave up: retries expired';
  if (cause instanceof ApplicationFailure) return `${cause.type ?? 'error'}: ${cause.message}`.slice(0, 200);
  return cause instanceof Error ? cause.name : 'unknown failure';
}

export async function notificationWorkflow(input: NotificationInput): Promise<NotificationResult> {
  const plan = await bookkeeping.loadNotificationEpisode(input);
  if (!plan.found || plan.closed) {
    await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'episode', outcome: 'skipped', reason: plan.found ? 'episode closed' : 'episode gone' });
    return { episodeId: input.episodeId, outcome: 'closed', email: null, webhook: null };
  }

  // The two ways run side by side: a webhook receiver that is down for days does not hold the e-mail back.
  const email = async (): Promise<NotificationResult['email']> => {
    try {
      const out = await mail.sendEpisodeEmail(input);
      if (out.status === 'sent') {
        await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'email', outcome: 'sent', details: { recipients: out.recipients } });
      } else if (out.status !== 'already_sent') {
        const failed = out.status === 'no_recipients';
        await bookkeeping.recordNotificationOutcome({
          tenantId: input.tenantId,
          episodeId: input.episodeId,
          via: 'email',
          outcome: failed ? 'failed' : 'skipped',
          reason: out.status === 'not_configured' ? 'smtp not configured' : out.status === 'no_recipients' ? 'no recipients' : 'episode closed',
        });
      }
      return out.status;
    } catch (err) {
      await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'email', outcome: 'failed', reason: failureReason(err) });
      return 'failed';
    }
  };

  const webhook = async (): Promise<NotificationResult['webhook']> => {
    if (!plan.webhookConfigured) return null;
    try {
      const out = await webhookActivities(input).deliverEpisodeWebhook(input);
      if (out.status === 'sent') {
        await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'webhook', outcome: 'sent', details: { attempts: out.attempts, httpStatus: out.httpStatus } });
      } else if (out.status !== 'already_sent') {
        await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'webhook', outcome: 'skipped', reason: out.status === 'episode_closed' ? 'episode closed' : 'webhook removed' });
      }
      return out.status;
    } catch (err) {
      await bookkeeping.recordNotificationOutcome({ tenantId: input.tenantId, episodeId: input.episodeId, via: 'webhook', outcome: 'failed', reason: failureReason(err) });
      return 'failed';
    }
  };

  const [emailStatus, webhookStatus] = await Promise.all([email(), webhook()]);
  return { episodeId: input.episodeId, outcome: 'notified', email: emailStatus, webhook: webhookStatus };
}
