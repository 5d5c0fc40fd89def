import { ApplicationFailure, Context } from '@temporalio/activity';
import { UnknownKeyVersionError } from '../src/crypto/key-provider';
import {
  countDataKeysToRewrap,
  dataKeysToRewrap,
  destroyUnusedSupersededKeys,
  reencryptStaleSecrets,
  tenantsWithDataKeyOlderThan,
} from '../src/db/key-inventory';
import type { ActivityDeps } from './index';

export interface BatchResult {
  done: number;
  remaining: number;
}

/**
 * Key rotation steps, each a bounded batch. Every item is idempotent (a rewrap only applies to a
 * key still under an old version; a re-encryption only to a secret still on a superseded key), so
 * a batch cut short by a worker crash is simply redone by the next attempt. Heartbeats report
 * progress and let Temporal notice a dead worker quickly.
 */
export function createKeyRotationActivities({ pool, vault, logger }: Pick<ActivityDeps, 'pool' | 'vault' | 'logger'>) {
  const heartbeat = (done: number) => {
    try {
      Context.current().heartbeat({ done });
    } catch {
      // Outside an activity context (direct calls in tests): nothing to report to.
    }
  };

  return {
    async rewrapDataKeysBatch(input: { batchSize: number }): Promise<BatchResult> {
      const target = vault.keys.activeVersion;
      let done = 0;
      for (const key of await dataKeysToRewrap(pool, target, input.batchSize)) {
        try {
          if (await vault.rewrapDataKey(key.tenantId, key.version)) done += 1;
        } catch (err) {
          // Retrying cannot help: an operator removed a master key that still wraps data keys.
          if (err instanceof UnknownKeyVersionError) throw ApplicationFailure.nonRetryable(`${err.message}; put it back in MASTER_KEYS and rerun the rotation`, 'MasterKeyMissing');
          throw err;
        }
        heartbeat(done);
      }
      const remaining = await countDataKeysToRewrap(pool, target);
      logger.info({ rewrapped: done, remaining, masterKeyVersion: target }, 'key rotation: data keys rewrapped');
      return { done, remaining };
    },

    /** Starts a new data key for tenants whose current one predates the rotation (`startedAt`). */
    async rotateDataKeysBatch(input: { startedAt: string; batchSize: number }): Promise<BatchResult> {
      const before = new Date(input.startedAt);
      let done = 0;
      for (const tenantId of await tenantsWithDataKeyOlderThan(pool, before, input.batchSize)) {
        await vault.rotateDataKey(tenantId);
        vault.evictTenant(tenantId);
        done += 1;
        heartbeat(done);
      }
      const remaining = (await tenantsWithDataKeyOlderThan(pool, before, 1)).length;
      logger.info({ rotated: done, more: remaining > 0 }, 'key rotation: data keys rotated');
      return { done, remaining };
    },

    async reencryptSecretsBatch(input: { batchSize: number }): Promise<BatchResult> {
      let n = 0;
      const { reencrypted, remaining } = await reencryptStaleSecrets(pool, vault, input.batchSize, () => heartbeat(++n));
      logger.info({ reencrypted, remaining }, 'key rotation: secrets re-encrypted');
      return { done: reencrypted, remaining };
    },

    async destroyUnusedDataKeys(): Promise<{ destroyed: number }> {
      const destroyed = await destroyUnusedSupersededKeys(pool);
      logger.info({ destroyed }, 'key rotation: superseded data keys destroyed');
      return { destroyed };
    },
  };
}
