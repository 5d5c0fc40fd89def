import type { ApiRoute } from '../define';
import type { ApiDeps } from '../deps';
import { apiKeysRoutes } from './api-keys';
import { auditRoutes } from './audit';
import { channelsRoutes } from './channels';
import { conversationsRoutes } from './conversations';
import { keysRoutes } from './keys';
import { meRoutes } from './me';
import { sessionsRoutes } from './sessions';
import { tenantsRoutes } from './tenants';
import { usersRoutes } from './users';
import { metricsRoutes } from './metrics';
import { notificationsRoutes } from './notifications';
import { workflowsRoutes } from './workflows';

/** Every /api/v1 operation (walked by the OpenAPI generator and by test/integration/api-authz.test.ts). */
export function allApiRoutes(_deps: ApiDeps): ApiRoute[] {
  return [
    ...meRoutes(),
    ...tenantsRoutes(_deps),
    ...usersRoutes(_deps),
    ...apiKeysRoutes(_deps),
    ...sessionsRoutes(_deps),
    ...channelsRoutes(_deps),
    ...conversationsRoutes(_deps),
    ...auditRoutes(_deps),
    ...keysRoutes(_deps),
    ...metricsRoutes(_deps),
    ...workflowsRoutes(_deps),
    ...notificationsRoutes(_deps),
  ];
}
