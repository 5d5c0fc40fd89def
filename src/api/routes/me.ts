import { z } from 'zod';
import { PERMISSION_NAMES, roleHas } from '../../auth/permissions';
import { defineRoute, type ApiRoute } from '../define';

const principalSchema = z.object({
  kind: z.enum(['operator', 'tenant_user', 'api_key']),
  id: z.string(),
  role: z.enum(['owner', 'admin', 'developer', 'viewer', 'operator']),
  tenantId: z.string().nullable().describe('null for platform operators and platform keys'),
  credential: z.enum(['session', 'api_key', 'static_token']),
  permissions: z.array(z.string()).describe('What the role may do in its scope (src/auth/permissions.ts)'),
});

export function meRoutes(): ApiRoute[] {
  return [
    defineRoute({
      id: 'getMe',
      method: 'GET',
      path: '/me',
      summary: 'Who the credential belongs to, and what it may do',
      tag: 'people',
      scope: 'platform',
      permission: 'settings.read',
      anyPrincipal: true,
      response: principalSchema,
      handler: async ({ principal }) => ({
        kind: principal.kind,
        id: principal.id,
        role: principal.role,
        tenantId: principal.tenantId,
        credential: principal.credential,
        permissions: PERMISSION_NAMES.filter((p) => roleHas(principal.role, p)),
      }),
    }),
  ];
}
