import { generateKeyPairSync } from 'node:crypto';
import { ConfigError, parseConfig } from '../../src/config';

const KEY_32 = Buffer.alloc(32, 0x5a).toString('base64');
const MASTER_KEYS = `1:${KEY_32}`;
const AUDIT_KEY = Buffer.alloc(32, 0x33).toString('base64');

/** The variables without defaults; everything else may be left out. */
function completeEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    DATABASE_URL: 'postgres://switchboard:pw@127.0.0.1:5432/switchboard',
    META_APP_SECRET: 'app-secret-0123',
    META_VERIFY_TOKEN: 'verify-token-0123',
    MASTER_KEYS,
    ...overrides,
  };
}

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    parseConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('parseConfig accepted an invalid environment');
}

describe('parseConfig', () => {
  it('parses a complete environment and fills in the defaults', () => {
    const config = parseConfig(completeEnv());
    expect(config).toEqual({
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      LOG_PII: 'off',
      DATABASE_URL: 'postgres://switchboard:pw@127.0.0.1:5432/switchboard',
      DATABASE_POOL_SIZE: 10,
      TEMPORAL_ADDRESS: 'localhost:7233',
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: 'switchboard',
      TEMPORAL_RPC_TIMEOUT_MS: 3000,
      TEMPORAL_UI_URL: 'http://localhost:8233',
      META_APP_SECRET: 'app-secret-0123',
      META_VERIFY_TOKEN: 'verify-token-0123',
      GRAPH_API_BASE: 'https://graph.facebook.com',
      INSTAGRAM_API_BASE: 'https://graph.instagram.com',
      GRAPH_API_VERSION: 'v23.0',
      GRAPH_API_TIMEOUT_MS: 10_000,
      MASTER_KEYS,
      DATA_KEY_CACHE_TTL_MS: 300_000,
      GATEWAY_HOST: '0.0.0.0',
      GATEWAY_PORT: 3000,
      GRAPH_SANDBOX_PORT: 3900,
      CONVERSATION_IDLE_TIMEOUT_MS: 30 * 60_000,
      OAUTH_REDIRECT_URI: 'http://localhost:3000/portal/oauth/callback',
      FACEBOOK_DIALOG_BASE: 'https://www.facebook.com',
      INSTAGRAM_DIALOG_BASE: 'https://www.instagram.com',
      INSTAGRAM_OAUTH_BASE: 'https://api.instagram.com',
      ONBOARDING_OAUTH_TIMEOUT_MS: 7 * 86_400_000,
      TOKEN_ROTATION_CRON: '23 2 * * *',
      TOKEN_ROTATION_CONCURRENCY: 20,
      TOKEN_ROTATION_GRAPH_CALLS_PER_MINUTE: 3000,
      TOKEN_REFRESH_WINDOW_DAYS: 10,
      TOKEN_EXPIRY_WARNING_DAYS: 7,
      NOTIFY_EMAIL_FROM: 'Switchboard <notifications@switchboard.local>',
      PUBLIC_BASE_URL: 'http://localhost:3000',
      DATA_KEY_ROTATION_CRON: '41 3 * * *',
      DATA_KEY_MAX_AGE_DAYS: 90,
      DATA_KEY_MAX_ENCRYPTIONS: 2 ** 30,
      AUDIT_CHECKPOINT_EVERY_EVENTS: 1000,
      AUDIT_CHECKPOINT_EVERY_MS: 5 * 60_000,
      SESSION_IDLE_TIMEOUT_MS: 12 * 3_600_000,
      SESSION_MAX_AGE_MS: 7 * 86_400_000,
      LOGIN_MAX_FAILURES_PER_ACCOUNT: 5,
      LOGIN_MAX_FAILURES_PER_IP: 30,
      LOGIN_THROTTLE_WINDOW_MS: 15 * 60_000,
    });
    expect(config.INSTAGRAM_APP_SECRET).toBeUndefined();
    expect(config.AUDIT_SIGNING_KEY).toBeUndefined();
    expect(config.AUDIT_CHECKPOINT_DIR).toBeUndefined();
  });

  it('coerces numeric variables and accepts overrides', () => {
    const config = parseConfig(
      completeEnv({
        NODE_ENV: 'production',
        GATEWAY_PORT: '8080',
        DATABASE_POOL_SIZE: '25',
        CONVERSATION_IDLE_TIMEOUT_MS: '5000',
        GRAPH_API_VERSION: 'v24.0',
        INSTAGRAM_APP_SECRET: 'ig-secret-0123',
        DATABASE_URL: 'postgresql://u@db.internal/sb',
        // Required in production (the audit trail's checkpoints).
        AUDIT_SIGNING_KEY: AUDIT_KEY,
        AUDIT_CHECKPOINT_DIR: '/var/lib/switchboard/audit-checkpoints',
        AUDIT_CHECKPOINT_EVERY_MS: '60000',
      }),
    );
    expect(config).toMatchObject({
      NODE_ENV: 'production',
      AUDIT_CHECKPOINT_EVERY_MS: 60_000,
      GATEWAY_PORT: 8080,
      DATABASE_POOL_SIZE: 25,
      CONVERSATION_IDLE_TIMEOUT_MS: 5000,
      GRAPH_API_VERSION: 'v24.0',
      INSTAGRAM_APP_SECRET: 'ig-secret-0123',
      DATABASE_URL: 'postgresql://u@db.internal/sb',
    });
  });

  it('ignores unrelated variables of the process environment', () => {
    const config = parseConfig(completeEnv({ PATH: '/usr/bin', HOME: '/root', npm_config_cache: '/tmp/x' }));
    expect(config).not.toHaveProperty('PATH');
  });

  it('reports a missing and several bad variables together in one ConfigError', () => {
    const err = configError(
      completeEnv({
        META_APP_SECRET: undefined,
        MASTER_KEYS: `1:${Buffer.alloc(16, 1).toString('base64')}`,
        GATEWAY_PORT: 'abc',
      }),
    );
    expect(err.name).toBe('ConfigError');
    expect(err.problems).toHaveLength(3);
    for (const name of ['META_APP_SECRET', 'MASTER_KEYS', 'GATEWAY_PORT']) {
      expect(err.message).toContain(name);
      expect(err.problems.some((p) => p.startsWith(`${name}:`))).toBe(true);
    }
    expect(err.problems).toContain('META_APP_SECRET: is required');
    expect(err.problems.find((p) => p.startsWith('MASTER_KEYS:'))).toContain('32 bytes');
    // Variables that were fine are not named.
    for (const name of ['DATABASE_URL', 'META_VERIFY_TOKEN']) expect(err.message).not.toContain(name);
  });

  it('treats empty strings as missing (required → "is required", defaulted → default)', () => {
    const err = configError(completeEnv({ META_APP_SECRET: '', DATABASE_URL: '', GATEWAY_PORT: '' }));
    expect(err.problems.sort()).toEqual(['DATABASE_URL: is required', 'META_APP_SECRET: is required']);

    const config = parseConfig(completeEnv({ GATEWAY_PORT: '', LOG_LEVEL: '', INSTAGRAM_APP_SECRET: '' }));
    expect(config.GATEWAY_PORT).toBe(3000);
    expect(config.LOG_LEVEL).toBe('info');
    expect(config.INSTAGRAM_APP_SECRET).toBeUndefined();
  });

  it('names every required variable of an empty environment', () => {
    const err = configError({});
    expect(err.problems.sort()).toEqual(
      ['DATABASE_URL', 'MASTER_KEYS', 'META_APP_SECRET', 'META_VERIFY_TOKEN'].map((n) => `${n}: is required`),
    );
  });

  it('requires the audit signing key and checkpoint directory in production only, reported with other problems', () => {
    const err = configError(completeEnv({ NODE_ENV: 'production', GATEWAY_PORT: 'abc' }));
    expect(err.problems.sort()).toEqual([
      'AUDIT_CHECKPOINT_DIR: is required in production',
      'AUDIT_SIGNING_KEY: is required in production',
      expect.stringMatching(/^GATEWAY_PORT: /),
    ]);
    const config = parseConfig(
      completeEnv({ NODE_ENV: 'production', AUDIT_SIGNING_KEY: AUDIT_KEY, AUDIT_CHECKPOINT_DIR: '/var/lib/switchboard/audit', AUDIT_CHECKPOINT_EVERY_EVENTS: '500' }),
    );
    expect(config).toMatchObject({ AUDIT_SIGNING_KEY: AUDIT_KEY, AUDIT_CHECKPOINT_DIR: '/var/lib/switchboard/audit', AUDIT_CHECKPOINT_EVERY_EVENTS: 500 });
    // Not in development or tests: they then run without checkpoints.
    expect(() => parseConfig(completeEnv({ NODE_ENV: 'test' }))).not.toThrow();
  });

  it('accepts the audit keys in their documented spellings', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    for (const spec of [AUDIT_KEY, privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'), privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()]) {
      expect(parseConfig(completeEnv({ AUDIT_SIGNING_KEY: spec })).AUDIT_SIGNING_KEY).toBe(spec);
    }
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
    const spki = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(parseConfig(completeEnv({ AUDIT_PREVIOUS_PUBLIC_KEYS: `${raw}, ${spki}` })).AUDIT_PREVIOUS_PUBLIC_KEYS).toBe(`${raw}, ${spki}`);
  });

  it.each([
    ['AUDIT_SIGNING_KEY', 'not a key!'],
    ['AUDIT_SIGNING_KEY', Buffer.alloc(16, 1).toString('base64')],
    ['AUDIT_PREVIOUS_PUBLIC_KEYS', Buffer.alloc(31, 1).toString('base64')],
    ['AUDIT_CHECKPOINT_EVERY_EVENTS', '0'],
    ['AUDIT_CHECKPOINT_EVERY_MS', '-1'],
    ['DATABASE_URL', 'mysql://u@h/db'],
    ['DATABASE_URL', 'not a url'],
    ['GATEWAY_PORT', '70000'],
    ['GATEWAY_PORT', '-1'],
    ['GATEWAY_PORT', '80.5'],
    ['DATABASE_POOL_SIZE', '0'],
    ['CONVERSATION_IDLE_TIMEOUT_MS', '0'],
    ['TEMPORAL_RPC_TIMEOUT_MS', '-5'],
    ['GRAPH_API_VERSION', '23.0'],
    ['NODE_ENV', 'staging'],
    ['LOG_LEVEL', 'verbose'],
    ['META_APP_SECRET', 'short'],
    ['INSTAGRAM_APP_SECRET', 'short'],
    ['MASTER_KEYS', `1:${Buffer.alloc(33, 1).toString('base64')}`],
    ['MASTER_KEYS', `1:${KEY_32},1:${KEY_32}`],
    ['MASTER_KEYS', 'not-a-key-list'],
    ['GRAPH_API_BASE', 'graph.facebook.com'],
  ])('rejects %s=%j and names it', (name, value) => {
    const err = configError(completeEnv({ [name]: value }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(new RegExp(`^${name}: `));
    expect(err.problems[0]).not.toContain('is required');
  });
});
