import {
  CatalogValidationError,
  formatFromFileName,
  formatProblem,
  MAX_CATALOG_BYTES,
  MAX_CATALOG_ROWS,
  parseCatalog,
  parseCsvRecords,
  type CatalogFormat,
  type CatalogProblem,
} from '../../src/catalog/import';

/** The problems a file is refused with (fails the test when it is accepted). */
function problemsOf(input: string | Buffer, format: CatalogFormat): CatalogProblem[] {
  try {
    parseCatalog(input, format);
  } catch (err) {
    if (err instanceof CatalogValidationError) return err.problems;
    throw err;
  }
  throw new Error('the catalog was accepted');
}

const texts = (input: string | Buffer, format: CatalogFormat) => problemsOf(input, format).map((p) => formatProblem(p, format));

describe('CSV records (RFC 4180)', () => {
  it('splits fields and records, LF or CRLF, with or without a final line break', () => {
    expect(parseCsvRecords('a,b\r\n1,2\r\n').records.map((r) => r.fields)).toEqual([['a', 'b'], ['1', '2']]);
    expect(parseCsvRecords('a,b\n1,2').records.map((r) => r.fields)).toEqual([['a', 'b'], ['1', '2']]);
    expect(parseCsvRecords('a,,c\n,,\n').records.map((r) => r.fields)).toEqual([['a', '', 'c'], ['', '', '']]);
  });

  it('keeps commas, line breaks and doubled quotes inside quoted fields', () => {
    const { records, problems } = parseCsvRecords('sku,name\r\n"A,1","He said ""hi""\r\nand left"\r\nB,"x"\r\n');
    expect(problems).toEqual([]);
    expect(records.map((r) => r.fields)).toEqual([['sku', 'name'], ['A,1', 'He said "hi"\nand left'], ['B', 'x']]);
    // The third record starts on line 4: the quoted line break moved it down one line.
    expect(records.map((r) => [r.row, r.line])).toEqual([[1, 1], [2, 2], [3, 4]]);
  });

  it('reports a stray quote in an unquoted field, text after a closing quote and an unclosed quote', () => {
    expect(parseCsvRecords('a,b\n5" screen,x\n').problems).toEqual([{ row: 2, column: null, message: expect.stringContaining('a quote in an unquoted field') }]);
    expect(parseCsvRecords('a,b\n"5"x,y\n').problems).toEqual([{ row: 2, column: null, message: expect.stringContaining('text after a closing quote') }]);
    expect(parseCsvRecords('a,b\n1,"never closed\n2,3\n').problems).toEqual([{ row: 2, column: null, message: 'field 2: the quote opened on line 2 is never closed' }]);
  });
});

