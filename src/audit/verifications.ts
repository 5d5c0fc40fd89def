import type { Pool, PoolClient } from 'pg';
import { withPlatform } from '../db/tenant-scope';

/**
 * Results of the scheduled audit verification (table audit_verifications, migration 0005).
 * /readyz answers `audit: 'degraded'` (503) while the latest one failed; no row yet is `ok`.
 */

export interface VerificationOutcome {
  ok: boolean;
  findings: number;
  firstFinding: string | null;
}

/**
 * Inserts the result; on failure `onFailure` runs in the same transaction (the alert event), in the
 * platform scope: the alert goes to the platform chain.
 */
export async function recordAuditVerification(pool: Pool, v: VerificationOutcome, onFailure?: (client: PoolClient) => Promise<void>): Promise<void> {
  await withPlatform(pool, async (client) => {
    await client.query('INSERT INTO audit_verifications (ok, findings, first_finding) VALUES ($1, $2, $3)', [v.ok, v.findings, v.firstFinding?.slice(0, 1000) ?? null]);
    if (!v.ok && onFailure) await onFailure(client);
  });
}

/** 'ok' unless the latest recorded verification failed. */
export async function auditReadiness(db: Pick<Pool, 'query'>): Promise<'ok' | 'degraded'> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT ok FROM audit_verifications ORDER BY verified_at DESC, id DESC LIMIT 1');
  return rows[0] && !rows[0].ok ? 'degraded' : 'ok';
}
