import type { Context } from 'koa';
import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { AuditEventInput } from '../audit/types';
import type { Logger } from '../logger';

/** The request facts every audit event of an HTTP request carries (ids and headers only). */
export function requestFacts(ctx: Context): Pick<AuditEventInput, 'ip' | 'userAgent' | 'requestId'> {
  return {
    ip: ctx.ip,
    userAgent: ctx.get('user-agent').slice(0, 512) || undefined,
    requestId: String(ctx.state.requestId ?? '').slice(0, 200) || undefined,
  };
}

/**
 * Appends an event about this request outside any transaction: a failed append is logged and never
 * turned into the response (the request's own outcome stands either way).
 */
export async function auditRequest(pool: Pool, logger: Logger, ctx: Context, event: Omit<AuditEventInput, 'ip' | 'userAgent' | 'requestId'>): Promise<void> {
  await appendAuditEvent(pool, { ...event, ...requestFacts(ctx) }).catch((err: unknown) =>
    logger.error({ requestId: ctx.state.requestId, action: event.action, err: { name: (err as Error).name, message: (err as Error).message } }, 'audit append failed'),
  );
}
