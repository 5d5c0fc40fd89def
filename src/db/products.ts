import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { inTenant, type Queryable } from './tenant-scope';

/** A catalog entry's fields, as imported and as stored. */
export interface ProductFields {
  sku: string;
  name: string;
  description: string;
  /** Decimal text with `.` (numeric(12,2) in the database), so no float ever rounds a price. */
  price: string | null;
  currency: string | null;
  /** Null: unknown. */
  stock: number | null;
  url: string | null;
}

export interface Product extends ProductFields {
  id: string;
}

export interface ProductSearchOptions {
  limit?: number;
  /** Only products priced at or below this (products without a price are left out). */
  maxPrice?: number;
  /** Leave out products whose stock is known to be 0; unknown stock stays in. */
  inStockOnly?: boolean;
}

/**
 * Full-text search over one tenant's catalog ('simple' config, so it works for any language).
 * Every word counts as a prefix and any word may match; products matching more words rank first.
 * When nothing matches, two cheap fallbacks for the way customers type: shortened prefixes
 * ("jackets" → "jacke:*", "Jacken" → "jack:*"), then each word replaced by the nearest word of the
 * tenant's own catalog within one or two edits ("jakcet" → "jacket"). Built-in features only:
 * pg_trgm and fuzzystrmatch are not installed.
 */
export async function searchProducts(db: Pool | Queryable, tenantId: string, query: string, options: ProductSearchOptions | number = {}): Promise<Product[]> {
  return inTenant(db, tenantId, (tx) => searchIn(tx, tenantId, query, options));
}

async function searchIn(pool: Queryable, tenantId: string, query: string, options: ProductSearchOptions | number): Promise<Product[]> {
  const opts = typeof options === 'number' ? { limit: options } : options;
  const words = searchWords(query);
  if (words.length === 0) return [];
  const exact = await runSearch(pool, tenantId, words.map((w) => `${w}:*`), opts);
  if (exact.length > 0) return exact;

  const shortened = words.map((w) => (w.length >= 6 ? w.slice(0, w.length - 2) : w.length === 5 ? w.slice(0, 4) : w));
  if (shortened.some((w, i) => w !== words[i])) {
    const rows = await runSearch(pool, tenantId, shortened.map((w) => `${w}:*`), opts);
    if (rows.length > 0) return rows;
  }

  const corrected = await correctWords(pool, tenantId, words);
  if (corrected.length === 0) return [];
  return runSearch(pool, tenantId, corrected.map((w) => `${w}:*`), opts);
}

async function runSearch(pool: Queryable, tenantId: string, terms: string[], opts: ProductSearchOptions): Promise<Product[]> {
  const tsquery = [...new Set(terms)].join(' | ');
  const { rows } = await pool.query<Product>(
    `SELECT id, sku, name, description, price::text AS price, currency, stock, url
     FROM products
     WHERE tenant_id = $1
       AND search @@ to_tsquery('simple', $2)
       AND ($3::numeric IS NULL OR price <= $3::numeric)
       AND (NOT $4::boolean OR stock IS NULL OR stock > 0)
     ORDER BY ts_rank(search, to_tsquery('simple', $2)) DESC, name
     LIMIT $5`,
    [tenantId, tsquery, opts.maxPrice ?? null, opts.inStockOnly ?? false, Math.min(Math.max(opts.limit ?? 3, 1), 50)],
  );
  return rows;
}

/** Words safe to put into a tsquery: letters and digits only, lowercased, at least two characters. */
function searchWords(text: string): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) ?? [];
  return [...new Set(words)].slice(0, 12);
}

/** Each word of four or more letters mapped to the closest catalog word within its edit budget. */
async function correctWords(pool: Queryable, tenantId: string, words: string[]): Promise<string[]> {
  const candidates = words.filter((w) => w.length >= 4);
  if (candidates.length === 0) return [];
  const minLen = Math.min(...candidates.map((w) => w.length)) - 2;
  const maxLen = Math.max(...candidates.map((w) => w.length)) + 2;
  const { rows } = await pool.query<{ lexeme: string }>(
    `SELECT DISTINCT lexeme
     FROM products p, unnest(tsvector_to_array(p.search)) AS lexeme
     WHERE p.tenant_id = $1 AND length(lexeme) BETWEEN $2 AND $3
     LIMIT 20000`,
    [tenantId, minLen, maxLen],
  );
  const out: string[] = [];
  for (const word of candidates) {
    const budget = word.length >= 8 ? 2 : 1;
    let best: { lexeme: string; d: number } | undefined;
    for (const { lexeme } of rows) {
      if (!/^[\p{L}\p{N}]+$/u.test(lexeme)) continue;
      const d = editDistance(word, lexeme, budget);
      if (d <= budget && (!best || d < best.d || (d === best.d && lexeme < best.lexeme))) best = { lexeme, d };
    }
    if (best) out.push(best.lexeme);
  }
  return out;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transposition), cut off above `max`. */
export function editDistance(a: string, b: string, max = Infinity): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) rows.push(new Array<number>(b.length + 1).fill(0));
  for (let i = 0; i <= a.length; i++) rows[i]![0] = i;
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    let rowMin = Infinity;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = v;
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin > max) return max + 1;
  }
  return rows[a.length]![b.length]!;
}

export interface NewProduct {
  /** The tenant's own identifier; generated when absent. */
  sku?: string;
  name: string;
  description?: string;
  price?: number;
  currency?: string;
  stock?: number;
  url?: string;
}

export async function addProduct(db: Pool | Queryable, tenantId: string, p: NewProduct): Promise<{ id: string; sku: string }> {
  const sku = p.sku ?? randomUUID();
  const { rows } = await inTenant(db, tenantId, (tx) => tx.query<{ id: string }>(
    `INSERT INTO products (tenant_id, sku, name, description, price, currency, stock, url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
    [tenantId, sku, p.name, p.description ?? '', p.price ?? null, p.currency ?? null, p.stock ?? null, p.url ?? null],
  ));
  return { id: rows[0]!.id, sku };
}
