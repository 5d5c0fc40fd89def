import type { Pool } from 'pg';
import type { ReplyEngine } from '../src/ai/reply-engine';
import type { TokenCipher } from '../src/crypto/token-cipher';
import type { Logger } from '../src/logger';
import type { GraphClient } from '../src/meta/graph-client';
import { createConversationActivities } from './conversation-store';
import { createGraphActivities } from './graph';

export interface ActivityDeps {
  pool: Pool;
  cipher: TokenCipher;
  graph: GraphClient;
  replyEngine: ReplyEngine;
  logger: Logger;
}

/** Every activity the worker registers, bound to its dependencies (no module-level state). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createConversationActivities(deps),
    ...createGraphActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
