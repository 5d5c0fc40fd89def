import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * docs/data-classification.md must classify every column the migrations create, exactly once, and
 * every restricted (secret) column must be stored as ciphertext (bytea). A migration that adds a
 * column without a row in the document fails here, naming the column.
 */

const DOC = path.join(__dirname, '..', '..', 'docs', 'data-classification.md');
const CLASSES = ['public', 'internal', 'confidential', 'restricted'] as const;

interface DocRow {
  line: number;
  table: string;
  column: string;
  class: string;
  why: string;
}

interface DbColumn {
  table_name: string;
  column_name: string;
  data_type: string;
}

const cell = (s: string) => s.trim().replace(/^`(.*)`$/, '$1').trim();

/** The rows of the `| table | column | class | why / protection |` table. */
function parseClassificationTable(markdown: string): DocRow[] {
  const lines = markdown.split('\n');
  const header = lines.findIndex((l) => /^\|\s*table\s*\|\s*column\s*\|\s*class\s*\|\s*why/i.test(l.trim()));
  if (header < 0) throw new Error(`${DOC}: no "| table | column | class | why / protection |" table`);
  if (!/^\|[\s:|-]+\|$/.test(lines[header + 1]?.trim() ?? '')) throw new Error(`${DOC}:${header + 2}: expected the table's separator row`);
  const rows: DocRow[] = [];
  for (let i = header + 2; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (!l.startsWith('|')) break;
    const cells = l.replace(/^\|/, '').replace(/\|$/, '').split('|');
    if (cells.length < 4) throw new Error(`${DOC}:${i + 1}: expected 4 cells, got ${cells.length}: ${l}`);
    const [table, column, cls, ...why] = cells;
    rows.push({ line: i + 1, table: cell(table!), column: cell(column!), class: cell(cls!).toLowerCase(), why: why.join('|').trim() });
  }
  return rows;
}

function fail(title: string, problems: string[]): void {
  if (problems.length > 0) throw new Error(`${title} (${DOC}):\n  - ${problems.join('\n  - ')}`);
}

describe('docs/data-classification.md', () => {
  let db: TestDatabase;
  let columns: DbColumn[];
  let rows: DocRow[];

  beforeAll(async () => {
    db = await createTestDatabase();
    columns = (
      await db.pool.query<DbColumn>(
        `SELECT table_name, column_name, data_type
           FROM information_schema.columns
          WHERE table_schema = 'public'
          ORDER BY table_name, ordinal_position`,
      )
    ).rows;
    rows = parseClassificationTable(readFileSync(DOC, 'utf8'));
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('reads a real schema and a real table', () => {
    expect(columns.length).toBeGreaterThan(0);
    expect(columns.some((c) => c.table_name === 'schema_migrations')).toBe(true);
    expect(rows.length).toBeGreaterThan(0);
  });

  it('lists every column of every table, exactly once', () => {
    const listed = new Map<string, number[]>();
    for (const r of rows) listed.set(`${r.table}.${r.column}`, [...(listed.get(`${r.table}.${r.column}`) ?? []), r.line]);
    const existing = new Set(columns.map((c) => `${c.table_name}.${c.column_name}`));

    const missing = columns.filter((c) => !listed.has(`${c.table_name}.${c.column_name}`)).map((c) => `${c.table_name}.${c.column_name} (${c.data_type})`);
    const extra = [...listed.keys()].filter((k) => !existing.has(k)).map((k) => `${k} (line ${listed.get(k)!.join(', ')})`);
    const duplicated = [...listed.entries()].filter(([, lines]) => lines.length > 1).map(([k, lines]) => `${k} (lines ${lines.join(', ')})`);

    fail('data classification out of date with the migrations', [
      ...missing.map((c) => `missing: ${c}`),
      ...extra.map((c) => `listed but not in the database: ${c}`),
      ...duplicated.map((c) => `listed more than once: ${c}`),
    ]);
  });

  it('uses only the four classes and says why for each column', () => {
    fail(
      'invalid classification rows',
      rows.flatMap((r) => [
        ...(CLASSES.includes(r.class as (typeof CLASSES)[number]) ? [] : [`${r.table}.${r.column} (line ${r.line}): class "${r.class}" is not one of ${CLASSES.join(', ')}`]),
        ...(r.why === '' ? [`${r.table}.${r.column} (line ${r.line}): "why / protection" is empty`] : []),
      ]),
    );
  });

  it('stores every restricted column as bytea ciphertext', () => {
    const types = new Map(columns.map((c) => [`${c.table_name}.${c.column_name}`, c.data_type]));
    const restricted = rows.filter((r) => r.class === 'restricted');
    expect(restricted.length).toBeGreaterThan(0);
    fail(
      'restricted columns must be bytea (encrypted by the vault in src/crypto/)',
      restricted
        .filter((r) => types.has(`${r.table}.${r.column}`) && types.get(`${r.table}.${r.column}`) !== 'bytea')
        .map((r) => `${r.table}.${r.column} is ${types.get(`${r.table}.${r.column}`)}`),
    );
  });
});
