import { z } from 'zod';
import { channelHealth, type ChannelHealthRow } from '../../db/channel-health';
import { withTenant } from '../../db/tenant-scope';
import { ApiError, defineRoute, isoDate, tenantParams, uuid, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

/** The tenant's channels with their health (`analytics.read`). Never a token. */

const channelSchema = z
  .object({
    id: z.uuid(),
    platform: z.enum(['messenger', 'instagram']),
    accountId: z.string().describe('Page ID or Instagram professional account ID'),
    status: z.enum(['active', 'reauth_required', 'disabled']),
    statusReason: z.string().nullable(),
    statusChangedAt: isoDate,
    createdAt: isoDate,
    health: z.object({
      token: z
        .enum(['valid', 'expiring', 'reauth_required', 'disabled'])
        .describe('reauth_required after an auth failure (or once the token expired); expiring within 7 days of tokenExpiresAt'),
      tokenExpiresAt: isoDate.nullable().describe('null: not known (a Page token that does not expire, or not checked yet)'),
      webhookSubscribed: z.boolean().nullable().describe("Meta's webhook subscription at the last check; null: not checked yet"),
      webhookCheckedAt: isoDate.nullable(),
      lastEventAt: isoDate.nullable().describe('Newest customer message or conversation event (reaction, read, …) of the channel'),
    }),
  })
  .meta({ id: 'Channel' });

const iso = (d: Date | null) => d?.toISOString() ?? null;

const view = (c: ChannelHealthRow) => ({
  id: c.id,
  platform: c.platform,
  accountId: c.accountId,
  status: c.status,
  statusReason: c.statusReason,
  statusChangedAt: c.statusChangedAt.toISOString(),
  createdAt: c.createdAt.toISOString(),
  health: {
    token: c.health.token,
    tokenExpiresAt: iso(c.health.tokenExpiresAt),
    webhookSubscribed: c.health.webhookSubscribed,
    webhookCheckedAt: iso(c.health.webhookCheckedAt),
    lastEventAt: iso(c.health.lastEventAt),
  },
});

export function channelsRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  return [
    defineRoute({
      id: 'listChannels',
      method: 'GET',
      path: '/tenants/:tenantId/channels',
      summary: "The tenant's channels and their health, oldest first",
      tag: 'channels',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      response: z.object({ items: z.array(channelSchema) }),
      handler: async ({ tenantId }) => ({ items: (await withTenant(pool, tenantId, (tx) => channelHealth(tx))).map(view) }),
    }),
    defineRoute({
      id: 'getChannel',
      method: 'GET',
      path: '/tenants/:tenantId/channels/:channelId',
      summary: 'One channel and its health',
      tag: 'channels',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams.extend({ channelId: uuid }),
      response: channelSchema,
      handler: async ({ tenantId, params }) => {
        const [channel] = await withTenant(pool, tenantId, (tx) => channelHealth(tx, { channelId: params.channelId }));
        if (!channel) throw new ApiError(404, 'channel_not_found', `no channel ${params.channelId}`);
        return view(channel);
      },
    }),
  ];
}
