import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { Pool } from '../../src/db/pool';
import type { AuditEventInput } from '../../src/audit/types';

/** Shared by the audit tests: events, and tampering as an attacker with the owner's rights. */

export function auditEvent(tenantId: string | null, i: number, patch: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    tenantId,
    actor: { type: 'operator', id: `op-${i % 3}` },
    action: i % 2 === 0 ? 'token.decrypted' : 'auth.login',
    resource: `channel:${randomUUID()}`,
    outcome: i % 5 === 0 ? 'failure' : 'success',
    reason: i % 5 === 0 ? 'GraphAuthExpired (code 190)' : undefined,
    ip: '198.51.100.7',
    userAgent: 'jest',
    requestId: `req-${i}`,
    details: { i, purpose: 'send_reply', nested: { ok: true, ratio: i / 7 } },
    ...patch,
  };
}

/**
 * Runs `fn` on one owner connection with the audit tables' user triggers disabled (what an
 * attacker holding the owner's credentials can do), and re-enables them whatever happens.
 */
export async function asAttacker<T>(ownerPool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await ownerPool.connect();
  const tables = ['audit_events', 'audit_checkpoints', 'audit_anchors'];
  try {
    for (const t of tables) await client.query(`ALTER TABLE ${t} DISABLE TRIGGER USER`);
    return await fn(client);
  } finally {
    for (const t of tables) await client.query(`ALTER TABLE ${t} ENABLE TRIGGER USER`);
    client.release();
  }
}

/** A tenants row, written as the owner (seeding bypasses row-level security); returns its id. */
export async function seedTenant(ownerPool: Pool, name: string): Promise<string> {
  const { rows } = await ownerPool.query<{ id: string }>('INSERT INTO tenants (name) VALUES ($1) RETURNING id', [name]);
  return rows[0]!.id;
}
