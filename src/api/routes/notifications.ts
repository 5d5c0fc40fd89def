import { z } from 'zod';
import { emailSchema } from '../../auth/accounts';
import { loadNotificationSettings, updateNotificationSettings } from '../../db/tenant-settings';
import { tenantNotices, type Notice } from '../../notifications/notices';
import { generateWebhookSecret, webhookUrlProblem } from '../../notifications/webhook';
import { auditContext } from '../audit-context';
import { defineRoute, isoDate, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

/**
 * Where a tenant hears about its channels (docs/token-lifecycle.md, "Notifications"): the address
 * notices are e-mailed to and the optional signed webhook (`settings.read` / `settings.manage`),
 * and the notices themselves — the open episodes the dashboard shows as banners (`analytics.read`,
 * like the channel health they are about).
 */

const settingsSchema = z
  .object({
    notifyEmail: z.string().nullable().describe('Where notices are e-mailed; null: to every active owner of the tenant'),
    recipients: z.enum(['notify_email', 'owners']).describe('Who receives the e-mails now'),
    webhookUrl: z.string().nullable().describe('The signed notification webhook; null: none'),
    webhookSecretSet: z.boolean().describe('Whether a signing secret exists (it is shown once, when generated)'),
  })
  .meta({ id: 'NotificationSettings' });

const putResponse = settingsSchema
  .extend({
    webhookSecret: z
      .string()
      .optional()
      .describe(
        'Present only in the answer that generated it (a first webhookUrl, or rotateWebhookSecret): the HMAC-SHA256 key of `X-Switchboard-Signature`. Store it now: it is never shown again.',
      ),
  })
  .meta({ id: 'NotificationSettingsUpdate' });

const noticeSchema = z
  .object({
    id: z.uuid().describe('The episode id (also the webhook event id)'),
    channelId: z.uuid(),
    platform: z.enum(['messenger', 'instagram']),
    accountId: z.string().describe('Page ID or Instagram professional account ID'),
    kind: z.enum(['reauth_required', 'token_expiring']),
    level: z.enum(['warning', 'critical']),
    reason: z.string().describe('Failure type and Graph error code, or the expiry'),
    openedAt: isoDate,
    expiresAt: isoDate.nullable().describe('token_expiring: when the token expires'),
    parkedReplies: z.number().int().describe('Replies waiting for the channel to be reconnected'),
  })
  .meta({ id: 'Notice' });

const view = (s: { notifyEmail: string | null; webhookUrl: string | null; webhookSecretSet: boolean }) => ({
  notifyEmail: s.notifyEmail,
  recipients: s.notifyEmail ? ('notify_email' as const) : ('owners' as const),
  webhookUrl: s.webhookUrl,
  webhookSecretSet: s.webhookSecretSet,
});

const noticeView = (n: Notice) => ({
  id: n.id,
  channelId: n.channelId,
  platform: n.platform,
  accountId: n.accountId,
  kind: n.kind,
  level: n.level,
  reason: n.reason,
  openedAt: n.openedAt.toISOString(),
  expiresAt: n.expiresAt?.toISOString() ?? null,
  parkedReplies: n.parkedReplies,
});

export function notificationsRoutes({ pool, vault, config }: Pick<ApiDeps, 'pool' | 'vault' | 'config'>): ApiRoute[] {
  const production = config.NODE_ENV === 'production';
  const putBody = z.strictObject({
    notifyEmail: emailSchema.nullable().optional().describe('null: e-mail the owners instead'),
    webhookUrl: z
      .string({ error: 'must be a URL or null' })
      .trim()
      .max(2000, 'must be at most 2000 characters')
      .superRefine((value, ctx) => {
        const problem = webhookUrlProblem(value, { production });
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .nullable()
      .optional()
      .describe('https (http only outside production); null removes the webhook and its secret'),
    rotateWebhookSecret: z.boolean({ error: 'must be true or false' }).optional().describe('true: a new signing secret, returned once in this answer'),
  });

  return [
    defineRoute({
      id: 'getNotificationSettings',
      method: 'GET',
      path: '/tenants/:tenantId/notifications',
      summary: 'Where token and reauthorization notices go: e-mail and the signed webhook (never its secret)',
      tag: 'notifications',
      scope: 'tenant',
      permission: 'settings.read',
      params: tenantParams,
      response: settingsSchema,
      handler: async ({ tenantId }) => view(await loadNotificationSettings(pool, tenantId)),
    }),
    defineRoute({
      id: 'updateNotificationSettings',
      method: 'PUT',
      path: '/tenants/:tenantId/notifications',
      summary: 'Change where notices go; a first webhook URL (or rotateWebhookSecret) returns the signing secret once',
      description:
        'Omitted fields stay as they are. Receivers verify `X-Switchboard-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` and refuse old timestamps (docs/token-lifecycle.md).',
      tag: 'notifications',
      scope: 'tenant',
      permission: 'settings.manage',
      params: tenantParams,
      body: putBody,
      response: putResponse,
      handler: async ({ tenantId, body, principal, ctx }) => {
        const { settings, webhookSecret } = await updateNotificationSettings(pool, vault, tenantId, body, {
          ...auditContext(ctx, principal),
          generateSecret: generateWebhookSecret,
        });
        return { ...view(settings), ...(webhookSecret ? { webhookSecret } : {}) };
      },
    }),
    defineRoute({
      id: 'listNotices',
      method: 'GET',
      path: '/tenants/:tenantId/notices',
      summary: "The tenant's open notices: channels that need reconnecting and tokens about to expire (critical first)",
      tag: 'notifications',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      response: z.object({ items: z.array(noticeSchema) }),
      handler: async ({ tenantId }) => ({ items: (await tenantNotices(pool, tenantId)).map(noticeView) }),
    }),
  ];
}
