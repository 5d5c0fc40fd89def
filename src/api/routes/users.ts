import type { Context } from 'koa';
import { z } from 'zod';
import { appendAuditEvent } from '../../audit/log';
import { AccountError, createTenantUser, emailSchema, tenantRoleSchema } from '../../auth/accounts';
import { MIN_PASSWORD_LENGTH, PasswordPolicyError } from '../../auth/passwords';
import { canGrantRole, type Principal, type Role, type TenantRole } from '../../auth/permissions';
import { revokeSessionsOfIn } from '../../auth/sessions';
import { getTenantUser, LastOwnerError, listTenantUsers, updateTenantUser, type TenantUserRow } from '../../db/people';
import { withTenant } from '../../db/tenant-scope';
import { auditContext } from '../audit-context';
import { ApiError, defineRoute, isoDate, notFound, tenantParams, uuid, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { nextSchema, pageOf, pagingQuery } from '../paging';

/**
 * A tenant's users (`users.manage`). Nobody grants a role above their own, nor changes someone
 * whose role is above their own (an admin neither creates nor demotes nor disables an owner), and
 * the tenant always keeps one active owner. Disabling a user ends its sessions at once. Every
 * change is audited in the tenant's chain, in the transaction that makes it.
 */

const userSchema = z
  .object({
    id: z.uuid(),
    email: z.string(),
    role: tenantRoleSchema,
    disabled: z.boolean(),
    disabledAt: isoDate.nullable(),
    createdAt: isoDate,
    openSessions: z.number().int().describe('Sessions not revoked and not past their absolute end'),
  })
  .meta({ id: 'TenantUser' });

const userParams = tenantParams.extend({ userId: uuid });

const createBody = z.strictObject({
  email: emailSchema,
  role: tenantRoleSchema,
  password: z
    .string({ error: 'is required' })
    .min(MIN_PASSWORD_LENGTH, `must be at least ${MIN_PASSWORD_LENGTH} characters`)
    .max(1024, 'must be at most 1024 characters')
    .describe('The initial password (never stored, only its scrypt hash; never logged or audited)'),
});

const patchBody = z
  .strictObject({
    role: tenantRoleSchema.optional(),
    disabled: z.boolean({ error: 'must be true or false' }).optional().describe('true disables the user and ends its sessions; false enables it again'),
  })
  .refine((b) => b.role !== undefined || b.disabled !== undefined, 'give role or disabled');

const view = (u: TenantUserRow) => ({
  id: u.id,
  email: u.email,
  role: u.role,
  disabled: u.disabledAt !== null,
  disabledAt: u.disabledAt?.toISOString() ?? null,
  createdAt: u.createdAt.toISOString(),
  openSessions: u.openSessions,
});

const notGrantable = (principal: Principal, role: Role, what: string) =>
  new ApiError(403, 'role_not_grantable', `the role ${principal.role} cannot ${what} ${role === 'owner' || role === 'operator' ? 'an' : 'a'} ${role}: nobody acts above their own role`);

export function usersRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  /** The one change path of PATCH and DELETE: checks, update, session revocation and audit in one transaction. */
  const change = (tenantId: string, userId: string, patch: { role?: TenantRole; disabled?: boolean }, principal: Principal, ctx: Context) =>
    withTenant(pool, tenantId, async (tx) => {
      const before = await getTenantUser(tx, userId);
      if (!before) throw notFound('user', userId);
      if (!canGrantRole(principal.role, before.role)) throw notGrantable(principal, before.role, 'change');
      if (patch.role !== undefined && !canGrantRole(principal.role, patch.role)) throw notGrantable(principal, patch.role, 'make someone');
      let after: TenantUserRow | null;
      try {
        after = await updateTenantUser(tx, userId, patch);
      } catch (err) {
        if (err instanceof LastOwnerError) throw new ApiError(409, 'last_owner', err.message);
        throw err;
      }
      if (!after) throw notFound('user', userId);
      const sessionsRevoked = after.disabledAt !== null && before.disabledAt === null ? await revokeSessionsOfIn(tx, userId, 'user_disabled') : 0;
      await appendAuditEvent(tx, {
        ...auditContext(ctx, principal),
        tenantId,
        action: 'user.updated',
        resource: `tenant_user:${userId}`,
        outcome: 'success',
        details: {
          from: { role: before.role, disabled: before.disabledAt !== null },
          to: { role: after.role, disabled: after.disabledAt !== null },
          sessionsRevoked,
        },
      });
      return view({ ...after, openSessions: after.openSessions - sessionsRevoked });
    });

  return [
    defineRoute({
      id: 'listUsers',
      method: 'GET',
      path: '/tenants/:tenantId/users',
      summary: "The tenant's users, newest first",
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: tenantParams,
      query: pagingQuery(),
      response: z.object({ items: z.array(userSchema), next: nextSchema }),
      handler: async ({ tenantId, query }) => {
        const rows = await withTenant(pool, tenantId, (tx) => listTenantUsers(tx, query));
        const page = pageOf(rows, query.limit, (r) => r.id);
        return { items: page.rows.map(view), next: page.next };
      },
    }),

    defineRoute({
      id: 'createUser',
      method: 'POST',
      path: '/tenants/:tenantId/users',
      summary: 'Create a user of the tenant with a role and an initial password',
      description: 'The role must not be above the caller’s own (403 `role_not_grantable`). An email already used by any account answers 409.',
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: tenantParams,
      body: createBody,
      status: 201,
      errors: [409, 422],
      response: userSchema,
      handler: async ({ tenantId, body, principal, ctx }) => {
        if (!canGrantRole(principal.role, body.role)) throw notGrantable(principal, body.role, 'create');
        try {
          const created = await createTenantUser(pool, { tenantId, email: body.email, role: body.role, password: body.password }, (tx, u) =>
            appendAuditEvent(tx, { ...auditContext(ctx, principal), tenantId, action: 'user.created', resource: `tenant_user:${u.id}`, outcome: 'success', details: { role: u.role } }).then(() => undefined),
          );
          return view({ ...created, disabledAt: null, openSessions: 0, cursor_at: '' });
        } catch (err) {
          if (err instanceof AccountError) throw new ApiError(409, 'account_exists', err.message);
          if (err instanceof PasswordPolicyError) throw new ApiError(422, 'password_policy', `password: ${err.message}`);
          throw err;
        }
      },
    }),

    defineRoute({
      id: 'updateUser',
      method: 'PATCH',
      path: '/tenants/:tenantId/users/:userId',
      summary: 'Change a user’s role, or disable / enable it',
      description: 'Disabling ends the user’s sessions at once. The last active owner cannot be demoted or disabled (409 `last_owner`).',
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: userParams,
      body: patchBody,
      errors: [409],
      response: userSchema,
      handler: async ({ tenantId, params, body, principal, ctx }) => change(tenantId, params.userId, body, principal, ctx),
    }),

    defineRoute({
      id: 'disableUser',
      method: 'DELETE',
      path: '/tenants/:tenantId/users/:userId',
      summary: 'Disable a user (accounts are kept for the audit trail) and end its sessions',
      tag: 'people',
      scope: 'tenant',
      permission: 'users.manage',
      params: userParams,
      errors: [409],
      response: userSchema,
      handler: async ({ tenantId, params, principal, ctx }) => change(tenantId, params.userId, { disabled: true }, principal, ctx),
    }),
  ];
}
