/**
 * Who may do what: the one permission matrix of Switchboard. Routes ask `can()` (through
 * `requirePermission` in src/gateway/principal.ts); docs/access-control.md is generated from
 * `PERMISSIONS` and `ROLES` below (`npm run docs:access-control`) and a unit test fails when the
 * committed document differs, so the two cannot drift.
 *
 * Two kinds of people: platform operators (run Switchboard itself, act on any tenant) and tenant
 * users, who belong to exactly one tenant and never act on another. API keys carry one of these
 * roles: a tenant key a tenant role, a platform key the operator role.
 */

export const TENANT_ROLES = ['owner', 'admin', 'developer', 'viewer'] as const;
export type TenantRole = (typeof TENANT_ROLES)[number];
export type Role = TenantRole | 'operator';
export const ROLES: readonly Role[] = [...TENANT_ROLES, 'operator'];

export const ROLE_DESCRIPTIONS: Readonly<Record<Role, string>> = {
  owner: "The tenant's accountable person: everything a tenant can do, including its users and API keys.",
  admin: 'Runs the tenant day to day: conversations, channels, settings, users and API keys.',
  developer: 'Integrates and configures: channels, settings, catalog, API keys up to developer; sees no customer message texts.',
  viewer: 'Read-only: conversations, settings, catalog and analytics.',
  operator: 'Platform operator (separate account, not a tenant user): every permission on every tenant, and the platform-only ones.',
};

export interface PermissionSpec {
  /** What it allows, for the generated document. */
  description: string;
  /** Tenant roles that hold it (the operator holds every permission). */
  tenantRoles: readonly TenantRole[];
  /** Platform-wide: no tenant role can hold it, whatever the list above says. */
  platformOnly?: boolean;
  /** Why the row is as it is, for the generated document. */
  note?: string;
}

export const PERMISSIONS = {
  'conversations.read': {
    description: 'Read conversations and their messages (decrypted texts), their state and handoff mode',
    tenantRoles: ['owner', 'admin', 'viewer'],
    note: 'Customer message texts are personal data: developers configure the assistant without reading them.',
  },
  'conversations.reply': {
    description: 'Send as a human agent, hand a conversation to a human or back to the bot',
    tenantRoles: ['owner', 'admin'],
  },
  'channels.manage': {
    description: 'Connect, reconnect and disconnect Messenger / Instagram channels',
    tenantRoles: ['owner', 'admin', 'developer'],
  },
  'settings.read': {
    description: "Read the assistant's settings and the product catalog",
    tenantRoles: ['owner', 'admin', 'developer', 'viewer'],
  },
  'settings.manage': {
    description: "Change the assistant's settings (engine, model, model API key, persona) and import the catalog",
    tenantRoles: ['owner', 'admin', 'developer'],
  },
  'analytics.read': {
    description: 'See analytics: message throughput, reply latency, channel health',
    tenantRoles: ['owner', 'admin', 'developer', 'viewer'],
  },
  'audit.read': {
    description: "Read the tenant's audit log",
    tenantRoles: ['owner', 'admin'],
  },
  'users.manage': {
    description: "Create, disable and re-role the tenant's users; revoke their sessions",
    tenantRoles: ['owner', 'admin'],
    note: 'Nobody grants a role above their own (`canGrantRole`): an admin cannot create an owner.',
  },
  'api_keys.manage': {
    description: "Create and revoke the tenant's API keys",
    tenantRoles: ['owner', 'admin', 'developer'],
    note: 'A key never gets a role above its creator\'s (`canGrantRole`).',
  },
  'payloads.decode': {
    description: 'Decode (and encode) Temporal payloads through the codec endpoint, e.g. in the Temporal UI',
    tenantRoles: [],
    platformOnly: true,
    note: "Payloads are encrypted with platform keys, not per tenant, and the codec cannot tell whose workflow a payload came from: a tenant role could read other tenants' data.",
  },
  'keys.rotate': {
    description: 'Rotate and retire master keys and tenant data keys',
    tenantRoles: [],
    platformOnly: true,
  },
  'tenants.manage': {
    description: 'Create and delete tenants (crypto-shredding)',
    tenantRoles: [],
    platformOnly: true,
  },
} as const satisfies Record<string, PermissionSpec>;

