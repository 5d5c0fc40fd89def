import { z } from 'zod';
import { METRICS_MAX_WINDOW_MINUTES, tenantMetrics } from '../../db/metrics';
import { defineRoute, isoDate, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

const metricsQuery = z.object({
  window: z.coerce
    .number({ error: 'must be a number of minutes' })
    .int('must be a whole number of minutes')
    .min(1, 'must be at least 1 minute')
    .max(METRICS_MAX_WINDOW_MINUTES, `must be at most ${METRICS_MAX_WINDOW_MINUTES} minutes`)
    .default(60)
    .describe('Minutes back from now (the current minute included)'),
});

const metricsSchema = z
  .object({
    tenantId: z.string(),
    windowMinutes: z.number().int(),
    from: isoDate.describe('Start of the first minute'),
    to: isoDate.describe('End of the last (current, partial) minute'),
    series: z
      .array(z.object({ minute: isoDate, inbound: z.number().int(), repliesSent: z.number().int() }))
      .describe('One point per minute, oldest first: customer messages received, replies (bot and human) sent'),
    totals: z.object({
      inbound: z.number().int(),
      repliesSent: z.number().int(),
      botReplies: z.number().int(),
      humanReplies: z.number().int(),
      failedReplies: z.number().int().describe('Outbound messages that failed for good (not retried any more)'),
    }),
    latency: z
      .object({
        samples: z.number().int(),
        p50Ms: z.number().int().nullable(),
        p95Ms: z.number().int().nullable(),
        maxMs: z.number().int().nullable(),
      })
      .describe("Bot reply latency: the reply's sent_at minus the answered inbound message's created_at (null without samples)"),
  })
  .meta({ id: 'TenantMetrics' });

export function metricsRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  return [
    defineRoute({
      id: 'getTenantMetrics',
      method: 'GET',
      path: '/tenants/:tenantId/metrics',
      summary: 'Message throughput per minute and bot reply latency (p50/p95) over a recent window',
      tag: 'analytics',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      query: metricsQuery,
      response: metricsSchema,
      handler: async ({ tenantId, query }) => {
        const m = await tenantMetrics(pool, tenantId, query.window);
        return {
          tenantId,
          windowMinutes: query.window,
          from: m.from.toISOString(),
          to: m.to.toISOString(),
          series: m.series.map((p) => ({ minute: p.minute.toISOString(), inbound: p.inbound, repliesSent: p.repliesSent })),
          totals: m.totals,
          latency: m.latency,
        };
      },
    }),
  ];
}
