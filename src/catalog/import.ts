import type { Pool, PoolClient } from 'pg';
import { z } from 'zod';
import { appendAuditEvent } from '../audit/log';
import type { AuditActor } from '../db/channels';
import { withTenant } from '../db/tenant-scope';
import type { ProductFields } from '../db/products';

/**
 * Product catalog import (CLI `products:import`, admin API `POST /admin/tenants/:id/products/import`).
 *
 * A file is either valid as a whole or nothing is written: parsing collects every problem of
 * every row (with its row and column) before the first write, and the write is one transaction.
 * Rows are keyed by the tenant's `sku`; `replace` also removes the products the file no longer has.
 */

export const MAX_CATALOG_BYTES = 5 * 1024 * 1024;
export const MAX_CATALOG_ROWS = 10_000;
export const CATALOG_COLUMNS = ['sku', 'name', 'description', 'price', 'currency', 'stock', 'url'] as const;
const REQUIRED_COLUMNS = ['sku', 'name'] as const;

export type CatalogFormat = 'csv' | 'json';
export type ImportMode = 'upsert' | 'replace';

/** One validated row of an import file. */
export type CatalogProduct = ProductFields;

export interface CatalogProblem {
  /**
   * CSV: the record's row as a spreadsheet numbers it (the header is row 1); JSON: the index in
   * the products array (from 0). Null for a problem of the whole file.
   */
  row: number | null;
  /** CSV only, when a quoted line break makes it differ from `row`: the line the record starts on. */
  line?: number;
  /** The column (CSV) or field (JSON) at fault; null for a whole row or the whole file. */
  column: string | null;
  message: string;
}

/** `row 3, price: must be a number ≥ 0` (CSV) or `index 2, price: …` (JSON). */
export function formatProblem(p: CatalogProblem, format: CatalogFormat): string {
  const where = p.row === null ? '' : format === 'csv' ? `row ${p.row}${p.line !== undefined ? ` (line ${p.line})` : ''}` : `index ${p.row}`;
  return [where, p.column].filter(Boolean).join(', ') + (where || p.column ? ': ' : '') + p.message;
}

export class CatalogValidationError extends Error {
  override name = 'CatalogValidationError';
  constructor(
    readonly format: CatalogFormat,
    readonly problems: CatalogProblem[],
  ) {
    super(`the catalog has ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was imported`);
  }

  /** The message and the first `limit` problems, one per line (for a terminal). */
  describe(limit = Infinity): string {
    const lines = this.problems.slice(0, limit).map((p) => `  ${formatProblem(p, this.format)}`);
    if (this.problems.length > limit) lines.push(`  … and ${this.problems.length - limit} more`);
    return `${this.message}:\n${lines.join('\n')}`;
  }
}

