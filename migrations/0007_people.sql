-- People and credentials (issue 6): tenant users with roles, platform operators, server-side
-- browser sessions, API keys for machines, and login throttling shared by every gateway.
-- Secrets are never stored: passwords as scrypt hashes (src/auth/passwords.ts), session tokens
-- and API keys as SHA-256 of a 256-bit random secret (src/auth/sessions.ts, src/auth/api-keys.ts).
-- The app role gets data privileges on these tables through 0003's default privileges.

CREATE TABLE operators (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
  -- `scrypt$N$r$p$salt$hash` (self-describing: parameters can rise without a migration).
  password_hash text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX operators_email_uq ON operators (lower(email));

CREATE TABLE tenant_users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
  role          text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
  password_hash text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);
-- One account per email across all tenants: the login form asks for an email only.
CREATE UNIQUE INDEX tenant_users_email_uq ON tenant_users (lower(email));
CREATE INDEX tenant_users_tenant_idx ON tenant_users (tenant_id);

CREATE TABLE sessions (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- SHA-256 of the cookie's secret: a copy of this table lets nobody sign in.
  token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  principal    text NOT NULL CHECK (principal IN ('operator', 'tenant_user')),
  operator_id  uuid REFERENCES operators(id) ON DELETE CASCADE,
  user_id      uuid REFERENCES tenant_users(id) ON DELETE CASCADE,
  tenant_id    uuid REFERENCES tenants(id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  -- Absolute end; the idle limit is checked against last_seen_at.
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  revoked_reason text,
  ip           text,
  user_agent   text,
  CHECK (
    (principal = 'operator' AND operator_id IS NOT NULL AND user_id IS NULL AND tenant_id IS NULL)
    OR (principal = 'tenant_user' AND user_id IS NOT NULL AND tenant_id IS NOT NULL AND operator_id IS NULL)
  )
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_operator_idx ON sessions (operator_id) WHERE revoked_at IS NULL;

CREATE TABLE api_keys (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- NULL = a platform key, which acts as an operator; a tenant key has one of the tenant roles.
  tenant_id    uuid REFERENCES tenants(id) ON DELETE CASCADE,
  role         text NOT NULL CHECK (role IN ('operator', 'owner', 'admin', 'developer', 'viewer')),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  -- The public part of `sb_<prefix>_<secret>`: finds the row and names the key in lists and logs.
  prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-z]{12}$'),
  secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
  -- Who created it: `operator:<uuid>`, `tenant_user:<uuid>`, `api_key:<uuid>` or `cli:<os user>`.
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz,
  CHECK ((tenant_id IS NULL) = (role = 'operator'))
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

-- Failed logins per account and per client IP in fixed windows; shared by every gateway process.
-- The key is SHA-256 of `account:<lower(email)>` or `ip:<address>`: no email or IP in clear.
CREATE TABLE login_throttle (
  scope        text NOT NULL CHECK (scope IN ('account', 'ip')),
  key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
  window_start timestamptz NOT NULL,
  failures     integer NOT NULL CHECK (failures >= 0),
  PRIMARY KEY (scope, key_hash)
);
