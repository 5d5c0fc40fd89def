import type { Pool } from 'pg';
import { appendAuditEvent } from '../audit/log';
import type { Logger } from '../logger';
import { findAccountByEmail, updatePasswordHash, type Account } from './accounts';
import { checkLoginThrottle, recordLoginFailure, recordLoginSuccess, type ThrottleLimits } from './login-throttle';
import { dummyPasswordHash, hashPassword, needsRehash, verifyPassword } from './passwords';
import { createSession, type CreatedSession, type SessionLifetimes } from './sessions';

/**
 * One sign-in attempt: throttle check, account lookup, password check (the same scrypt work for
 * an unknown email), session creation. Every attempt is an `auth.login` audit event — success or
 * failure with its reason, never the password; the caller only ever learns "wrong email or
 * password" (or 429), so the answer does not tell which accounts exist or are disabled.
 */

export type LoginFailure = 'unknown_account' | 'wrong_password' | 'account_disabled' | 'throttled_account' | 'throttled_ip';

export type LoginOutcome =
  | { ok: true; account: Account; session: CreatedSession }
  | { ok: false; reason: LoginFailure; retryAfterSeconds?: number };

export interface LoginRequest {
  email: string;
  password: string;
  ip: string;
  userAgent?: string;
  requestId?: string;
}

export interface LoginDeps {
  pool: Pool;
  logger: Logger;
  lifetimes: SessionLifetimes;
  throttle: ThrottleLimits;
}

export async function attemptLogin(deps: LoginDeps, req: LoginRequest): Promise<LoginOutcome> {
  const { pool, logger } = deps;
  const audit = async (account: Account | undefined, outcome: 'success' | 'failure', reason?: string, details: Record<string, unknown> = {}) => {
    await appendAuditEvent(pool, {
      // A tenant user's sign-ins go to the tenant's chain; operators' and unknown ones to the platform's.
      tenantId: account?.tenantId ?? null,
      actor: account ? { type: account.kind, id: account.id } : { type: 'operator' },
      action: 'auth.login',
      resource: account ? `${account.kind}:${account.id}` : 'login',
      outcome,
      reason,
      ip: req.ip,
      userAgent: req.userAgent?.slice(0, 512) || undefined,
      requestId: req.requestId?.slice(0, 200),
      // `email` is masked by the audit log (src/audit/details.ts) before it is stored.
      details: { email: req.email.slice(0, 254), ...details },
    }).catch((err: unknown) => logger.error({ requestId: req.requestId, err: { name: (err as Error).name, message: (err as Error).message } }, 'audit append failed'));
  };

  const verdict = await checkLoginThrottle(pool, { email: req.email, ip: req.ip }, deps.throttle);
  if (!verdict.allowed) {
    const reason = verdict.scope === 'account' ? 'throttled_account' : 'throttled_ip';
    await audit(undefined, 'failure', reason, { retryAfterSeconds: verdict.retryAfterSeconds });
    return { ok: false, reason, retryAfterSeconds: verdict.retryAfterSeconds };
  }

  const account = await findAccountByEmail(pool, req.email);
  const passwordOk = await verifyPassword(req.password, account?.passwordHash ?? (await dummyPasswordHash()));
  const failure: LoginFailure | undefined = !account ? 'unknown_account' : !passwordOk ? 'wrong_password' : account.disabled ? 'account_disabled' : undefined;
  if (failure) {
    await recordLoginFailure(pool, { email: req.email, ip: req.ip }, deps.throttle);
    await audit(account, 'failure', failure);
    logger.info({ requestId: req.requestId, reason: failure }, 'login failed');
    return { ok: false, reason: failure };
  }
  const acct = account!;
  await recordLoginSuccess(pool, { email: req.email });
  if (needsRehash(acct.passwordHash)) await updatePasswordHash(pool, acct, await hashPassword(req.password));
  const session = await createSession(
    pool,
    acct.kind === 'operator' ? { kind: 'operator', operatorId: acct.id } : { kind: 'tenant_user', userId: acct.id, tenantId: acct.tenantId! },
    { lifetimes: deps.lifetimes, ip: req.ip, userAgent: req.userAgent },
  );
  await audit(acct, 'success', undefined, { sessionId: session.id, role: acct.role });
  logger.info({ requestId: req.requestId, principal: `${acct.kind}:${acct.id}`, sessionId: session.id }, 'login succeeded');
  return { ok: true, account: acct, session };
}