describe('parseCatalog: CSV', () => {
  it('parses a catalog with a BOM, CRLF, quotes and an embedded line break', () => {
    const csv = '\uFEFFsku,name,description,price,currency,stock,url\r\n' +
      'JKT-1,Rain jacket,"Waterproof, breathable\r\nwith hood",89.90,EUR,3,https://shop.example/jkt\r\n' +
      'HAT-2,"Wool ""Merino"" beanie",,24,EUR,,\r\n' +
      'SOCK-3,Socks,,,,0,\r\n';
    expect(parseCatalog(Buffer.from(csv, 'utf8'), 'csv')).toEqual([
      { sku: 'JKT-1', name: 'Rain jacket', description: 'Waterproof, breathable\nwith hood', price: '89.90', currency: 'EUR', stock: 3, url: 'https://shop.example/jkt' },
      { sku: 'HAT-2', name: 'Wool "Merino" beanie', description: '', price: '24', currency: 'EUR', stock: null, url: null },
      { sku: 'SOCK-3', name: 'Socks', description: '', price: null, currency: null, stock: 0, url: null },
    ]);
  });

  it('accepts columns in any order and case, only sku and name required, and skips blank lines', () => {
    expect(parseCatalog(' Name ,SKU\n\nTrail shoes,SH-1\n,\n', 'csv')).toEqual([
      { sku: 'SH-1', name: 'Trail shoes', description: '', price: null, currency: null, stock: null, url: null },
    ]);
  });

  it('reports every problem of every row, with its row and column, in one go', () => {
    const csv = [
      'sku,name,price,currency,stock,url',
      'A,Good,1.00,EUR,1,https://x.example', // row 2: fine
      ',No sku,-1,EUR,1.5,ftp://x.example', // row 3: sku, price, stock, url
      'C,,19,90,eur,many,', // row 4: 7 fields for 6 columns
      'D,Comma price,"19,90",EUR,,', // row 5
      'E,No currency,5,,,', // row 6
      'F,Too precise,1.999,usd,-3,not a url', // row 7
    ].join('\n');
    expect(texts(csv, 'csv')).toEqual([
      'row 3, sku: is required',
      'row 3, price: must be a number ≥ 0',
      'row 3, stock: must be a whole number ≥ 0 (leave it empty when unknown)',
      'row 3, url: must be an http or https URL',
      'row 4: has 7 fields, the header has 6',
      'row 5, price: must use . as the decimal separator: 19.90, not 19,90',
      'row 6, currency: is required when price is given',
      'row 7, price: must have at most 2 decimal places',
      'row 7, currency: must be an ISO 4217 code of 3 upper-case letters, e.g. EUR',
      'row 7, stock: must be a whole number ≥ 0 (leave it empty when unknown)',
      'row 7, url: must be an http or https URL',
    ]);
  });

  it('numbers rows as a spreadsheet does and adds the line when a quoted line break moves it', () => {
    const csv = 'sku,name,price,currency\nA,"two\nlines",1,EUR\nB,Bad,x,EUR\n';
    expect(problemsOf(csv, 'csv')).toEqual([{ row: 3, line: 4, column: 'price', message: 'must be a number ≥ 0 with . as the decimal separator, e.g. 19.90' }]);
    expect(texts(csv, 'csv')).toEqual(['row 3 (line 4), price: must be a number ≥ 0 with . as the decimal separator, e.g. 19.90']);
  });

  it('refuses duplicate SKUs, naming both rows', () => {
    expect(texts('sku,name\nA,One\nB,Two\nA,Three\n', 'csv')).toEqual(['row 4, sku: "A" already appears in row 2']);
  });

  it('refuses unknown, repeated, unnamed and missing columns before looking at rows', () => {
    expect(texts('sku,name,colour,size\nA,B,red,M\n', 'csv')).toEqual([
      'row 1: header: unknown columns "colour", "size"; the columns are sku, name, description, price, currency, stock, url',
    ]);
    expect(texts('sku,name,Price,price,\nA,B,1,2,\n', 'csv')).toEqual([
      'row 1: header: column 5 has no name',
      'row 1: header: column price appears more than once',
    ]);
    expect(texts('name,price\nA,1\n', 'csv')).toEqual(['row 1: header: missing required column sku']);
    expect(texts('sku;name;price\nA;B;1\n', 'csv')[0]).toContain('export it with commas');
  });

  it('refuses an empty file, a header without products, invalid UTF-8 and an unclosed quote', () => {
    expect(texts('', 'csv')).toEqual(['the file is empty: the first line must be the header (sku,name,…)']);
    expect(texts('sku,name\r\n', 'csv')).toEqual(['the file has no products']);
    expect(texts(Buffer.from([0x73, 0x6b, 0x75, 0x0a, 0xff, 0xfe]), 'csv')).toEqual(['the file is not valid UTF-8 (save or export it as UTF-8)']);
    expect(texts('sku,name\nA,"open\n', 'csv')).toEqual(['row 2: field 2: the quote opened on line 2 is never closed']);
  });

  it('enforces the row and size limits', () => {
    const many = `sku,name\n${Array.from({ length: MAX_CATALOG_ROWS + 1 }, (_, i) => `S${i},P${i}`).join('\n')}`;
    expect(texts(many, 'csv')).toEqual([`the file has ${MAX_CATALOG_ROWS + 1} products; at most ${MAX_CATALOG_ROWS} per import`]);
    const exactly = `sku,name\n${Array.from({ length: MAX_CATALOG_ROWS }, (_, i) => `S${i},P${i}`).join('\n')}`;
    expect(parseCatalog(exactly, 'csv')).toHaveLength(MAX_CATALOG_ROWS);
    const big = Buffer.alloc(MAX_CATALOG_BYTES + 1, 0x61);
    expect(texts(big, 'csv')).toEqual([`the file has ${MAX_CATALOG_BYTES + 1} bytes; at most ${MAX_CATALOG_BYTES} (5 MiB) per import`]);
  });

  it('checks lengths: sku 1–100 characters after trimming', () => {
    expect(parseCatalog(`sku,name\n  ${'x'.repeat(100)}  ,N\n`, 'csv')[0]!.sku).toBe('x'.repeat(100));
    expect(texts(`sku,name\n${'x'.repeat(101)},N\n`, 'csv')).toEqual(['row 2, sku: must be at most 100 characters']);
  });
});

