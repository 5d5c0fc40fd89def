import type { Pool } from 'pg';
import { appendAuditEvent, type AppendResult } from './log';

/**
 * `cli.command` audit events for operator CLI actions (platform chain, or the tenant's chain when
 * the command names one). Arguments are masked: secrets (`--access-token`, anything named like a
 * token/secret/password/key material) never reach the log, whatever their value; other values are
 * kept short. Recording never fails the command: an audit failure is returned as `null` and the
 * caller may print a warning.
 */

const SECRET_ARG = /token|secret|password|passphrase|credential|private|signing|master|api[-_]?key|cookie|authorization/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface CliAction {
  /** e.g. `channels:connect` */
  command: string;
  /** Parsed `--flag value` pairs, before validation; masked here. */
  args: Record<string, unknown>;
  outcome: 'success' | 'failure';
  /** Error name or a short reason when it failed (never the error message's data). */
  reason?: string;
  /** OS user running the CLI (default: $USER). */
  operator?: string;
}

export function maskCliArgs(args: Record<string, unknown>): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(args)) {
    if (v === undefined) continue;
    if (SECRET_ARG.test(k)) out[k] = '[redacted]';
    else if (v === null || typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    else {
      const s = v instanceof Date ? v.toISOString() : String(v);
      out[k] = s.length > 200 ? `${s.slice(0, 200)}…` : s;
    }
  }
  return out;
}

export async function recordCliAction(pool: Pool, action: CliAction): Promise<AppendResult | null> {
  const args = maskCliArgs(action.args);
  const tenant = [args['tenant'], args['id']].find((v): v is string => typeof v === 'string' && UUID.test(v));
  try {
    // Operator actions are platform events (the operator is not the tenant's user); the tenant
    // they touched is named in the details, so a tenant's own chain holds only its activity.
    return await appendAuditEvent(pool, {
      tenantId: null,
      actor: { type: 'operator', id: action.operator ?? process.env.USER ?? 'cli' },
      action: 'cli.command',
      resource: `cli:${action.command}`,
      outcome: action.outcome,
      reason: action.reason,
      details: { command: action.command, args, ...(tenant && { tenantId: tenant.toLowerCase() }) },
    });
  } catch {
    return null;
  }
}
