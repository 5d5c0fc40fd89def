import type { Context } from 'koa';
import type { z } from 'zod';
import { sendError } from './errors';
import { readBodyOr413 } from './raw-body';

/**
 * Request validation shared by the admin API and /api/v1: a JSON body read with a size limit,
 * zod problems reported as `{ error: { code, message, problems: [{ path, message }] } }`.
 */

export const MAX_JSON_BODY_BYTES = 64 * 1024;

export type Problem = { path: string; message: string };

export const problemsOf = (error: z.ZodError, prefix = ''): Problem[] =>
  error.issues.map((i) => ({ path: prefix + (i.path.map(String).join('.') || '(body)'), message: i.message }));

export function sendProblems(ctx: Context, status: number, code: string, message: string, problems: unknown[], extra: Record<string, unknown> = {}): void {
  ctx.status = status;
  ctx.body = { error: { code, message, problems, ...extra } };
}

export function sendInvalid(ctx: Context, problems: Problem[]): void {
  sendProblems(ctx, 400, 'invalid_request', problems.map((p) => `${p.path}: ${p.message}`).join('; '), problems);
}

/** The request body as JSON (415 / 413 / 400 answered here; undefined then). */
export async function readJsonBody(ctx: Context, maxBytes = MAX_JSON_BODY_BYTES): Promise<{ value: unknown } | undefined> {
  if (!ctx.is('application/json')) {
    sendError(ctx, 415, 'unsupported_media_type', 'Content-Type must be application/json');
    return undefined;
  }
  const raw = await readBodyOr413(ctx, maxBytes, 'request body');
  if (!raw) return undefined;
  try {
    return { value: JSON.parse(raw.toString('utf8')) };
  } catch (err) {
    // V8's message quotes the input; name only the position.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    sendError(ctx, 400, 'malformed_json', `request body is not valid JSON${at ? ` (error at character ${at})` : ''}`);
    return undefined;
  }
}

export async function parseBody<S extends z.ZodType>(ctx: Context, schema: S): Promise<z.infer<S> | undefined> {
  const body = await readJsonBody(ctx);
  if (!body) return undefined;
  const parsed = schema.safeParse(body.value);
  if (!parsed.success) {
    sendInvalid(ctx, problemsOf(parsed.error));
    return undefined;
  }
  return parsed.data;
}
