import { TestWorkflowEnvironment } from '@temporalio/testing';
import { resolveTemporalCli } from '../../scripts/temporal-cli';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';

/** A real Temporal dev server from the project's pinned CLI (the SDK's own download needs the internet). */
export async function startLocalTemporal(): Promise<TestWorkflowEnvironment> {
  const path = resolveTemporalCli();
  if (!path) throw new Error('Temporal CLI not found: run `node scripts/setup.js --test` (npm test does) or set TEMPORAL_CLI_PATH');
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path },
      searchAttributes: CUSTOM_SEARCH_ATTRIBUTES,
      extraArgs: ['--log-level', 'error'],
    },
  });
}
