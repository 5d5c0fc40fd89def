import { z } from 'zod';
import { listAuditEvents, type AuditEventRow } from '../../db/audit-reads';
import { withPlatform, withTenant } from '../../db/tenant-scope';
import { defineRoute, isoDate, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { nextSchema, pageOf, pagingQuery } from '../paging';

/**
 * The audit log for reading: a tenant's chain (`audit.read`) and the platform's (operators).
 * Details were PII-masked before they were stored; the hashes and proofs are in `audit:export`.
 */

const eventSchema = z
  .object({
    seq: z.number().int().describe('Position in the chain (1, 2, 3, …)'),
    occurredAt: isoDate,
    actor: z.object({ type: z.enum(['system', 'operator', 'tenant_user', 'meta', 'api_key']), id: z.string().nullable() }),
    action: z.string(),
    resource: z.string().nullable(),
    outcome: z.enum(['success', 'failure']),
    reason: z.string().nullable(),
    ip: z.string().nullable(),
    requestId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'AuditEvent' });

const listQuery = pagingQuery({ key: 'seq' }).extend({
  action: z
    .string()
    .regex(/^[a-z][a-z_]*(\.[a-z_]+)*\.?$/, 'must be an action like auth.login, or a prefix ending in a dot like auth.')
    .max(100, 'must be at most 100 characters')
    .optional()
    .describe('Only this action (`auth.login`), or every action under a prefix ending in a dot (`auth.`)'),
});

const response = z.object({ items: z.array(eventSchema), next: nextSchema });

const view = (e: AuditEventRow) => ({
  seq: Number(e.seq),
  occurredAt: e.occurredAt.toISOString(),
  actor: { type: e.actorType as 'system', id: e.actorId },
  action: e.action,
  resource: e.resource,
  outcome: e.outcome,
  reason: e.reason,
  ip: e.ip,
  requestId: e.requestId,
  details: e.details,
});

export function auditRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  const page = (rows: AuditEventRow[], limit: number) => {
    const p = pageOf(rows, limit, (r) => r.seq);
    return { items: p.rows.map(view), next: p.next };
  };
  return [
    defineRoute({
      id: 'listTenantAudit',
      method: 'GET',
      path: '/tenants/:tenantId/audit',
      summary: "The tenant's audit log, newest first",
      tag: 'audit',
      scope: 'tenant',
      permission: 'audit.read',
      params: tenantParams,
      query: listQuery,
      response,
      handler: async ({ tenantId, query }) => page(await withTenant(pool, tenantId, (tx) => listAuditEvents(tx, tenantId, query)), query.limit),
    }),
    defineRoute({
      id: 'listPlatformAudit',
      method: 'GET',
      path: '/platform/audit',
      summary: "The platform's audit log (operators' actions, sign-ins, denials, CLI commands), newest first",
      tag: 'audit',
      scope: 'platform',
      permission: 'audit.read',
      query: listQuery,
      response,
      handler: async ({ query }) => page(await withPlatform(pool, (tx) => listAuditEvents(tx, 'platform', query)), query.limit),
    }),
  ];
}