describe('parseCatalog: JSON', () => {
  const product = { sku: 'A', name: 'Rain jacket', description: 'Dry', price: 89.9, currency: 'EUR', stock: 3, url: 'https://shop.example/a' };
  const parsed = { sku: 'A', name: 'Rain jacket', description: 'Dry', price: '89.9', currency: 'EUR', stock: 3, url: 'https://shop.example/a' };

  it('accepts an array and {"products": [...]}, prices as numbers or strings, null as not given', () => {
    expect(parseCatalog(JSON.stringify([product]), 'json')).toEqual([parsed]);
    expect(parseCatalog(`\uFEFF${JSON.stringify({ products: [product, { sku: 12345, name: 'B', price: '19.90', currency: 'USD', stock: null, url: null }] })}`, 'json')).toEqual([
      parsed,
      { sku: '12345', name: 'B', description: '', price: '19.90', currency: 'USD', stock: null, url: null },
    ]);
  });

  it('reports every problem with the array index and field', () => {
    const items = [
      product,
      { sku: 'B', name: 42, price: -5, currency: 'EUR', stock: 2.5 },
      { sku: 'C', name: 'C', colour: 'red', size: 'M' },
      'not an object',
      { ...product },
    ];
    expect(texts(JSON.stringify(items), 'json')).toEqual([
      'index 1, name: must be text',
      'index 1, price: must be a number ≥ 0',
      'index 1, stock: must be a whole number ≥ 0 (leave it empty when unknown)',
      'index 2: unknown fields "colour", "size"; the fields are sku, name, description, price, currency, stock, url',
      'index 3: must be an object like {"sku": …, "name": …}',
      'index 4, sku: "A" already appears at index 0',
    ]);
  });

  it('refuses other shapes and broken JSON without quoting it', () => {
    expect(texts('{"items": []}', 'json')).toEqual(['must be an array of products or {"products": [...]}; unknown field "items"']);
    expect(texts('"x"', 'json')).toEqual(['must be an array of products or {"products": [...]}']);
    expect(texts('[]', 'json')).toEqual(['the file has no products']);
    const broken = texts('[{"sku": "secret-ish", ', 'json');
    expect(broken).toEqual([expect.stringMatching(/^not valid JSON/)]);
    expect(broken[0]).not.toContain('secret-ish');
  });
});

describe('formatFromFileName', () => {
  it('infers csv and json from the extension, case-insensitively', () => {
    expect(formatFromFileName('/tmp/catalog.CSV')).toBe('csv');
    expect(formatFromFileName('export.json')).toBe('json');
    expect(formatFromFileName('catalog.txt')).toBeUndefined();
  });
});
