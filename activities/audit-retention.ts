import { Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../src/audit/log';
import { purgeExpiredEpochs, type PurgeBatchResult } from '../src/audit/retention';
import { recordAuditVerification } from '../src/audit/verifications';
import { verifyAuditLog } from '../src/audit/verify';
import { AuditKeyring, type AuditSigner } from '../src/audit/keys';
import type { Logger } from '../src/logger';

/** The worker's audit settings (src/audit/checkpoints.ts `auditSettings`). */
export interface AuditRuntime {
  signer: AuditSigner | null;
  keyring: AuditKeyring;
  dir: string | null;
}

export interface AuditVerificationSummary {
  ok: boolean;
  chains: number;
  events: number;
  brokenChains: number;
  findings: number;
  firstFinding: string | null;
  warnings: string[];
}

function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // Outside an activity context (direct calls in tests).
  }
}

function workflowId(): string | undefined {
  try {
    return Context.current().info.workflowExecution?.workflowId;
  } catch {
    return undefined;
  }
}

/** The AuditRetention workflow's activities (workflows/audit-retention.ts). */
export function createAuditRetentionActivities({ pool, logger, audit }: { pool: Pool; logger: Logger; audit?: AuditRuntime }) {
  const runtime: AuditRuntime = audit ?? { signer: null, keyring: new AuditKeyring([]), dir: null };
  return {
    async purgeExpiredAuditEpochs(input: { batchSize: number }): Promise<Omit<PurgeBatchResult, 'purges' | 'refused'> & { refused: Array<{ chainId: string; epoch: string; status: string }> }> {
      const seal = runtime.signer && runtime.dir ? { signer: runtime.signer, keyring: runtime.keyring, dir: runtime.dir } : null;
      const r = await purgeExpiredEpochs(pool, { batchSize: input.batchSize, seal, onProgress: (done) => heartbeat({ done }) });
      if (r.epochs > 0 || r.refused.length > 0) {
        logger.info({ epochs: r.epochs, events: r.events, refused: r.refused.length, more: r.more }, 'audit retention: expired epochs purged');
      }
      return { epochs: r.epochs, events: r.events, more: r.more, refused: r.refused.map((p) => ({ chainId: p.chainId, epoch: p.epoch, status: p.status })) };
    },

    /**
     * Verifies every chain; records the result (/readyz reads the latest) and, when broken, appends
     * `audit.verification_failed` to the platform chain in the same transaction.
     */
    async verifyAuditChains(): Promise<AuditVerificationSummary> {
      const report = await verifyAuditLog(pool, { keyring: runtime.keyring, dir: runtime.dir });
      heartbeat({ verified: report.totals.chains });
      const findings = report.chains.reduce((n, c) => n + c.findingCount, 0);
      const first = report.chains.find((c) => c.firstBad)?.firstBad ?? null;
      const firstFinding = first ? `${first.chainId} seq ${first.seq ?? '-'}: ${first.kind}` : null;
      const summary: AuditVerificationSummary = {
        ok: report.ok,
        chains: report.totals.chains,
        events: report.totals.events,
        brokenChains: report.totals.brokenChains,
        findings,
        firstFinding,
        warnings: report.warnings,
      };
      const wf = workflowId();
      await recordAuditVerification(pool, summary, async (client) => {
        await appendAuditEvent(
          client,
          {
            tenantId: null,
            actor: { type: 'system', id: 'audit-retention' },
            action: 'audit.verification_failed',
            resource: 'audit_log',
            outcome: 'failure',
            reason: firstFinding ?? 'verification failed',
            details: {
              brokenChains: report.chains.filter((c) => !c.ok).map((c) => c.chainId).slice(0, 20),
              findings,
              firstKind: first?.kind ?? null,
              firstSeq: first?.seq ?? null,
            },
          },
          wf ? { idempotencyKey: `wf:${wf.length > 150 ? wf.slice(0, 150) : wf}:audit.verification_failed` } : {},
        );
      });
      if (!report.ok) logger.error({ brokenChains: summary.brokenChains, findings, firstFinding }, 'audit verification FAILED: /readyz is degraded');
      return summary;
    },
  };
}
