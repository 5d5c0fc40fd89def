import type { Context } from 'koa';
import type { AuditEventInput } from '../audit/types';
import { auditActorOf, type Principal } from '../auth/permissions';
import { requestFacts } from '../gateway/request-audit';

/** Who acted and from where, for the audit event of an /api/v1 change (ids and request facts only). */
export function auditContext(ctx: Context, principal: Principal): Pick<AuditEventInput, 'actor' | 'ip' | 'userAgent' | 'requestId'> {
  return { actor: auditActorOf(principal), ...requestFacts(ctx) };
}

/** How the audit trail and `created_by` name a principal. */
export const principalRef = (principal: Principal): string => `${principal.kind}:${principal.id}`;
