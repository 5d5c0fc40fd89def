import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createActivities } from '../activities';
import { CatalogReplyEngine } from './ai/catalog-engine';
import type { Config } from './config';
import { TokenCipher } from './crypto/token-cipher';
import type { Logger } from './logger';
import { GraphClient } from './meta/graph-client';

export interface WorkerSetup {
  config: Pick<Config, 'TEMPORAL_NAMESPACE' | 'TEMPORAL_TASK_QUEUE' | 'TOKEN_ENCRYPTION_KEY' | 'GRAPH_API_BASE' | 'INSTAGRAM_API_BASE' | 'GRAPH_API_VERSION' | 'GRAPH_API_TIMEOUT_MS'>;
  connection: NativeConnection;
  pool: Pool;
  logger: Logger;
  /** Tests pass a pre-built bundle so each suite does not re-run webpack. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** The one worker: every workflow and activity, wired to real dependencies. */
export async function createSwitchboardWorker({ config, connection, pool, logger, workflowBundle }: WorkerSetup): Promise<Worker> {
  const activities = createActivities({
    pool,
    logger,
    cipher: new TokenCipher(config.TOKEN_ENCRYPTION_KEY),
    graph: new GraphClient({
      graphBase: config.GRAPH_API_BASE,
      instagramBase: config.INSTAGRAM_API_BASE,
      version: config.GRAPH_API_VERSION,
      timeoutMs: config.GRAPH_API_TIMEOUT_MS,
    }),
    replyEngine: new CatalogReplyEngine(pool),
  });
  return Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    activities,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
  });
}
