import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { appendAuditEvent } from '../src/audit/log';
import { UnknownKeyVersionError } from '../src/crypto/key-provider';
import {
  countDataKeysToRewrap,
  dataKeysToRewrap,
  destroyUnusedSupersededKeys,
  dueDataKeyTenants,
  reencryptStaleSecrets,
  tenantsWithDataKeyOlderThan,
} from '../src/db/key-inventory';
import type { DataKeyPolicy, DueDataKey } from '../src/shared/data-key-policy';
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
/**
 * The idempotency key of this activity's audit event: workflow id + run id + activity id (stable
 * across retries of the same activity, distinct across continue-as-new runs). None outside Temporal.
 */
function activityAuditKey(step: string): string | undefined {
  try {
    const info = Context.current().info;
    const wf = info.workflowExecution;
    if (!wf) return undefined;
    const id = `${wf.workflowId}:${wf.runId}:${info.activityId}`;
    return `wf:${id.length > 150 ? `sha256-${createHash('sha256').update(id).digest('hex')}` : id}:${step}`;
  } catch {
    return undefined;
  }
}

export function createKeyRotationActivities({ pool, vault, logger }: Pick<ActivityDeps, 'pool' | 'vault' | 'logger'>) {
  /** `key.rotated` on the platform chain after each batch; an audit failure is logged (the batch is done and idempotent). */
  const audit = async (step: string, result: { done: number; remaining: number }) => {
    await appendAuditEvent(
      pool,
      {
        tenantId: null,
        actor: { type: 'system', id: 'key-rotation' },
        action: 'key.rotated',
        resource: `master_key:${vault.keys.activeVersion}`,
        outcome: 'success',
        details: { step, done: result.done, remaining: result.remaining, masterKeyVersion: vault.keys.activeVersion },
      },
      { idempotencyKey: activityAuditKey(step) },
    ).catch((err: unknown) => logger.error({ err: { name: (err as Error).name, message: (err as Error).message }, step }, 'audit append failed'));
  };

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
      await audit('rewrap_data_keys', { done, remaining });
      return { done, remaining };
    },

    /**
     * Starts a new data key for tenants whose current one predates the rotation (`startedAt`),
     * only `tenantIds` when given. Each new key is a `data_key.rotated` event on its tenant's chain.
     */
    async rotateDataKeysBatch(input: { startedAt: string; batchSize: number; tenantIds?: string[] }): Promise<BatchResult> {
      const before = new Date(input.startedAt);
      let done = 0;
      for (const tenantId of await tenantsWithDataKeyOlderThan(pool, before, input.batchSize, input.tenantIds)) {
        // The new key and its `data_key.rotated` event on the tenant's chain commit together.
        const version = await vault.rotateDataKey(tenantId, (tx, v) =>
          appendAuditEvent(
            tx,
            {
              tenantId,
              actor: { type: 'system', id: 'key-rotation' },
              action: 'data_key.rotated',
              resource: `data_key:${v}`,
              outcome: 'success',
              details: { version: v, masterKeyVersion: vault.keys.activeVersion, scope: input.tenantIds ? 'due_tenants' : 'all_tenants' },
            },
            { idempotencyKey: `data_key.rotated:${tenantId}:${v}` },
          ).then(() => undefined),
        );
        vault.evictTenant(tenantId);
        done += 1;
        heartbeat(done);
      }
      const remaining = (await tenantsWithDataKeyOlderThan(pool, before, 1, input.tenantIds)).length;
      logger.info({ rotated: done, more: remaining > 0 }, 'key rotation: data keys rotated');
      await audit('rotate_data_keys', { done, remaining });
      return { done, remaining };
    },

    /**
     * A page of tenants whose current data key is due under the policy at `asOf` (the workflow's
     * time, so a run decides with one clock), by tenant id after `after`.
     */
    async listDueDataKeyTenants(input: DataKeyPolicy & { asOf: number; after?: string | null; limit: number }): Promise<{ due: DueDataKey[]; next: string | null }> {
      const page = await dueDataKeyTenants(pool, { maxAgeMs: input.maxAgeMs, maxEncryptions: input.maxEncryptions }, new Date(input.asOf), { after: input.after ?? null, limit: input.limit });
      logger.info({ due: page.due.length, more: page.next !== null }, 'data key rotation: due tenants listed');
      return page;
    },

    async reencryptSecretsBatch(input: { batchSize: number }): Promise<BatchResult> {
      let n = 0;
      const { reencrypted, remaining } = await reencryptStaleSecrets(pool, vault, input.batchSize, () => heartbeat(++n));
      logger.info({ reencrypted, remaining }, 'key rotation: secrets re-encrypted');
      await audit('reencrypt_secrets', { done: reencrypted, remaining });
      return { done: reencrypted, remaining };
    },

    async destroyUnusedDataKeys(): Promise<{ destroyed: number }> {
      const destroyed = await destroyUnusedSupersededKeys(pool);
      logger.info({ destroyed }, 'key rotation: superseded data keys destroyed');
      await audit('destroy_unused_data_keys', { done: destroyed, remaining: 0 });
      return { destroyed };
    },
  };
}
