/**
 * The audit trail's vocabulary, shared by everything that records security events
 * (gateway, activities, CLI, workflows via activities). Implementation: src/audit/log.ts.
 */

export type AuditActorType = 'system' | 'operator' | 'tenant_user' | 'meta' | 'api_key';

export type AuditAction =
  | 'webhook.signature_rejected'
  | 'webhook.unrouted'
  | 'token.stored'
  | 'token.decrypted'
  | 'token.refreshed'
  | 'channel.reauth_required'
  | 'auth.login'
  | 'auth.denied'
  | 'codec.decode'
  | 'codec.encode'
  | 'tenant.created'
  | 'tenant.deleted'
  | 'key.rotated'
  // A tenant's data key replaced by a new version (tenant chain; activities/key-rotation.ts).
  | 'data_key.rotated'
  | 'key.retired'
  | 'retention.purged'
  | 'audit.verification_failed'
  | 'cli.command'
  | 'settings.updated'
  | 'catalog.imported'
  | 'conversation.handoff'
  | 'conversation.agent_message'
  | 'auth.logout'
  | 'session.revoked'
  | 'operator.created'
  | 'user.created'
  | 'api_key.created'
  | 'api_key.revoked'
  | 'user.updated'
  // The onboarding portal (src/portal/): OAuth attempts, their refusals and denied consents.
  | 'onboarding.oauth_started'
  | 'onboarding.oauth_callback'
  | 'onboarding.oauth_denied'
  | 'onboarding.oauth_rejected'
  // The onboarding saga (workflows/onboarding.ts): how it ended, what its steps and compensations changed.
  | 'onboarding.completed'
  | 'onboarding.abandoned'
  | 'onboarding.cancelled'
  | 'onboarding.failed'
  | 'channel.removed'
  | 'webhook.subscribed'
  | 'webhook.unsubscribed'
  | 'tenant.crypto_shredded'
  // The token sweep (workflows/token-rotation.ts): one event per channel and sweep (`token.refreshed` above too).
  | 'token.validated'
  | 'token.resubscribed'
  | 'token.check_failed'
  // Tenant notifications (workflows/notification.ts): one per episode and way of delivery (email, webhook).
  | 'notification.sent'
  | 'notification.failed'
  | 'notification.skipped'
  // The reconnect saga (workflows/reconnect.ts) and the portal's reconnect flow.
  | 'channel.reconnected'
  | 'channel.reconnect_started'
  | 'channel.reconnect_abandoned'
  | 'channel.reconnect_cancelled'
  | 'channel.reconnect_failed';

export interface AuditEventInput {
  /** Null for platform events (they go to the platform chain). */
  tenantId: string | null;
  actor: { type: AuditActorType; id?: string };
  action: AuditAction;
  /** What was acted on, e.g. `channel:<uuid>`, `tenant:<uuid>`, `master_key:2`. */
  resource?: string;
  outcome: 'success' | 'failure';
  /** Why it failed (or a short qualifier); never PII. */
  reason?: string;
  ip?: string;
  userAgent?: string;
  requestId?: string;
  /** Extra facts; masked for PII by the log before it is stored and hashed. */
  details?: Record<string, unknown>;
  /** Set by default to the current time; hashed, so it is fixed at append. */
  occurredAt?: Date;
}

/** `platform` for platform events, else the tenant id. */
export function auditChainId(tenantId: string | null): string {
  return tenantId ?? 'platform';
}
