import type { Context } from 'koa';
import { z } from 'zod';
import { appendAuditEvent } from '../../audit/log';
import { tenantRoleSchema } from '../../auth/accounts';
import { ApiKeyError, createApiKeyIn, getApiKeyIn, listApiKeysIn, revokeApiKeyIn, type ApiKeyInfo } from '../../auth/api-keys';
import { canGrantRole, type Principal, type Role } from '../../auth/permissions';
import { withScope } from '../../db/tenant-scope';
import { auditContext, principalRef } from '../audit-context';
import { ApiError, defineRoute, isoDate, tenantParams, uuid, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

/**
 * API keys of a tenant (`api_keys.manage`) and of the platform (operators). The key itself is in
 * the 201 of its creation and nowhere else (the database keeps its hash). A key never gets a role
 * above its creator's, and nobody revokes a key whose role is above their own. Creations and
 * revocations are audited in the key's chain, in the same transaction.
 */

const keySchema = z
  .object({
    id: z.uuid(),
    prefix: z.string().describe('The public part of the key (`sb_<prefix>_…`): names it in lists and the audit trail'),
    name: z.string(),
    role: z.enum(['owner', 'admin', 'developer', 'viewer', 'operator']),
    tenantId: z.uuid().nullable().describe('null for a platform key'),
    createdBy: z.string(),
    createdAt: isoDate,
    lastUsedAt: isoDate.nullable(),
    revokedAt: isoDate.nullable(),
  })
  .meta({ id: 'ApiKey' });

const createdKeySchema = keySchema
  .extend({ key: z.string().describe('The key: shown this once, store it now (only its hash is kept)') })
  .meta({ id: 'CreatedApiKey' });

const name = z.string({ error: 'is required' }).trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters');
const tenantCreateBody = z.strictObject({ name, role: tenantRoleSchema });
const platformCreateBody = z.strictObject({ name });
const listQuery = z.object({
  revoked: z.enum(['include', 'exclude'], 'must be include or exclude').default('include').describe('Whether revoked keys are listed'),
});

const view = (k: ApiKeyInfo) => ({
  id: k.id,
  prefix: k.prefix,
  name: k.name,
  role: k.role,
  tenantId: k.tenantId,
  createdBy: k.createdBy,
  createdAt: k.createdAt.toISOString(),
  lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

export function apiKeysRoutes({ pool }: Pick<ApiDeps, 'pool'>): ApiRoute[] {
  const list = (tenantId: string | null, includeRevoked: boolean) =>
    withScope(pool, tenantId, async (tx) => ({ items: (await listApiKeysIn(tx, { includeRevoked })).map(view) }));

  const create = (tenantId: string | null, input: { name: string; role: Role }, principal: Principal, ctx: Context) => {
    if (!canGrantRole(principal.role, input.role)) {
      throw new ApiError(403, 'role_not_grantable', `the role ${principal.role} cannot create a key with the role ${input.role}: a key never gets a role above its creator's`);
    }
    return withScope(pool, tenantId, async (tx) => {
      let created;
      try {
        created = await createApiKeyIn(tx, { tenantId, role: input.role, name: input.name, createdBy: principalRef(principal) });
      } catch (err) {
        if (err instanceof ApiKeyError) throw new ApiError(422, 'invalid_api_key', err.message);
        throw err;
      }
      await appendAuditEvent(tx, {
        ...auditContext(ctx, principal),
        tenantId,
        action: 'api_key.created',
        resource: `api_key:${created.id}`,
        outcome: 'success',
        details: { prefix: created.prefix, role: created.role },
      });
      return {
        ...view({ ...created, createdBy: principalRef(principal), lastUsedAt: null, revokedAt: null }),
        key: created.key,
      };
    });
  };

  const revoke = (tenantId: string | null, keyId: string, principal: Principal, ctx: Context) =>
    withScope(pool, tenantId, async (tx) => {
      const key = await getApiKeyIn(tx, keyId, { forUpdate: true });
      if (!key) throw new ApiError(404, 'api_key_not_found', `no API key ${keyId}`);
      if (!canGrantRole(principal.role, key.role)) {
        throw new ApiError(403, 'role_not_grantable', `the role ${principal.role} cannot revoke a key with the role ${key.role}`);
      }
      const result = await revokeApiKeyIn(tx, keyId);
      if (result?.revoked) {
        await appendAuditEvent(tx, { ...auditContext(ctx, principal), tenantId, action: 'api_key.revoked', resource: `api_key:${keyId}`, outcome: 'success' });
      }
      return view((await getApiKeyIn(tx, keyId))!);
    });

  const keyParams = tenantParams.extend({ keyId: uuid });
  const platformKeyParams = z.object({ keyId: uuid });

  return [
    defineRoute({
      id: 'listApiKeys',
      method: 'GET',
      path: '/tenants/:tenantId/api-keys',
      summary: "The tenant's API keys (never the keys themselves)",
      tag: 'api-keys',
      scope: 'tenant',
      permission: 'api_keys.manage',
      params: tenantParams,
      query: listQuery,
      response: z.object({ items: z.array(keySchema) }),
      handler: async ({ tenantId, query }) => list(tenantId, query.revoked === 'include'),
    }),
    defineRoute({
      id: 'createApiKey',
      method: 'POST',
      path: '/tenants/:tenantId/api-keys',
      summary: 'Create a tenant API key; the key is in this response only',
      description: 'The role must not be above the caller’s own (403 `role_not_grantable`).',
      tag: 'api-keys',
      scope: 'tenant',
      permission: 'api_keys.manage',
      params: tenantParams,
      body: tenantCreateBody,
      status: 201,
      errors: [422],
      response: createdKeySchema,
      handler: async ({ tenantId, body, principal, ctx }) => create(tenantId, body, principal, ctx),
    }),
    defineRoute({
      id: 'revokeApiKey',
      method: 'DELETE',
      path: '/tenants/:tenantId/api-keys/:keyId',
      summary: 'Revoke a tenant API key (at once; revoking again changes nothing)',
      tag: 'api-keys',
      scope: 'tenant',
      permission: 'api_keys.manage',
      params: keyParams,
      response: keySchema,
      handler: async ({ tenantId, params, principal, ctx }) => revoke(tenantId, params.keyId, principal, ctx),
    }),
    defineRoute({
      id: 'listPlatformApiKeys',
      method: 'GET',
      path: '/platform/api-keys',
      summary: 'Platform API keys (they act as an operator)',
      tag: 'api-keys',
      scope: 'platform',
      permission: 'api_keys.manage',
      query: listQuery,
      response: z.object({ items: z.array(keySchema) }),
      handler: async ({ query }) => list(null, query.revoked === 'include'),
    }),
    defineRoute({
      id: 'createPlatformApiKey',
      method: 'POST',
      path: '/platform/api-keys',
      summary: 'Create a platform API key (role operator); the key is in this response only',
      tag: 'api-keys',
      scope: 'platform',
      permission: 'api_keys.manage',
      body: platformCreateBody,
      status: 201,
      errors: [422],
      response: createdKeySchema,
      handler: async ({ body, principal, ctx }) => create(null, { name: body.name, role: 'operator' }, principal, ctx),
    }),
    defineRoute({
      id: 'revokePlatformApiKey',
      method: 'DELETE',
      path: '/platform/api-keys/:keyId',
      summary: 'Revoke a platform API key',
      tag: 'api-keys',
      scope: 'platform',
      permission: 'api_keys.manage',
      params: platformKeyParams,
      response: keySchema,
      handler: async ({ params, principal, ctx }) => revoke(null, params.keyId, principal, ctx),
    }),
  ];
}
