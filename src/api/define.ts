import type { Context } from 'koa';
import { z } from 'zod';
import type { Permission, Principal } from '../auth/permissions';

/**
 * One `/api/v1` operation, declared once: its path, permission, zod schemas and handler. The
 * router (src/api/router.ts) validates requests and answers with these schemas; the OpenAPI
 * document (src/api/openapi.ts) is generated from the very same objects, so the two cannot drift.
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * `tenant`: the path starts with `/tenants/:tenantId` and the handler runs for that tenant (a
 * tenant principal of another tenant gets the same 404 as for a tenant that does not exist).
 * `platform`: no tenant in the path; the permission must be held platform-wide (operators), unless
 * `anyPrincipal` is set (e.g. "who am I").
 */
export type RouteScope = 'tenant' | 'platform';

export interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: Principal;
  /** The tenant in the path (tenant-scoped routes), lower-cased. */
  tenantId: string;
  ctx: Context;
}

interface RouteMeta<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType> {
  /** OpenAPI operationId; unique. */
  id: string;
  method: HttpMethod;
  /** Under /api/v1, koa-style parameters (`/tenants/:tenantId/channels`). */
  path: string;
  summary: string;
  description?: string;
  tag: string;
  scope: RouteScope;
  permission: Permission;
  /** Platform routes any signed-in principal may call (the permission is then documentation only). */
  anyPrincipal?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  response: R;
  /** Success status (default 200; 201 for creations, 204 without a body). */
  status?: 200 | 201 | 202 | 204;
  /** Error statuses this route answers besides the common ones (400, 401, 403, 404, 500). */
  errors?: readonly number[];
}

export interface ApiRouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType> extends RouteMeta<P, Q, B, R> {
  handler: (input: HandlerInput<z.output<P>, z.output<Q>, z.output<B>>) => Promise<z.input<R>>;
}

/** The erased form the router and the document generator walk. */
export interface ApiRoute extends RouteMeta<z.ZodType, z.ZodType, z.ZodType, z.ZodType> {
  handler: (input: HandlerInput<any, any, any>) => Promise<unknown>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export function defineRoute<P extends z.ZodType = z.ZodObject<{}>, Q extends z.ZodType = z.ZodObject<{}>, B extends z.ZodType = z.ZodUndefined, R extends z.ZodType = z.ZodType>(
  spec: ApiRouteSpec<P, Q, B, R>,
): ApiRoute {
  return spec as unknown as ApiRoute;
}

/** A handler's way to answer with an error: `{ error: { code, message } }` and the status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, `${what.replace(/ /g, '_')}_not_found`, `no ${what} ${id}`);

/** Shared schema pieces. */
export const uuid = z.uuid('must be a UUID').transform((v) => v.toLowerCase());
export const tenantParams = z.object({ tenantId: uuid });
export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().describe('Stable machine-readable code, e.g. `not_found`, `invalid_request`'),
      message: z.string().describe('What went wrong, in words'),
      problems: z.array(z.object({ path: z.string(), message: z.string() })).optional().describe('Each invalid field (400)'),
    }),
  })
  .meta({ id: 'Error' });
export const pageQuery = z.object({
  limit: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').max(200, 'must be at most 200').default(50),
  before: z.iso.datetime({ offset: true, error: 'must be an ISO-8601 timestamp' }).optional().describe('Only items created before this time (the previous page’s `next`)'),
});
export const isoDate = z.iso.datetime({ offset: true });
