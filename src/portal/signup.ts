import { appendAuditEvent } from '../audit/log';
import { AccountError, createTenantUser, emailSchema, findAccountByEmail } from '../auth/accounts';
import { attemptLogin, type LoginDeps } from '../auth/login';
import { checkPasswordPolicy, PasswordPolicyError } from '../auth/passwords';
import { createSession, type CreatedSession } from '../auth/sessions';
import { createTenant, deleteTenant } from '../db/tenants';

/**
 * Self-service sign-up: a tenant, its owner, a browser session. Retrying is safe: the email is the
 * idempotency key. The same email and password again (a double click, a timeout the browser
 * retried, a second tab) signs in to the tenant the first attempt created instead of creating
 * another; two attempts racing each other end the same way (the loser removes its empty tenant).
 */

export interface SignupInput {
  businessName: string;
  email: string;
  password: string;
  ip: string;
  userAgent?: string;
  requestId?: string;
}

export type SignupField = 'businessName' | 'email' | 'password';

export type SignupOutcome =
  | { ok: true; tenantId: string; userId: string; session: CreatedSession; resumed: boolean }
  | { ok: false; status: 400 | 409 | 429; problems: Array<{ field: SignupField | null; message: string }>; retryAfterSeconds?: number };

export const MAX_BUSINESS_NAME = 200;

export function validateSignup(input: Pick<SignupInput, 'businessName' | 'email' | 'password'>): Array<{ field: SignupField; message: string }> {
  const problems: Array<{ field: SignupField; message: string }> = [];
  const name = input.businessName.trim();
  if (!name) problems.push({ field: 'businessName', message: 'Enter the name of your business.' });
  else if (name.length > MAX_BUSINESS_NAME) problems.push({ field: 'businessName', message: `The business name can have at most ${MAX_BUSINESS_NAME} characters.` });
  const email = emailSchema.safeParse(input.email);
  if (!email.success) problems.push({ field: 'email', message: 'Enter an email address like name@example.com.' });
  try {
    checkPasswordPolicy(input.password, email.success ? email.data : undefined);
  } catch (err) {
    if (!(err instanceof PasswordPolicyError)) throw err;
    problems.push({ field: 'password', message: `${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}.` });
  }
  return problems;
}

/** The account exists already: the right password signs in to it (the retried sign-up), anything else is refused. */
async function resume(deps: LoginDeps, input: SignupInput, email: string): Promise<SignupOutcome> {
  const outcome = await attemptLogin(deps, { email, password: input.password, ip: input.ip, userAgent: input.userAgent, requestId: input.requestId });
  if (outcome.ok && outcome.account.kind === 'tenant_user') {
    return { ok: true, tenantId: outcome.account.tenantId!, userId: outcome.account.id, session: outcome.session, resumed: true };
  }
  if (!outcome.ok && outcome.retryAfterSeconds !== undefined) {
    return { ok: false, status: 429, retryAfterSeconds: outcome.retryAfterSeconds, problems: [{ field: null, message: `Too many attempts for this email. Wait ${Math.ceil(outcome.retryAfterSeconds / 60)} minutes, then try again.` }] };
  }
  return {
    ok: false,
    status: 409,
    problems: [{ field: 'email', message: 'An account with this email already exists. Sign in with it, or sign up with another email.' }],
  };
}

export async function signUp(deps: LoginDeps, input: SignupInput): Promise<SignupOutcome> {
  const problems = validateSignup(input);
  if (problems.length > 0) return { ok: false, status: 400, problems };
  const email = emailSchema.parse(input.email);
  const businessName = input.businessName.trim();
  const { pool } = deps;

  if (await findAccountByEmail(pool, email)) return resume(deps, input, email);

  const tenant = await createTenant(pool, businessName);
  let userId: string;
  try {
    userId = (
      await createTenantUser(pool, { tenantId: tenant.id, email, role: 'owner', password: input.password }, async (tx, user) => {
        // The tenant's chain starts with its own creation, by the person who signed up.
        const common = { tenantId: tenant.id, actor: { type: 'tenant_user' as const, id: user.id }, outcome: 'success' as const, ip: input.ip, userAgent: input.userAgent?.slice(0, 512), requestId: input.requestId?.slice(0, 200) };
        await appendAuditEvent(tx, { ...common, action: 'tenant.created', resource: `tenant:${tenant.id}`, details: { via: 'portal_signup' } });
        await appendAuditEvent(tx, { ...common, action: 'user.created', resource: `tenant_user:${user.id}`, details: { role: 'owner', via: 'portal_signup' } });
      })
    ).id;
  } catch (err) {
    // Nothing may be left behind by a sign-up that did not finish: the tenant goes with it.
    await deleteTenant(pool, tenant.id);
    if (err instanceof AccountError) return resume(deps, input, email);
    throw err;
  }

  const session = await createSession(pool, { kind: 'tenant_user', userId, tenantId: tenant.id }, { lifetimes: deps.lifetimes, ip: input.ip, userAgent: input.userAgent });
  await appendAuditEvent(pool, {
    tenantId: tenant.id,
    actor: { type: 'tenant_user', id: userId },
    action: 'auth.login',
    resource: `tenant_user:${userId}`,
    outcome: 'success',
    ip: input.ip,
    userAgent: input.userAgent?.slice(0, 512),
    requestId: input.requestId?.slice(0, 200),
    details: { sessionId: session.id, role: 'owner', via: 'portal_signup' },
  });
  return { ok: true, tenantId: tenant.id, userId, session, resumed: false };
}

