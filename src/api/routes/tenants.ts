import { z } from 'zod';
import { appendAuditEvent } from '../../audit/log';
import { channelCounts } from '../../db/channel-health';
import { withTenant } from '../../db/tenant-scope';
import { createTenant, deleteTenant, getTenant, listTenants, type TenantSummary } from '../../db/tenants';
import { auditContext } from '../audit-context';
import { ApiError, defineRoute, isoDate, notFound, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { encodeCursor, nextSchema, pagingQuery } from '../paging';

const channelCountsSchema = z
  .object({ total: z.number().int(), active: z.number().int(), reauthRequired: z.number().int(), disabled: z.number().int() })
  .describe('Channels per status');

const tenantSchema = z
  .object({ id: z.uuid(), name: z.string(), createdAt: isoDate, channels: channelCountsSchema })
  .meta({ id: 'Tenant' });

const createBody = z.strictObject({
  name: z.string({ error: 'is required' }).trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters'),
});

/** One scope transaction per tenant, a few at a time: a page of 200 must not take the whole pool. */
const COUNT_CONCURRENCY = 4;
async function inBatches<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += COUNT_CONCURRENCY) out.push(...(await Promise.all(items.slice(i, i + COUNT_CONCURRENCY).map(fn))));
  return out;
}

export function tenantsRoutes({ pool, vault, logger }: Pick<ApiDeps, 'pool' | 'vault' | 'logger'>): ApiRoute[] {
  /**
   * Tenant creation and deletion commit in the tenant's own scope, their audit event in the
   * platform chain: two transactions. Once the change is made, a failed append is logged, not
   * answered as if the change had failed.
   */
  const auditPlatform = (event: Parameters<typeof appendAuditEvent>[1], requestId: unknown) =>
    appendAuditEvent(pool, event).then(
      () => undefined,
      (err: unknown) => logger.error({ requestId, action: event.action, err: { name: (err as Error).name, message: (err as Error).message } }, 'audit append failed'),
    );

  const withCounts = async (t: TenantSummary) => ({
    id: t.id,
    name: t.name,
    createdAt: t.createdAt.toISOString(),
    channels: await withTenant(pool, t.id, (tx) => channelCounts(tx)),
  });

  return [
    defineRoute({
      id: 'listTenants',
      method: 'GET',
      path: '/tenants',
      summary: 'Tenants with their channel counts: every tenant for operators, its own for a tenant credential',
      description: 'Newest first.',
      tag: 'tenants',
      scope: 'platform',
      permission: 'analytics.read',
      anyPrincipal: true,
      query: pagingQuery(),
      response: z.object({ items: z.array(tenantSchema), next: nextSchema }),
      handler: async ({ principal, query }) => {
        let tenants: TenantSummary[];
        if (principal.tenantId === null) tenants = await listTenants(pool);
        else {
          const own = await getTenant(pool, principal.tenantId);
          tenants = own ? [own] : [];
        }
        // The list comes whole (ids, then each row in its own scope): paged here on (createdAt, id).
        const cursor = query.before;
        const atMs = cursor ? Date.parse(cursor.at) : Infinity;
        const ordered = tenants
          .filter((t) => t.createdAt.getTime() < atMs || (t.createdAt.getTime() === atMs && cursor?.key !== undefined && t.id < cursor.key))
          .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
        const page = ordered.slice(0, query.limit);
        const last = page.at(-1);
        return {
          items: await inBatches(page, withCounts),
          next: ordered.length > query.limit && last ? encodeCursor(last.createdAt.toISOString(), last.id) : null,
        };
      },
    }),

    defineRoute({
      id: 'createTenant',
      method: 'POST',
      path: '/tenants',
      summary: 'Create a tenant',
      tag: 'tenants',
      scope: 'platform',
      permission: 'tenants.manage',
      body: createBody,
      status: 201,
      response: tenantSchema,
      handler: async ({ body, principal, ctx }) => {
        const { id } = await createTenant(pool, body.name);
        const tenant = await getTenant(pool, id);
        if (!tenant) throw new ApiError(409, 'tenant_deleted', `tenant ${id} was deleted while it was being created`);
        // The operator's action, in the platform chain (the tenant's own chain starts with its first event).
        await auditPlatform({ ...auditContext(ctx, principal), tenantId: null, action: 'tenant.created', resource: `tenant:${id}`, outcome: 'success' }, ctx.state.requestId);
        return withCounts(tenant);
      },
    }),

    defineRoute({
      id: 'getTenant',
      method: 'GET',
      path: '/tenants/:tenantId',
      summary: 'One tenant with its channel counts',
      tag: 'tenants',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      response: tenantSchema,
      handler: async ({ tenantId }) => {
        const tenant = await getTenant(pool, tenantId);
        if (!tenant) throw notFound('tenant', tenantId);
        return withCounts(tenant);
      },
    }),

    defineRoute({
      id: 'deleteTenant',
      method: 'DELETE',
      path: '/tenants/:tenantId',
      summary: 'Delete a tenant and everything it owns (crypto-shredding: its data keys go first)',
      description: 'Irreversible. The audit trail of the tenant stays (it has no foreign key to the tenant); the deletion is recorded in the platform chain.',
      tag: 'tenants',
      scope: 'tenant',
      permission: 'tenants.manage',
      params: tenantParams,
      response: z.object({ id: z.uuid(), deleted: z.literal(true), dataKeysDestroyed: z.number().int() }),
      handler: async ({ tenantId, principal, ctx }) => {
        const result = await deleteTenant(pool, tenantId);
        if (!result.deleted) throw notFound('tenant', tenantId);
        // Keys unwrapped before the deletion must not outlive it in this process's cache.
        vault.evictTenant(tenantId);
        await auditPlatform(
          {
            ...auditContext(ctx, principal),
            tenantId: null,
            action: 'tenant.deleted',
            resource: `tenant:${tenantId}`,
            outcome: 'success',
            details: { dataKeysDestroyed: result.dataKeysDestroyed },
          },
          ctx.state.requestId,
        );
        return { id: tenantId, deleted: true as const, dataKeysDestroyed: result.dataKeysDestroyed };
      },
    }),
  ];
}
