import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../..');
/** `../shared` beside the project root (CI lays it out the same way). */
export const SHARED = path.resolve(ROOT, '../shared');
export const FIXTURES = path.join(SHARED, 'meta-fixtures');
export const WYCHEPROOF = path.join(SHARED, 'test-vectors/wycheproof');
