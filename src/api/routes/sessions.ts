import { z } from 'zod';
import { appendAuditEvent } from '../../audit/log';
import { listSessionsIn, revokeSessionIn, type SessionInfo } from '../../auth/sessions';
import { withTenant } from '../../db/tenant-scope';
import { auditContext } from '../audit-context';
import { ApiError, defineRoute, isoDate, tenantParams, uuid, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { nextSchema, pageOf, pagingQuery } from '../paging';

/** The tenant's browser sessions (`users.manage`): who is signed in from where, and ending one. */

const sessionSchema = z
  .object({
    id: z.uuid(),
    userId: z.uuid(),
    createdAt: isoDate,
    lastSeenAt: isoDate.describe('Written at most once a minute'),
    expiresAt: isoDate.describe('Absolute end; an idle session ends earlier'),
    revokedAt: isoDate.nullable(),
    revokedReason: z.string().nullable(),
    ip: z.string().nullable(),
    userAgent: z.string().nullable(),
    current: z.boolean().describe('The session this request came with'),
  })
  .meta({ id: 'Session' });

const listQuery = pagingQuery().extend({
  userId: uuid.optional().describe("Only this user's sessions"),
  state: z.enum(['open', 'all'], 'must be open or all').default('open').describe('open: neither revoked nor past their absolute end'),
});

export function sessionsRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  const view = (s: SessionInfo, currentId: string | undefined) => ({
    id: s.id,
    userId: s.accountId,
    createdAt: s.createdAt.toISOString(),
    lastSeenAt: s.lastSeenAt.toISOString(),
    expiresAt: s.expiresAt.toISOString(),
    revokedAt: s.revokedAt?.toISOString() ?? null,
    revokedReason: s.revokedReason,
    ip: s.ip,
    userAgent: s.userAgent,
    current: s.id === currentId,
  });

  return [
    defineRoute({
      id: 'listSessions',
      method: 'GET',
      path: '/tenants/:tenantId/sessions',
      summary: "The tenant's users' browser sessions, newest first",
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: tenantParams,
      query: listQuery,
      response: z.object({ items: z.array(sessionSchema), next: nextSchema }),
      handler: async ({ tenantId, query, principal }) => {
        const rows = await withTenant(pool, tenantId, (tx) =>
          listSessionsIn(tx, { open: query.state === 'open', userId: query.userId, limit: query.limit + 1, before: query.before }),
        );
        const page = pageOf(rows, query.limit, (r) => r.id);
        const current = principal.credential === 'session' ? principal.sessionId : undefined;
        return { items: page.rows.map((s) => view(s, current)), next: page.next };
      },
    }),
    defineRoute({
      id: 'revokeSession',
      method: 'DELETE',
      path: '/tenants/:tenantId/sessions/:sessionId',
      summary: 'End a session at once (its next request answers 401)',
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: tenantParams.extend({ sessionId: uuid }),
      response: sessionSchema,
      handler: async ({ tenantId, params, principal, ctx }) =>
        withTenant(pool, tenantId, async (tx) => {
          const revoked = await revokeSessionIn(tx, params.sessionId, 'revoked_by_admin');
          const [session] = await listSessionsIn(tx, { sessionId: params.sessionId, limit: 1 });
          if (!session) throw new ApiError(404, 'session_not_found', `no session ${params.sessionId}`);
          if (revoked) {
            await appendAuditEvent(tx, {
              ...auditContext(ctx, principal),
              tenantId,
              action: 'session.revoked',
              resource: `session:${params.sessionId}`,
              outcome: 'success',
              details: { userId: session.accountId },
            });
          }
          return view(session, principal.credential === 'session' ? principal.sessionId : undefined);
        }),
    }),
  ];
}
