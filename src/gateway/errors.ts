import type { Context } from 'koa';

/** Every error response has one shape: `{ "error": { "code", "message" } }`, never a stack trace. */
export function sendError(ctx: Context, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.body = { error: { code, message } };
}