export type Permission = keyof typeof PERMISSIONS;
export const PERMISSION_NAMES = Object.keys(PERMISSIONS) as Permission[];

export type Credential = 'session' | 'api_key' | 'static_token';

/** Who is acting, as resolved from a session cookie, an API key or a (deprecated) static token. */
export type Principal =
  | { kind: 'operator'; id: string; role: 'operator'; tenantId: null; credential: Credential; sessionId?: string; apiKeyId?: string }
  | { kind: 'tenant_user'; id: string; role: TenantRole; tenantId: string; credential: 'session'; sessionId: string }
  | { kind: 'api_key'; id: string; role: Role; tenantId: string | null; credential: 'api_key'; apiKeyId: string };

/** Does this role hold this permission in its own scope (its tenant, or the platform for operators)? */
export function roleHas(role: Role, permission: Permission): boolean {
  if (role === 'operator') return true;
  const spec: PermissionSpec = PERMISSIONS[permission];
  return !spec.platformOnly && spec.tenantRoles.includes(role);
}

/**
 * May `principal` use `permission` on `tenantId` (undefined: a platform-wide action)? A tenant
 * principal never acts on another tenant, nor platform-wide; an operator may do anything.
 */
export function can(principal: Pick<Principal, 'role' | 'tenantId'>, permission: Permission, tenantId?: string): boolean {
  if (principal.role === 'operator') return true;
  if (principal.tenantId === null) return false;
  if (tenantId === undefined || tenantId.toLowerCase() !== principal.tenantId.toLowerCase()) return false;
  return roleHas(principal.role, permission);
}

const RANK: Readonly<Record<Role, number>> = { viewer: 1, developer: 2, admin: 3, owner: 4, operator: 5 };

/** A role can be granted (to a user or an API key) only by someone whose own role is at least as high. */
export function canGrantRole(granter: Role, granted: Role): boolean {
  return RANK[granter] >= RANK[granted];
}

/** The audit trail's actor for a principal (ids only, never a credential). */
export function auditActorOf(principal: Principal): { type: 'operator' | 'tenant_user' | 'api_key'; id: string } {
  return { type: principal.kind, id: principal.id };
}

/** The permission matrix as a Markdown document (docs/access-control.md). */
export function renderAccessControlDoc(): string {
  const mark = (role: Role, p: Permission) => (roleHas(role, p) ? '✓' : '—');
  const lines = [
    '# Access control',
    '',
    '<!-- GENERATED from src/auth/permissions.ts by `npm run docs:access-control`; test/unit/access-control-doc.test.ts fails when this file differs. Do not edit by hand. -->',
    '',
    'Switchboard has two kinds of people: **platform operators**, who run the platform and may act on',
    'every tenant, and **tenant users**, who belong to exactly one tenant and never see another',
    "(another tenant's resource answers 404, as if it did not exist). API keys carry a role too: a",
    'tenant key one of the tenant roles, a platform key the operator role.',
    '',
    '## Roles',
    '',
    '| role | who |',
    '|---|---|',
    ...ROLES.map((r) => `| ${r} | ${ROLE_DESCRIPTIONS[r]} |`),
    '',
    '## Permissions',
    '',
    `| permission | allows | ${ROLES.join(' | ')} |`,
    `|---|---|${ROLES.map(() => ':-:').join('|')}|`,
    ...PERMISSION_NAMES.map((p) => `| \`${p}\` | ${PERMISSIONS[p].description}${(PERMISSIONS[p] as PermissionSpec).platformOnly ? ' (platform only)' : ''} | ${ROLES.map((r) => mark(r, p)).join(' | ')} |`),
    '',
    '## Notes',
    '',
    ...PERMISSION_NAMES.flatMap((p) => {
      const note = (PERMISSIONS[p] as PermissionSpec).note;
      return note ? [`- \`${p}\`: ${note}`] : [];
    }),
    '',
    'Responses: no credentials or invalid ones → 401; a role without the permission → 403 naming the',
    "permission; another tenant's resource → 404. Every login (success or failure) and every denial",
    'is an audit event (`auth.login`, `auth.denied`).',
    '',
  ];
  return lines.join('\n');
}
