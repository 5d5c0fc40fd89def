import type { Context } from 'koa';

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
