import { z } from 'zod';

/**
 * Keyset pagination for /api/v1 lists: newest first, `limit` items a page, and `next` to pass back
 * as `before`. `before` also takes a plain ISO-8601 time ("items created before then").
 *
 * `next` is not a bare timestamp: rows written in one transaction share `now()`, and a JavaScript
 * date drops PostgreSQL's microseconds, so a timestamp alone would skip or repeat items at a page
 * boundary. It carries the last item's exact time and its id (the tie-breaker), base64url-encoded;
 * clients treat it as opaque.
 */

export interface Cursor {
  /** A timestamptz literal (microsecond precision when it came from `next`). */
  at: string;
  /** The tie-breaking key of the last item seen (uuid or number as text); absent for a plain time. */
  key?: string;
}

const isoTime = z.iso.datetime({ offset: true });

/** What breaks ties between items of the same time: a row's uuid, or a sequence number. */
export type CursorKey = 'uuid' | 'seq';
const KEY_PATTERN: Record<CursorKey, RegExp> = {
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
  seq: /^[1-9][0-9]{0,17}$/,
};

function decodeCursor(value: string, key: CursorKey): Cursor | undefined {
  if (isoTime.safeParse(value).success) return { at: value };
  if (!/^[A-Za-z0-9_-]{1,300}$/.test(value)) return undefined;
  try {
    const parsed = z
      .object({ at: isoTime, key: z.string().regex(KEY_PATTERN[key]) })
      .safeParse(JSON.parse(Buffer.from(value, 'base64url').toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export function encodeCursor(at: string, key: string | number): string {
  return Buffer.from(JSON.stringify({ at, key: String(key) }), 'utf8').toString('base64url');
}

export const limitSchema = (max = 200, fallback = 50) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(max, `must be at most ${max}`)
    .default(fallback)
    .describe(`Items per page (1–${max}, default ${fallback})`);

export const beforeSchema = (key: CursorKey = 'uuid') =>
  z
    .string()
    .transform((v, ctx) => {
      const cursor = decodeCursor(v, key);
      if (!cursor) {
        ctx.addIssue({ code: 'custom', message: "must be an ISO-8601 timestamp or the previous page's next" });
        return z.NEVER;
      }
      return cursor;
    })
    .optional()
    .describe("Only items created before this ISO-8601 time, or the previous page's `next` (opaque)");

export const pagingQuery = (opts: { key?: CursorKey; max?: number; fallback?: number } = {}) =>
  z.object({ limit: limitSchema(opts.max, opts.fallback), before: beforeSchema(opts.key) });

export const nextSchema = z.string().nullable().describe('Pass as `before` for the next (older) page; null on the last page');

/**
 * SQL for a row's cursor time: UTC with microseconds, e.g. `2025-01-31T12:00:00.123456Z`
 * (`column` is a trusted column name, never input).
 */
export const cursorTimeSql = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * The page of `rows` (fetched with LIMIT limit + 1: the extra row only says another page exists)
 * and the cursor after its last item.
 */
export function pageOf<R extends { cursor_at: string }>(rows: R[], limit: number, keyOf: (row: R) => string | number): { rows: R[]; next: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { rows: page, next: rows.length > limit && last ? encodeCursor(last.cursor_at, keyOf(last)) : null };
}
