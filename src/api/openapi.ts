import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { PERMISSIONS } from '../auth/permissions';
import { SESSION_COOKIE } from '../auth/sessions';
import { errorSchema, type ApiRoute } from './define';

/**
 * The OpenAPI 3.1 document of /api/v1, generated from the routes' own zod schemas (3.1 uses JSON
 * Schema 2020-12, which `z.toJSONSchema` emits). Served at /api/v1/openapi.json.
 */

type JsonSchema = Record<string, unknown>;

/** Replaces every `$ref` value in `node` (in place) through `map`. */
function rewriteRefs(node: unknown, map: (ref: string) => string): void {
  if (Array.isArray(node)) node.forEach((n) => rewriteRefs(n, map));
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    for (const [k, v] of Object.entries(o)) {
      if (k === '$ref' && typeof v === 'string') o[k] = map(v);
      else rewriteRefs(v, map);
    }
  }
}

/**
 * A zod schema as JSON Schema 2020-12. Schemas named with `.meta({ id })` come out of zod as
 * `$defs` of the schema itself with `#/$defs/<id>` references, which inside an OpenAPI document
 * would point at the document's root: they are moved to `components.schemas` (`defs`) and the
 * references rewritten. The same id with another shape (a schema's input form differs from its
 * output form) gets a numbered name of its own.
 */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output', defs: Record<string, JsonSchema>): JsonSchema {
  const { $schema: _drop, $defs, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', reused: 'inline' }) as JsonSchema;
  const local = ($defs ?? {}) as Record<string, JsonSchema>;
  const names = new Map<string, string>();
  for (const [id, def] of Object.entries(local)) {
    let name = id;
    for (let n = 2; defs[name] !== undefined && !isDeepStrictEqual(defs[name], def); n++) name = `${id}${n}`;
    names.set(id, name);
  }
  const map = (ref: string) => {
    const m = /^#\/\$defs\/(.+)$/.exec(ref);
    return m && names.has(m[1]!) ? `#/components/schemas/${names.get(m[1]!)}` : ref;
  };
  for (const [id, def] of Object.entries(local)) {
    rewriteRefs(def, map);
    defs[names.get(id)!] = def;
  }
  rewriteRefs(rest, map);
  return rest;
}

function parameters(schema: z.ZodType | undefined, where: 'path' | 'query', defs: Record<string, JsonSchema>): unknown[] {
  if (!schema) return [];
  const s = jsonSchema(schema, 'input', defs) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, prop]) => {
    const { description, ...propSchema } = prop;
    return {
      name,
      in: where,
      required: where === 'path' || (s.required ?? []).includes(name),
      ...(description !== undefined && { description }),
      schema: propSchema,
    };
  });
}

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid request: the problems name each bad field',
  401: 'No valid credential',
  403: 'The role lacks the permission (or a signed-in browser sent no CSRF token)',
  404: 'No such resource — also the answer for another tenant’s resource',
  409: 'Conflict with the current state',
  413: 'Body too large',
  415: 'Body is not application/json',
  422: 'Understood but refused',
  500: 'Internal error (never a stack trace; see x-request-id)',
  503: 'A dependency (Temporal, the database) is unavailable',
};

export function buildOpenApiDocument(routes: readonly ApiRoute[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const defs: Record<string, JsonSchema> = {};
  jsonSchema(errorSchema, 'output', defs);
  for (const route of routes) {
    const path = route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const statuses = new Set([400, 401, 403, 404, 500, ...(route.errors ?? []), ...(route.body ? [413, 415] : [])]);
    const success = route.status ?? 200;
    const permission = PERMISSIONS[route.permission];
    (paths[path] ??= {})[route.method.toLowerCase()] = {
      operationId: route.id,
      summary: route.summary,
      description: [route.description, route.anyPrincipal ? 'Any signed-in principal.' : `Permission: \`${route.permission}\` — ${permission.description}.`]
        .filter(Boolean)
        .join('\n\n'),
      tags: [route.tag],
      parameters: [...parameters(route.params, 'path', defs), ...parameters(route.query, 'query', defs)],
      ...(route.body && { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body, 'input', defs) } } } }),
      responses: {
        [String(success)]:
          success === 204 ? { description: 'Done' } : { description: 'Success', content: { 'application/json': { schema: jsonSchema(route.response, 'output', defs) } } },
        ...Object.fromEntries(
          [...statuses].sort().map((s) => [String(s), { description: ERROR_TEXT[s] ?? 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }]),
        ),
      },
      'x-permission': route.permission,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Switchboard admin API',
      version: '1',
      description:
        'Tenants, users, API keys, channels and their health, conversations, the audit log and key status. ' +
        'Every error is `{ "error": { "code", "message" } }`. Tenant credentials reach only their own tenant; another tenant’s resources answer 404.',
    },
    servers: [{ url: '/api/v1' }],
    security: [{ apiKey: [] }, { session: [] }],
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'An API key `sb_<prefix>_<secret>` (created with `api-keys:create` or POST /tenants/{tenantId}/api-keys)' },
        session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'A browser session from POST /auth/login; changes also need the x-csrf-token header' },
      },
      schemas: defs,
    },
    paths,
  };
}
