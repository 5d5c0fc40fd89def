import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StaticKeyProvider } from '../../src/crypto/key-provider';
import { SecretVault } from '../../src/crypto/vault';
import { loadLlmApiKey } from '../../src/db/tenant-settings';
import { runCli, type CliResult } from '../support/cli';
import { createTestDatabase, type TestDatabase } from '../support/stack';

/**
 * `products:import`, `products:add`, `settings:show` and `settings:set` as an operator runs them:
 * a child process (`node --import tsx src/cli.ts …`) on a test database.
 */

const MASTER_KEYS = `1:${randomBytes(32).toString('base64')}`;

let db: TestDatabase;
let dir: string;
let tenantId: string;

function cli(args: string[], stdin = ''): Promise<CliResult> {
  return runCli(args, { databaseUrl: db.url, masterKeys: MASTER_KEYS, env: { USER: 'ops-test' }, stdin });
}

async function ok<T = Record<string, unknown>>(args: string[], stdin?: string): Promise<T> {
  const r = await cli(args, stdin);
  if (r.code !== 0) throw new Error(`cli ${args[0]} exited ${r.code}: ${r.stderr}`);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as T;
}

function file(name: string, content: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

const products = async () =>
  (await db.ownerPool.query('SELECT sku, name, price::text AS price, currency, stock FROM products WHERE tenant_id = $1 ORDER BY sku', [tenantId])).rows;

async function cliAudit(command: string): Promise<Array<{ outcome: string; reason: string | null; details: { args: Record<string, string> } }>> {
  const { rows } = await db.ownerPool.query("SELECT outcome, reason, details FROM audit_events WHERE action = 'cli.command' AND resource = $1 ORDER BY id", [`cli:${command}`]);
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = mkdtempSync(path.join(tmpdir(), 'sb-catalog-cli-'));
  const created = await ok<{ id: string }>(['tenants:create', '--name', 'Catalog CLI Shop']);
  tenantId = created.id;
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await db.drop();
});

