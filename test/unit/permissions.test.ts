import { can, canGrantRole, PERMISSION_NAMES, PERMISSIONS, roleHas, ROLES, TENANT_ROLES, type PermissionSpec, type Principal } from '../../src/auth/permissions';

const TENANT_A = '0b7e6a53-1d7c-4a57-9c1e-5a1f2b3c4d5e';
const TENANT_B = '7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';

const tenantUser = (role: (typeof TENANT_ROLES)[number], tenantId = TENANT_A): Principal => ({ kind: 'tenant_user', id: 'u1', role, tenantId, credential: 'session', sessionId: 's1' });
const operator: Principal = { kind: 'operator', id: 'o1', role: 'operator', tenantId: null, credential: 'session', sessionId: 's2' };

describe('permission matrix', () => {
  it('gives the operator every permission, on every tenant and platform-wide', () => {
    for (const p of PERMISSION_NAMES) {
      expect(can(operator, p, TENANT_A)).toBe(true);
      expect(can(operator, p, TENANT_B)).toBe(true);
      expect(can(operator, p)).toBe(true);
    }
  });

  it('never lets a tenant role act on another tenant or platform-wide, whatever the permission', () => {
    for (const role of TENANT_ROLES) {
      for (const p of PERMISSION_NAMES) {
        expect(can(tenantUser(role), p, TENANT_B)).toBe(false);
        expect(can(tenantUser(role), p)).toBe(false);
      }
    }
  });

  it('answers for the own tenant exactly what the matrix says', () => {
    for (const role of TENANT_ROLES) {
      for (const p of PERMISSION_NAMES) {
        const spec: PermissionSpec = PERMISSIONS[p];
        expect([role, p, can(tenantUser(role), p, TENANT_A)]).toEqual([role, p, !spec.platformOnly && spec.tenantRoles.includes(role)]);
      }
    }
  });

  it('keeps platform-only permissions away from every tenant role', () => {
    const platformOnly = PERMISSION_NAMES.filter((p) => (PERMISSIONS[p] as PermissionSpec).platformOnly);
    expect(platformOnly.sort()).toEqual(['keys.rotate', 'payloads.decode', 'tenants.manage']);
    for (const role of TENANT_ROLES) for (const p of platformOnly) expect(roleHas(role, p)).toBe(false);
  });

  it('orders the tenant roles: each holds every permission of the roles below it, except what keeps customer texts from developers', () => {
    const holds = (role: (typeof TENANT_ROLES)[number]) => new Set(PERMISSION_NAMES.filter((p) => roleHas(role, p)));
    expect([...holds('admin')].every((p) => holds('owner').has(p))).toBe(true);
    expect([...holds('developer')].every((p) => holds('admin').has(p))).toBe(true);
    expect([...holds('viewer')].filter((p) => !holds('developer').has(p))).toEqual(['conversations.read']);
    // The viewer only reads.
    expect([...holds('viewer')].every((p) => p.endsWith('.read'))).toBe(true);
  });

  it('lets a platform API key act as an operator and a tenant API key only within its tenant', () => {
    const platformKey: Principal = { kind: 'api_key', id: 'k1', role: 'operator', tenantId: null, credential: 'api_key', apiKeyId: 'k1' };
    const tenantKey: Principal = { kind: 'api_key', id: 'k2', role: 'developer', tenantId: TENANT_A, credential: 'api_key', apiKeyId: 'k2' };
    expect(can(platformKey, 'keys.rotate')).toBe(true);
    expect(can(tenantKey, 'settings.manage', TENANT_A)).toBe(true);
    expect(can(tenantKey, 'settings.manage', TENANT_B)).toBe(false);
    expect(can(tenantKey, 'conversations.read', TENANT_A)).toBe(false);
  });

  it('compares tenant ids case-insensitively (UUIDs from paths may be upper case)', () => {
    expect(can(tenantUser('viewer'), 'settings.read', TENANT_A.toUpperCase())).toBe(true);
  });

  it('never lets anyone grant a role above their own', () => {
    expect(canGrantRole('admin', 'owner')).toBe(false);
    expect(canGrantRole('admin', 'admin')).toBe(true);
    expect(canGrantRole('developer', 'viewer')).toBe(true);
    expect(canGrantRole('owner', 'operator')).toBe(false);
    for (const r of ROLES) expect(canGrantRole('operator', r)).toBe(true);
  });
});
