import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import type { ApiRoute } from '../../src/api/define';
import type { ApiDeps } from '../../src/api/deps';
import { buildOpenApiDocument } from '../../src/api/openapi';
import { allApiRoutes } from '../../src/api/routes';
import { PERMISSION_NAMES } from '../../src/auth/permissions';
import { parseConfig } from '../../src/config';

/**
 * The OpenAPI 3.1 document of /api/v1 (generated from the routes' zod schemas): every route is in
 * it with its method, every path parameter, its query parameters and its request body; and the
 * document is structurally valid OpenAPI 3.1 (paths, operations, parameters, responses, $refs).
 * Routes are read from `allApiRoutes`, so a route added later is checked without editing this file.
 */

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

const config = parseConfig({
  NODE_ENV: 'test',
  DATABASE_URL: 'postgres://unused@127.0.0.1/unused',
  META_APP_SECRET: 'unused-secret',
  META_VERIFY_TOKEN: 'unused-token',
  MASTER_KEYS: `1:${randomBytes(32).toString('base64')}`,
});
// Building the routes touches no dependency; handlers (which would) never run here.
const deps = { config, pool: {} as Pool, vault: {}, temporal: {}, logger: {} } as unknown as ApiDeps;
const routes: ApiRoute[] = allApiRoutes(deps);
const doc = buildOpenApiDocument(routes) as Json;

const templated = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
const pathParamNames = (path: string) => [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
const operationOf = (route: ApiRoute): Json | undefined => doc.paths?.[templated(route.path)]?.[route.method.toLowerCase()];
const queryNames = (route: ApiRoute): string[] => Object.keys((route.query as unknown as { shape?: Record<string, unknown> } | undefined)?.shape ?? {});

/** Every `$ref` value anywhere in `node`. */
function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => refsIn(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refsIn(v, out);
    }
  }
  return out;
}

function resolve(ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, key) => (node && typeof node === 'object' ? (node as Json)[key] : undefined), doc);
}

describe('the OpenAPI document', () => {
  it('is OpenAPI 3.1 with info, servers, security schemes and the shared Error schema', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(typeof doc.info.title).toBe('string');
    expect(typeof doc.info.version).toBe('string');
    expect(doc.servers).toEqual([{ url: '/api/v1' }]);
    expect(doc.components.schemas.Error).toMatchObject({ type: 'object', required: ['error'] });
    for (const requirement of doc.security) for (const name of Object.keys(requirement)) expect(doc.components.securitySchemes[name]).toBeDefined();
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc); // plain JSON, nothing lost on the wire
  });

  it('lists a route list of real size, with unique operation ids', () => {
    expect(routes.length).toBeGreaterThanOrEqual(20);
    const ids = routes.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each(routes.map((r) => [`${r.method} ${r.path}`, r] as const))('documents %s: method, operation id, permission, tag', (_label, route) => {
    const op = operationOf(route);
    expect(op).toBeDefined();
    expect(op!.operationId).toBe(route.id);
    expect(op!.summary).toBe(route.summary);
    expect(op!.tags).toEqual([route.tag]);
    expect(op!['x-permission']).toBe(route.permission);
    expect(PERMISSION_NAMES).toContain(route.permission);
  });

  it.each(routes.map((r) => [`${r.method} ${r.path}`, r] as const))('documents every path and query parameter of %s', (_label, route) => {
    const op = operationOf(route)!;
    const params = op.parameters as Json[];
    for (const p of params) {
      expect(['path', 'query', 'header', 'cookie']).toContain(p.in);
      expect(typeof p.name).toBe('string');
      expect(typeof p.schema).toBe('object');
    }
    const keys = params.map((p) => `${p.in}:${p.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    // OpenAPI: each templated segment has exactly one required path parameter, and no other path parameter exists.
    const inPath = params.filter((p) => p.in === 'path');
    expect(inPath.map((p) => p.name).sort()).toEqual(pathParamNames(route.path).sort());
    expect(inPath.every((p) => p.required === true)).toBe(true);
    expect(params.filter((p) => p.in === 'query').map((p) => p.name).sort()).toEqual(queryNames(route).sort());
  });

  it.each(routes.map((r) => [`${r.method} ${r.path}`, r] as const))('documents the request body and the responses of %s', (_label, route) => {
    const op = operationOf(route)!;
    if (route.body) {
      expect(op.requestBody.required).toBe(true);
      const schema = op.requestBody.content['application/json'].schema;
      expect(schema.type).toBe('object');
      expect(Object.keys(schema.properties ?? {}).length).toBeGreaterThan(0);
    } else {
      expect(op.requestBody).toBeUndefined();
    }
    const statuses = Object.keys(op.responses);
    expect(statuses.every((s) => /^[1-5][0-9][0-9]$/.test(s))).toBe(true);
    const success = String(route.status ?? 200);
    expect(statuses).toContain(success);
    expect(statuses.filter((s) => s.startsWith('2'))).toEqual([success]);
    for (const s of statuses) expect(typeof op.responses[s].description).toBe('string');
    if (success !== '204') expect(typeof op.responses[success].content['application/json'].schema).toBe('object');
    for (const s of ['400', '401', '403', '404', ...(route.body ? ['413', '415'] : []), ...(route.errors ?? []).map(String)]) {
      expect([s, op.responses[s]?.content['application/json'].schema]).toEqual([s, { $ref: '#/components/schemas/Error' }]);
    }
  });

  it('has only well-formed paths and operations, and every $ref resolves', () => {
    for (const [path, item] of Object.entries(doc.paths as Json)) {
      expect(path).toMatch(/^\/[A-Za-z0-9_\-/{}.]*$/);
      expect(path).not.toContain(':');
      for (const method of Object.keys(item)) expect(METHODS).toContain(method);
    }
    const documented = Object.values(doc.paths as Json).reduce((n: number, item) => n + Object.keys(item as Json).length, 0);
    expect(documented).toBe(routes.length);
    const refs = refsIn(doc);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect([ref, resolve(ref) !== undefined]).toEqual([ref, true]);
  });
});
