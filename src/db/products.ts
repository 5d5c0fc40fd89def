import type { Pool } from 'pg';

export interface Product {
  id: string;
  name: string;
  description: string;
  price: string | null;
  currency: string | null;
  stock: number | null;
  url: string | null;
}

/** Full-text search over one tenant's catalog, falling back to a name prefix match for short words. */
export async function searchProducts(pool: Pool, tenantId: string, query: string, limit = 3): Promise<Product[]> {
  const anyWord = orQuery(query);
  if (!anyWord) return [];
  const { rows } = await pool.query<Product>(
    `SELECT id, name, description, price::text AS price, currency, stock, url
     FROM products
     WHERE tenant_id = $1
       AND (search @@ websearch_to_tsquery('simple', $2) OR search @@ to_tsquery('simple', $3))
     ORDER BY ts_rank(search, to_tsquery('simple', $3)) DESC, name
     LIMIT $4`,
    [tenantId, query, anyWord, limit],
  );
  return rows;
}

/** "do you have the jacket?" → "you:* | have:* | the:* | jacket:*": any word (as a prefix) may match. */
function orQuery(text: string): string {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) ?? [];
  return words.map((w) => `${w}:*`).join(' | ');
}

export async function addProduct(
  pool: Pool,
  tenantId: string,
  p: { name: string; description?: string; price?: number; currency?: string; stock?: number; url?: string },
): Promise<{ id: string }> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO products (tenant_id, name, description, price, currency, stock, url) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
    [tenantId, p.name, p.description ?? '', p.price ?? null, p.currency ?? null, p.stock ?? null, p.url ?? null],
  );
  return { id: rows[0]!.id };
}
