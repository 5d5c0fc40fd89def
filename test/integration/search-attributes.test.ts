import { randomBytes } from 'node:crypto';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { ensureSearchAttributes } from '../../src/temporal/register-search-attributes';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';

/**
 * A namespace without our search attributes (what a dev server's database created before an
 * attribute existed looks like) gets them registered, once; the run's own server keeps its set.
 */
describe('ensureSearchAttributes (real dev server)', () => {
  let connection: Connection;
  const namespace = `sa-test-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    connection = await Connection.connect({ address: process.env.TEST_TEMPORAL_ADDRESS! });
    await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
  });
  afterAll(() => connection?.close());

  it('registers every missing attribute in a fresh namespace, then nothing on a second call', async () => {
    const names = CUSTOM_SEARCH_ATTRIBUTES.map((k) => k.name).sort();
    expect((await ensureSearchAttributes(connection, namespace)).sort()).toEqual(names);
    const listed = await connection.operatorService.listSearchAttributes({ namespace });
    expect(Object.keys(listed.customAttributes ?? {})).toEqual(expect.arrayContaining(names));
    expect(await ensureSearchAttributes(connection, namespace)).toEqual([]);
  });

  it('adds nothing where the server was started with them', async () => {
    expect(await ensureSearchAttributes(connection, 'default')).toEqual([]);
  });
});