export class UnknownTenantError extends Error {
  override name = 'UnknownTenantError';
  constructor(readonly tenantId: string) {
    super(`no tenant ${tenantId}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Field rules: one schema for CSV cells (strings) and JSON values (strings, numbers, null)

const blank = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'string' && v.trim() === '');
const blankToUndefined = (v: unknown): unknown => (blank(v) ? undefined : v);
const requiredText = (max: number) =>
  z
    .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be text') })
    .trim()
    .max(max, `must be at most ${max} characters`);

/** Largest value numeric(12,2) holds. */
const PRICE_LIMIT = '9999999999.99';
const PRICE_PATTERN = /^\d{1,10}(\.\d{1,2})?$/;

const price = z.preprocess(
  (v) => (typeof v === 'number' && Number.isFinite(v) ? String(v) : typeof v === 'string' ? v.trim() : v),
  z.string({ error: 'must be a number ≥ 0' }).superRefine((v, ctx) => {
    if (PRICE_PATTERN.test(v)) return;
    let message = 'must be a number ≥ 0 with . as the decimal separator, e.g. 19.90';
    if (/^\d+,\d{1,2}$/.test(v)) message = `must use . as the decimal separator: ${v.replace(',', '.')}, not ${v}`;
    else if (/^-\d+(\.\d+)?$/.test(v)) message = 'must be a number ≥ 0';
    else if (/^\d+\.\d{3,}$/.test(v)) message = 'must have at most 2 decimal places';
    else if (/^\d{11,}(\.\d+)?$/.test(v)) message = `must be at most ${PRICE_LIMIT}`;
    ctx.addIssue({ code: 'custom', message });
  }),
);

const stock = z.preprocess(
  (v) => (typeof v === 'string' && /^\s*\d{1,12}\s*$/.test(v) ? Number(v) : v),
  z
    .number({ error: 'must be a whole number ≥ 0 (leave it empty when unknown)' })
    .int('must be a whole number ≥ 0 (leave it empty when unknown)')
    .min(0, 'must be a whole number ≥ 0 (leave it empty when unknown)')
    .max(2_147_483_647, 'must be at most 2147483647'),
);

/** Every field as given in a file; blanks (empty cells, JSON null) are "not given". */
export const catalogRowSchema = z.object({
  // Numeric SKUs are common in JSON exports: taken as their decimal text.
  sku: z.preprocess((v) => (typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : blankToUndefined(v)), requiredText(100)),
  name: z.preprocess(blankToUndefined, requiredText(300)),
  description: z.preprocess(blankToUndefined, z.string({ error: 'must be text' }).max(10_000, 'must be at most 10000 characters').optional()),
  price: z.preprocess(blankToUndefined, price.optional()),
  currency: z.preprocess(
    (v) => (typeof v === 'string' ? blankToUndefined(v.trim()) : blankToUndefined(v)),
    z.string({ error: 'must be text' }).regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code of 3 upper-case letters, e.g. EUR').optional(),
  ),
  stock: z.preprocess(blankToUndefined, stock.optional()),
  url: z.preprocess(
    (v) => (typeof v === 'string' ? blankToUndefined(v.trim()) : blankToUndefined(v)),
    z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }).max(2000, 'must be at most 2000 characters').optional(),
  ),
});

type RawRow = Partial<Record<(typeof CATALOG_COLUMNS)[number], unknown>>;

/** One row's product, or its problems (zod's per field, plus the rule that spans two fields). */
function validateRow(raw: RawRow, at: Pick<CatalogProblem, 'row' | 'line'>): { product?: CatalogProduct; problems: CatalogProblem[] } {
  const problems: CatalogProblem[] = [];
  const result = catalogRowSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push({ ...at, column: issue.path.map(String).join('.') || null, message: issue.message });
  }
  // Checked on the raw values so it is reported beside the other problems of the row.
  if (!blank(raw.price) && blank(raw.currency)) problems.push({ ...at, column: 'currency', message: 'is required when price is given' });
  if (!result.success || problems.length > 0) return { problems };
  const r = result.data;
  return {
    product: {
      sku: r.sku,
      name: r.name,
      description: r.description ?? '',
      price: r.price ?? null,
      currency: r.currency ?? null,
      stock: r.stock ?? null,
      url: r.url ?? null,
    },
    problems,
  };
}

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180)

interface CsvRecord {
  /** 1-based record number, blank records included (a spreadsheet's row). */
  row: number;
  /** 1-based line the record starts on. */
  line: number;
  fields: string[];
}

/**
 * RFC 4180 records: `,` separates fields, CRLF or LF (or a lone CR) ends a record, a field in
 * double quotes may hold commas, line breaks (kept as LF) and doubled quotes. A stray quote in an
 * unquoted field or text after a closing quote is reported and the record's structure kept, so the
 * other rows are still checked; an unterminated quote ends parsing (everything after it is one field).
 */
export function parseCsvRecords(text: string): { records: CsvRecord[]; problems: CatalogProblem[] } {
  const records: CsvRecord[] = [];
  const problems: CatalogProblem[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false; // the current field started with a quote
  let inQuotes = false;
  let line = 1;
  let recordLine = 1;
  let fieldLine = 1;
  const problemAt = (message: string) => {
    const row = records.length + 1;
    problems.push({ row, ...(recordLine !== row && { line: recordLine }), column: null, message });
  };
  const endField = () => {
    fields.push(field);
    field = '';
    quoted = false;
  };
  const endRecord = () => {
    endField();
    records.push({ row: records.length + 1, line: recordLine, fields });
    fields = [];
  };

  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
          const next = text[i + 1];
          if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
            problemAt(`field ${fields.length + 1}: text after a closing quote (a quote inside a quoted field must be doubled: "")`);
          }
        }
      } else if (ch === '\r' || ch === '\n') {
        if (ch === '\r' && text[i + 1] === '\n') i++;
        field += '\n';
        line++;
      } else {
        field += ch;
      }
      continue;
    }
    if (ch === ',') {
      endField();
    } else if (ch === '\r' || ch === '\n') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else if (ch === '"' && field === '' && !quoted) {
      quoted = true;
      inQuotes = true;
      fieldLine = line;
    } else {
      if (ch === '"' && !quoted) problemAt(`field ${fields.length + 1}: a quote in an unquoted field (quote the whole field and double the quote: "5"" screen")`);
      field += ch;
    }
  }
  if (inQuotes) {
    problemAt(`field ${fields.length + 1}: the quote opened on line ${fieldLine} is never closed`);
    endRecord();
  } else if (fields.length > 0 || field !== '' || quoted) {
    endRecord(); // the last record without a final line break
  }
  return { records, problems };
}

const isBlankRecord = (r: CsvRecord) => r.fields.every((f) => f === '');

function parseCsvCatalog(text: string): { products: CatalogProduct[]; problems: CatalogProblem[] } {
  const { records, problems } = parseCsvRecords(text);
  const headerIndex = records.findIndex((r) => !isBlankRecord(r));
  if (headerIndex < 0) return { products: [], problems: [...problems, { row: null, column: null, message: 'the file is empty: the first line must be the header (sku,name,…)' }] };
  const header = records[headerIndex]!;
  const columns = header.fields.map((f) => f.trim().toLowerCase());

  const fileProblems: CatalogProblem[] = [];
  const unnamed = columns.flatMap((c, i) => (c === '' ? [i + 1] : []));
  if (unnamed.length > 0) fileProblems.push({ row: header.row, column: null, message: `header: column ${unnamed.join(', ')} has no name` });
  const unknown = header.fields.filter((f, i) => columns[i] !== '' && !(CATALOG_COLUMNS as readonly string[]).includes(columns[i]!));
  if (unknown.length > 0) {
    const hint = header.fields.length === 1 && /[;\t]/.test(header.fields[0]!) ? ' (the file looks separated by ; or tabs: export it with commas)' : '';
    fileProblems.push({ row: header.row, column: null, message: `header: unknown column${unknown.length === 1 ? '' : 's'} ${unknown.map((c) => JSON.stringify(c)).join(', ')}; the columns are ${CATALOG_COLUMNS.join(', ')}${hint}` });
  }
  const repeated = [...new Set(columns.filter((c, i) => c !== '' && columns.indexOf(c) !== i))];
  if (repeated.length > 0) fileProblems.push({ row: header.row, column: null, message: `header: column${repeated.length === 1 ? '' : 's'} ${repeated.join(', ')} appear${repeated.length === 1 ? 's' : ''} more than once` });
  const missing = REQUIRED_COLUMNS.filter((c) => !columns.includes(c));
  if (missing.length > 0) fileProblems.push({ row: header.row, column: null, message: `header: missing required column${missing.length === 1 ? '' : 's'} ${missing.join(', ')}` });
  // Without a usable header every row would repeat the same complaint.
  if (fileProblems.length > 0) return { products: [], problems: [...problems, ...fileProblems] };

  const data = records.slice(headerIndex + 1).filter((r) => !isBlankRecord(r));
  if (data.length > MAX_CATALOG_ROWS) return { products: [], problems: [{ row: null, column: null, message: `the file has ${data.length} products; at most ${MAX_CATALOG_ROWS} per import` }] };
  const rows = data.map((r) => {
    const at = { row: r.row, ...(r.line !== r.row && { line: r.line }) };
    if (r.fields.length !== columns.length) {
      return { at, problem: { ...at, column: null, message: `has ${r.fields.length} field${r.fields.length === 1 ? '' : 's'}, the header has ${columns.length}` } };
    }
    return { at, raw: Object.fromEntries(columns.map((c, i) => [c, r.fields[i]])) as RawRow };
  });
  return collect('csv', rows, problems);
}

// ---------------------------------------------------------------------------------------------
// JSON

function parseJsonCatalog(text: string): { products: CatalogProduct[]; problems: CatalogProblem[] } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the input: name only where it broke.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    return { products: [], problems: [{ row: null, column: null, message: `not valid JSON${at ? ` (error at character ${at})` : ''}` }] };
  }
  let items: unknown;
  if (Array.isArray(json)) items = json;
  else if (json !== null && typeof json === 'object') {
    const extra = Object.keys(json).filter((k) => k !== 'products');
    if (extra.length > 0 || !Array.isArray((json as { products?: unknown }).products)) {
      return { products: [], problems: [{ row: null, column: null, message: `must be an array of products or {"products": [...]}${extra.length > 0 ? `; unknown field${extra.length === 1 ? '' : 's'} ${extra.map((k) => JSON.stringify(k)).join(', ')}` : ''}` }] };
    }
    items = (json as { products: unknown[] }).products;
  } else {
    return { products: [], problems: [{ row: null, column: null, message: 'must be an array of products or {"products": [...]}' }] };
  }
  const list = items as unknown[];
  if (list.length > MAX_CATALOG_ROWS) return { products: [], problems: [{ row: null, column: null, message: `the file has ${list.length} products; at most ${MAX_CATALOG_ROWS} per import` }] };
  const rows = list.map((item, index) => {
    const at = { row: index };
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return { at, problem: { ...at, column: null, message: 'must be an object like {"sku": …, "name": …}' } };
    const unknown = Object.keys(item).filter((k) => !(CATALOG_COLUMNS as readonly string[]).includes(k));
    const raw = item as RawRow;
    if (unknown.length > 0) {
      return { at, raw, problem: { ...at, column: null, message: `unknown field${unknown.length === 1 ? '' : 's'} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the fields are ${CATALOG_COLUMNS.join(', ')}` } };
    }
    return { at, raw };
  });
  return collect('json', rows, []);
}

// ---------------------------------------------------------------------------------------------

type PendingRow = { at: Pick<CatalogProblem, 'row' | 'line'>; raw?: RawRow; problem?: CatalogProblem };

/** Validates each row, then finds repeated SKUs; every problem in file order. */
function collect(format: CatalogFormat, rows: PendingRow[], problems: CatalogProblem[]): { products: CatalogProduct[]; problems: CatalogProblem[] } {
  const products: CatalogProduct[] = [];
  const firstBySku = new Map<string, Pick<CatalogProblem, 'row' | 'line'>>();
  for (const r of rows) {
    if (r.problem) problems.push(r.problem);
    if (!r.raw) continue;
    const { product, problems: rowProblems } = validateRow(r.raw, r.at);
    problems.push(...rowProblems);
    // A repeated sku is reported even when the row has other problems.
    const sku = catalogRowSchema.shape.sku.safeParse(r.raw.sku);
    if (sku.success) {
      const first = firstBySku.get(sku.data);
      if (first) problems.push({ ...r.at, column: 'sku', message: `${JSON.stringify(sku.data)} already appears ${format === 'csv' ? `in row ${first.row}` : `at index ${first.row}`}` });
      else firstBySku.set(sku.data, r.at);
    }
    if (product && !r.problem) products.push(product);
  }
  return { products, problems };
}

/** UTF-8 (a BOM is dropped), at most MAX_CATALOG_BYTES; throws CatalogValidationError naming every problem. */
export function parseCatalog(input: Buffer | string, format: CatalogFormat): CatalogProduct[] {
  const bytes = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (bytes > MAX_CATALOG_BYTES) throw new CatalogValidationError(format, [{ row: null, column: null, message: `the file has ${bytes} bytes; at most ${MAX_CATALOG_BYTES} (5 MiB) per import` }]);
  let text: string;
  if (typeof input === 'string') text = input.replace(/^\uFEFF/, '');
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input); // drops a BOM
    } catch {
      throw new CatalogValidationError(format, [{ row: null, column: null, message: 'the file is not valid UTF-8 (save or export it as UTF-8)' }]);
    }
  }
  const { products, problems } = format === 'csv' ? parseCsvCatalog(text) : parseJsonCatalog(text);
  if (problems.length === 0 && products.length === 0) problems.push({ row: null, column: null, message: 'the file has no products' });
  if (problems.length > 0) throw new CatalogValidationError(format, problems);
  return products;
}

/** The format a file name implies, if any. */
export function formatFromFileName(file: string): CatalogFormat | undefined {
  const ext = /\.([a-z]+)$/i.exec(file)?.[1]?.toLowerCase();
  return ext === 'csv' ? 'csv' : ext === 'json' ? 'json' : undefined;
}

// ---------------------------------------------------------------------------------------------
// Writing

const UPSERT_BATCH = 1000;

export interface UpsertCounts {
  inserted: number;
  updated: number;
  /** Rows identical to what was stored (their `updated_at` stays). */
  unchanged: number;
}

/** Inserts or updates products by (tenant, sku) in the caller's transaction, in batches. */
export async function upsertProducts(client: PoolClient, tenantId: string, products: readonly CatalogProduct[]): Promise<UpsertCounts> {
  const counts: UpsertCounts = { inserted: 0, updated: 0, unchanged: 0 };
  for (let from = 0; from < products.length; from += UPSERT_BATCH) {
    const batch = products.slice(from, from + UPSERT_BATCH);
    // Prices travel as text into numeric: no float ever rounds them.
    const { rows } = await client.query<{ inserted: boolean }>(
      `INSERT INTO products AS p (tenant_id, sku, name, description, price, currency, stock, url)
       SELECT $1, u.sku, u.name, u.description, u.price, u.currency, u.stock, u.url
       FROM unnest($2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::integer[], $8::text[])
         AS u(sku, name, description, price, currency, stock, url)
       ON CONFLICT (tenant_id, sku) DO UPDATE
         SET name = EXCLUDED.name, description = EXCLUDED.description, price = EXCLUDED.price,
             currency = EXCLUDED.currency, stock = EXCLUDED.stock, url = EXCLUDED.url, updated_at = now()
         WHERE (p.name, p.description, p.price, p.currency, p.stock, p.url)
               IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price, EXCLUDED.currency, EXCLUDED.stock, EXCLUDED.url)
       RETURNING (p.xmax = 0) AS inserted`,
      [
        tenantId,
        batch.map((p) => p.sku),
        batch.map((p) => p.name),
        batch.map((p) => p.description),
        batch.map((p) => p.price),
        batch.map((p) => p.currency),
        batch.map((p) => p.stock),
        batch.map((p) => p.url),
      ],
    );
    // Unchanged rows are skipped by the WHERE and not returned.
    const inserted = rows.filter((r) => r.inserted).length;
    counts.inserted += inserted;
    counts.updated += rows.length - inserted;
    counts.unchanged += batch.length - rows.length;
  }
  return counts;
}

export interface ImportResult extends UpsertCounts {
  deleted: number;
}

/**
 * Writes a validated catalog in one transaction with its `catalog.imported` audit event (counts
 * and mode, no product texts). Imports of one tenant run one at a time, so a `replace` never
 * deletes what a concurrent import just added.
 */
export async function importCatalog(
  pool: Pool,
  tenantId: string,
  products: readonly CatalogProduct[],
  opts: { mode: ImportMode; actor: AuditActor; requestId?: string; ip?: string; format?: CatalogFormat },
): Promise<ImportResult> {
  return withTenant(pool, tenantId, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId]);
    if (rowCount !== 1) throw new UnknownTenantError(tenantId);
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('catalog:' || $1, 0))`, [tenantId]);
    const { inserted, updated, unchanged } = await upsertProducts(client, tenantId, products);
    let deleted = 0;
    if (opts.mode === 'replace') {
      const res = await client.query('DELETE FROM products WHERE tenant_id = $1 AND sku <> ALL($2::text[])', [tenantId, products.map((p) => p.sku)]);
      deleted = res.rowCount ?? 0;
    }
    const result = { inserted, updated, unchanged, deleted };
    await appendAuditEvent(client, {
      tenantId,
      actor: opts.actor,
      action: 'catalog.imported',
      resource: `catalog:${tenantId}`,
      outcome: 'success',
      ip: opts.ip,
      requestId: opts.requestId,
      details: { mode: opts.mode, rows: products.length, ...result, ...(opts.format && { format: opts.format }) },
    });
    return result;
  });
}
