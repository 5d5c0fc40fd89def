import { z } from 'zod';
import { StaticKeyProvider } from '../../crypto/key-provider';
import { dataKeyPolicyFromConfig, keyStatus } from '../../db/key-inventory';
import { tenantKeyStatus } from '../../db/tenant-key-status';
import { withTenant } from '../../db/tenant-scope';
import { defineRoute, isoDate, tenantParams, type ApiRoute } from '../define';
import type { ApiDeps } from '../deps';

/** Key status: the whole hierarchy for operators (`keys.rotate`), a tenant's own data keys for its people. Never key material. */

const secretsSchema = z.array(
  z.object({
    table: z.string(),
    column: z.string(),
    byDataKeyVersion: z.record(z.string(), z.number().int()).describe('Stored secrets per data key version'),
  }),
);

const platformStatusSchema = z
  .object({
    activeMasterKeyVersion: z.number().int(),
    configuredMasterKeyVersions: z.array(z.number().int()),
    masterKeys: z.array(z.object({ version: z.number().int(), dataKeys: z.number().int(), retired: z.boolean(), configured: z.boolean() })),
    dataKeys: z.array(
      z.object({ version: z.number().int(), tenants: z.number().int(), superseded: z.number().int(), encryptions: z.number().int(), oldestCreatedAt: isoDate.nullable() }),
    ),
    policy: z
      .object({ maxAgeDays: z.number(), maxEncryptions: z.number().int() })
      .describe('The data key rotation policy (DATA_KEY_MAX_AGE_DAYS, DATA_KEY_MAX_ENCRYPTIONS): a current key is due at either limit'),
    tenantDataKeys: z
      .array(
        z.object({
          tenantId: z.uuid(),
          version: z.number().int(),
          masterKeyVersion: z.number().int(),
          createdAt: isoDate,
          ageDays: z.number().int(),
          encryptions: z.number().int(),
          superseded: z.boolean(),
          due: z.boolean().describe('Current and at a policy limit: the next scheduled data key rotation replaces it'),
          dueBecause: z.array(z.enum(['age', 'encryptions'])).describe('The limits it reached'),
        }),
      )
      .describe('Every tenant data key, oldest first'),
    secrets: z.array(
      z.object({ table: z.string(), column: z.string(), byDataKeyVersion: z.record(z.string(), z.number().int()), onSupersededKeys: z.number().int() }),
    ),
    pending: z.object({ rewrap: z.number().int().describe('Data keys still wrapped by an older master key'), reencrypt: z.number().int().describe('Secrets on superseded data keys') }),
    dueForRotation: z.number().int().describe('Current data keys due under the policy'),
  })
  .meta({ id: 'KeyStatus' });

const tenantStatusSchema = z
  .object({
    tenantId: z.uuid(),
    dataKeys: z.array(
      z.object({
        version: z.number().int(),
        masterKeyVersion: z.number().int(),
        current: z.boolean().describe('Encrypts new secrets (not superseded)'),
        createdAt: isoDate,
        ageDays: z.number().int(),
        rewrappedAt: isoDate.nullable(),
        supersededAt: isoDate.nullable(),
        encryptions: z.number().int(),
        secrets: z.number().int().describe('Secrets this version encrypts now'),
      }),
    ),
    secrets: secretsSchema,
  })
  .meta({ id: 'TenantKeyStatus' });

const DAY_MS = 86_400_000;

export function keysRoutes({ pool, config }: Pick<ApiDeps, 'pool' | 'config'>): ApiRoute[] {
  const provider = StaticKeyProvider.fromSpec(config.MASTER_KEYS);
  return [
    defineRoute({
      id: 'getPlatformKeyStatus',
      method: 'GET',
      path: '/platform/keys/status',
      summary: 'Master keys, every tenant data key (age, usage, due for rotation) and secrets per key version (what `keys:status` prints)',
      tag: 'keys',
      scope: 'platform',
      permission: 'keys.rotate',
      response: platformStatusSchema,
      handler: async () => keyStatus(pool, provider, { policy: dataKeyPolicyFromConfig(config) }),
    }),
    defineRoute({
      id: 'getTenantKeyStatus',
      method: 'GET',
      path: '/tenants/:tenantId/keys/status',
      summary: "The tenant's data key versions: age, wrapping master key, encryptions, secrets on each",
      tag: 'keys',
      scope: 'tenant',
      permission: 'analytics.read',
      params: tenantParams,
      response: tenantStatusSchema,
      handler: async ({ tenantId }) => {
        const status = await withTenant(pool, tenantId, (tx) => tenantKeyStatus(tx));
        const now = Date.now();
        return {
          tenantId,
          dataKeys: status.dataKeys.map((k) => ({
            version: k.version,
            masterKeyVersion: k.masterKeyVersion,
            current: k.supersededAt === null,
            createdAt: k.createdAt.toISOString(),
            ageDays: Math.floor((now - k.createdAt.getTime()) / DAY_MS),
            rewrappedAt: k.rewrappedAt?.toISOString() ?? null,
            supersededAt: k.supersededAt?.toISOString() ?? null,
            encryptions: k.encryptions,
            secrets: k.secrets,
          })),
          secrets: status.secrets,
        };
      },
    }),
  ];
}
