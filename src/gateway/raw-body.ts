import type { Context } from 'koa';
import { sendError } from './errors';

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Reads the request body as raw bytes, stopping at `limit`: the signature is computed over
 * exactly these bytes, and an oversized body is refused before any of it is hashed or parsed.
 */
export async function readRawBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      // Stop reading; the connection is closed after the 413 so the rest is never buffered.
      ctx.req.unpipe();
      ctx.set('connection', 'close');
      throw new BodyTooLargeError(limit);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/** Reads the body, or answers 413 naming what was too large and returns undefined. */
export async function readBodyOr413(ctx: Context, limit: number, what: string): Promise<Buffer | undefined> {
  try {
    return await readRawBody(ctx, limit);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    sendError(ctx, 413, 'payload_too_large', `${what} exceeds ${limit} bytes`);
    return undefined;
  }
}