describe('products:import', () => {
  it('imports a CSV file (upsert), then a JSON file (replace), format from the extension', async () => {
    const csv = file('catalog.csv', '\uFEFFsku,name,description,price,currency,stock\r\nJKT-1,Rain jacket,"Dry, light",89.90,EUR,3\r\nHAT-2,Beanie,,24.50,EUR,0\r\n');
    expect(await ok(['products:import', '--tenant', tenantId, '--file', csv])).toEqual({ inserted: 2, updated: 0, unchanged: 0, deleted: 0 });
    expect(await products()).toEqual([
      { sku: 'HAT-2', name: 'Beanie', price: '24.50', currency: 'EUR', stock: 0 },
      { sku: 'JKT-1', name: 'Rain jacket', price: '89.90', currency: 'EUR', stock: 3 },
    ]);

    const json = file('catalog.json', JSON.stringify({ products: [{ sku: 'JKT-1', name: 'Rain jacket', description: 'Dry, light', price: 79.9, currency: 'EUR', stock: 2 }, { sku: 'SCF-3', name: 'Scarf' }] }));
    expect(await ok(['products:import', '--tenant', tenantId, '--file', json, '--mode', 'replace'])).toEqual({ inserted: 1, updated: 1, unchanged: 0, deleted: 1 });
    expect((await products()).map((p) => p.sku)).toEqual(['JKT-1', 'SCF-3']);

    // Any name works with --format.
    const txt = file('export.txt', 'sku,name\nSCF-3,Scarf\n');
    expect(await ok(['products:import', '--tenant', tenantId, '--file', txt, '--format', 'csv'])).toEqual({ inserted: 0, updated: 0, unchanged: 1, deleted: 0 });

    const { rows } = await db.ownerPool.query("SELECT actor_id, details FROM audit_events WHERE action = 'catalog.imported' AND tenant_id = $1 ORDER BY id", [tenantId]);
    expect(rows).toEqual([
      { actor_id: 'ops-test', details: { mode: 'upsert', format: 'csv', rows: 2, inserted: 2, updated: 0, unchanged: 0, deleted: 0 } },
      { actor_id: 'ops-test', details: { mode: 'replace', format: 'json', rows: 2, inserted: 1, updated: 1, unchanged: 0, deleted: 1 } },
      { actor_id: 'ops-test', details: { mode: 'upsert', format: 'csv', rows: 1, inserted: 0, updated: 0, unchanged: 1, deleted: 0 } },
    ]);
    expect((await cliAudit('products:import')).map((r) => r.outcome)).toEqual(['success', 'success', 'success']);
  });

  it('refuses an invalid file with every problem on stderr (exit 2) and writes nothing', async () => {
    const before = await products();
    const bad = file('bad.csv', 'sku,name,price,currency,colour\nA,B,1,EUR,red\n');
    const r1 = await cli(['products:import', '--tenant', tenantId, '--file', bad]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toBe('error: the catalog has 1 problem; nothing was imported:\n  row 1: header: unknown column "colour"; the columns are sku, name, description, price, currency, stock, url\n');

    const rows = file('rows.csv', 'sku,name,price,currency,stock\nA,,1,EUR,1\nB,Bee,1.234,EUR,-1\nA,Again,,,\n');
    const r2 = await cli(['products:import', '--tenant', tenantId, '--file', rows, '--mode', 'replace']);
    expect(r2.code).toBe(2);
    expect(r2.stdout).toBe('');
    expect(r2.stderr.split('\n').slice(1, -1)).toEqual([
      '  row 2, name: is required',
      '  row 3, price: must have at most 2 decimal places',
      '  row 3, stock: must be a whole number ≥ 0 (leave it empty when unknown)',
      '  row 4, sku: "A" already appears in row 2',
    ]);
    expect(await products()).toEqual(before);
    expect((await cliAudit('products:import')).at(-1)).toMatchObject({ outcome: 'failure', reason: 'CatalogValidationError' });
  });

  it('names the problem for a missing file, an unknown format and an unknown tenant (exit 2)', async () => {
    const missing = await cli(['products:import', '--tenant', tenantId, '--file', path.join(dir, 'nope.csv')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^error: --file: cannot read .*nope\.csv \(ENOENT\)/);

    const txt = file('list.txt', 'sku,name\nA,B\n');
    const noFormat = await cli(['products:import', '--tenant', tenantId, '--file', txt]);
    expect(noFormat.code).toBe(2);
    expect(noFormat.stderr).toContain('--format: cannot tell the format from the file name; give --format csv or --format json');

    const badMode = await cli(['products:import', '--tenant', tenantId, '--file', txt, '--format', 'csv', '--mode', 'merge']);
    expect(badMode.code).toBe(2);
    expect(badMode.stderr).toContain('--mode: must be upsert or replace');

    const unknown = await cli(['products:import', '--tenant', randomUUID(), '--file', txt, '--format', 'csv']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^error: --tenant: no tenant /);
  });
});

describe('products:add', () => {
  it('adds with a given sku or a generated one, and refuses a taken sku', async () => {
    const given = await ok<{ id: string; sku: string }>(['products:add', '--tenant', tenantId, '--sku', 'BOOT-9', '--name', 'Boots', '--price', '149.00', '--currency', 'EUR']);
    expect(given).toEqual({ id: expect.any(String), sku: 'BOOT-9' });
    const generated = await ok<{ id: string; sku: string }>(['products:add', '--tenant', tenantId, '--name', 'Gloves']);
    expect(generated.sku).toMatch(/\S+/);
    expect((await db.ownerPool.query('SELECT sku FROM products WHERE id = $1', [generated.id])).rows).toEqual([{ sku: generated.sku }]);

    const taken = await cli(['products:add', '--tenant', tenantId, '--sku', 'BOOT-9', '--name', 'Other boots']);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toBe('error: --sku: the tenant already has a product BOOT-9; products:import updates existing products\n');
  });
});

describe('settings:show and settings:set', () => {
  const vault = () => new SecretVault(db.pool, StaticKeyProvider.fromSpec(MASTER_KEYS));

  it('shows the defaults, applies a patch, and takes the model API key from stdin without ever printing or auditing it', async () => {
    expect(await ok(['settings:show', '--tenant', tenantId])).toMatchObject({ engine: 'catalog', llm: { hasApiKey: false }, agent: { debounceMs: 800 } });

    const key = `sk-cli-${randomBytes(16).toString('hex')}`;
    const patch = { replyEngine: 'openai-compatible', llmBaseUrl: 'http://127.0.0.1:11434/v1', llmModel: 'llama3.1', llmApiKey: '-', assistant: { language: 'es', businessName: 'Tienda' } };
    const r = await cli(['settings:set', '--tenant', tenantId, '--json', JSON.stringify(patch)], `${key}\n`);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(key);
    expect(JSON.parse(r.stdout)).toMatchObject({ engine: 'openai-compatible', llm: { baseUrl: 'http://127.0.0.1:11434/v1', model: 'llama3.1', hasApiKey: true }, agent: { language: 'es' } });
    expect(await loadLlmApiKey(db.pool, vault(), tenantId)).toBe(key);

    const shown = await cli(['settings:show', '--tenant', tenantId]);
    expect(shown.stdout).not.toContain(key);
    expect(JSON.parse(shown.stdout)).toMatchObject({ llm: { hasApiKey: true } });

    // Given inline, the key is still kept out of the audit trail (its flag name does not say "key").
    const inline = `sk-inline-${randomBytes(16).toString('hex')}`;
    await ok(['settings:set', '--tenant', tenantId, '--json', JSON.stringify({ llmApiKey: inline, debounceMs: 1500 })]);
    expect(await loadLlmApiKey(db.pool, vault(), tenantId)).toBe(inline);

    const audited = await cliAudit('settings:set');
    expect(audited.map((a) => JSON.parse(a.details.args.json!).llmApiKey)).toEqual(['[from stdin]', '[redacted]']);
    const everything = JSON.stringify((await db.ownerPool.query('SELECT * FROM audit_events')).rows);
    expect(everything).not.toContain(key);
    expect(everything).not.toContain(inline);
    const { rows } = await db.ownerPool.query("SELECT details FROM audit_events WHERE action = 'settings.updated' AND tenant_id = $1 ORDER BY id", [tenantId]);
    expect(rows.map((r) => r.details.fields)).toEqual([
      ['assistant', 'llmApiKey', 'llmBaseUrl', 'llmModel', 'replyEngine'],
      ['debounceMs', 'llmApiKey'],
    ]);
  });

  it('names each problem of a bad patch (exit 2) and changes nothing', async () => {
    const before = await ok(['settings:show', '--tenant', tenantId]);
    const bad = await cli(['settings:set', '--tenant', tenantId, '--json', JSON.stringify({ debounceMs: 9000, storyReplies: 'sometimes' })]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: --json debounceMs: .*\n--json storyReplies: /);

    const notJson = await cli(['settings:set', '--tenant', tenantId, '--json', '{debounceMs: 1}']);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toMatch(/^error: --json: is not valid JSON/);

    const conflict = await cli(['settings:set', '--tenant', tenantId, '--json', '{"llmModel": null}']);
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toBe('error: replyEngine openai-compatible needs llmBaseUrl and llmModel\n');

    expect(await ok(['settings:show', '--tenant', tenantId])).toEqual(before);
    expect((await cliAudit('settings:set')).slice(-3).map((a) => [a.outcome, a.reason, a.details.args.json])).toEqual([
      ['failure', 'UsageError', '{"debounceMs":9000,"storyReplies":"sometimes"}'],
      ['failure', 'UsageError', '[not valid JSON]'],
      ['failure', 'SettingsError', '{"llmModel":null}'],
    ]);
  });
});
