-- Tenant isolation in the database (issue 6): every table that holds a tenant's data has row-level
-- security ENABLED and FORCED, with one policy whose USING and WITH CHECK compare the row's tenant
-- with the transaction's scope. The scope is set only by src/db/tenant-scope.ts (`withTenant`,
-- `withPlatform`) with set_config(..., true), so it ends with the transaction.
--
--   app.tenant_id = '<uuid>'    a tenant's rows only
--   app.tenant_id = 'platform'  rows without a tenant only (operator sessions, platform API keys,
--                               the platform audit chain); no tenant's rows
--   unset or ''                 (what the setting reads back as after a transaction) an error:
--                               a forgotten scope fails loudly instead of returning nothing
--
-- The policy calls app_tenant_id() through a scalar subquery so it is evaluated once per
-- statement (an InitPlan), not once per row.
--
-- Lookups that must run before a tenant is known (webhook routing by Meta account, login by
-- email, a session or API key by its hash, a conversation's tenant for /admin routes) and the
-- id lists cross-tenant jobs start from are SECURITY DEFINER functions below. They return ids and
-- credential-check fields only, never message data, and are the allow-list that
-- test/integration/rls-catalog.test.ts holds the schema to. They rely on the owner (the migrating
-- role) bypassing row-level security: a superuser or a role with BYPASSRLS (checked at the end).
-- Lookups return SETOF: "not found" is no row, never a row of NULLs.

CREATE FUNCTION app_tenant_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  v text := current_setting('app.tenant_id', true);
BEGIN
  IF v IS NULL OR v = '' THEN
    RAISE EXCEPTION 'no tenant scope: tenant data is reachable only inside withTenant() or withPlatform() (src/db/tenant-scope.ts)'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF v = 'platform' THEN
    RETURN NULL;
  END IF;
  RETURN v::uuid;
END $$;

-- The audit chain of the scope: the tenant id as text, or 'platform'.
CREATE FUNCTION app_audit_chain() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(app_tenant_id()::text, 'platform')
$$;

DO $$
DECLARE
  t text;
BEGIN
  -- Rows that always belong to one tenant.
  FOREACH t IN ARRAY ARRAY[
    'channels', 'conversations', 'messages', 'conversation_events', 'products', 'tenant_data_keys',
    'secret_decrypts', 'tenant_settings', 'channel_send_budgets', 'tenant_users'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT app_tenant_id())) WITH CHECK (tenant_id = (SELECT app_tenant_id()))', t);
  END LOOP;
  -- Rows of a tenant or of the platform (tenant_id NULL).
  FOREACH t IN ARRAY ARRAY['sessions', 'api_keys', 'audit_events'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id IS NOT DISTINCT FROM (SELECT app_tenant_id())) WITH CHECK (tenant_id IS NOT DISTINCT FROM (SELECT app_tenant_id()))', t);
  END LOOP;
  -- Audit chain metadata, keyed by chain ('platform' or the tenant id).
  FOREACH t IN ARRAY ARRAY['audit_checkpoints', 'audit_anchors'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (chain_id = (SELECT app_audit_chain())) WITH CHECK (chain_id = (SELECT app_audit_chain()))', t);
  END LOOP;
END $$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
  USING (id = (SELECT app_tenant_id())) WITH CHECK (id = (SELECT app_tenant_id()));

-- ---------------------------------------------------------------------------------------------
-- The allow-listed SECURITY DEFINER functions.

-- Every tenant's id: where cross-tenant jobs (key rotation, retention, the operator's tenant list)
-- start, to then work per tenant inside withTenant().
CREATE FUNCTION platform_tenant_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT id FROM tenants
$$;

-- Webhook routing: which tenant's channel a Meta account is (the gateway knows only entry[].id).
CREATE FUNCTION route_channel(p_platform text, p_account_id text,
  OUT channel_id uuid, OUT tenant_id uuid, OUT platform text, OUT status text)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT c.id, c.tenant_id, c.platform, c.status FROM channels c
   WHERE c.platform = p_platform AND c.account_id = p_account_id
$$;

-- Login: the tenant user an email belongs to (emails are unique across tenants).
CREATE FUNCTION auth_find_tenant_user(p_email text,
  OUT id uuid, OUT tenant_id uuid, OUT email text, OUT role text, OUT password_hash text, OUT disabled boolean)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.tenant_id, u.email, u.role, u.password_hash, u.disabled_at IS NOT NULL
    FROM tenant_users u WHERE lower(u.email) = lower(p_email)
$$;

-- A live session by the SHA-256 of its cookie (knowing the hash means holding the cookie), with the
-- account's current role; idle, expired, revoked sessions and disabled accounts find nothing.
CREATE FUNCTION auth_resolve_session(p_token_hash bytea, p_idle_ms double precision, p_touch_ms double precision,
  OUT id uuid, OUT principal text, OUT operator_id uuid, OUT user_id uuid, OUT tenant_id uuid, OUT role text, OUT stale boolean)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT s.id, s.principal, s.operator_id, s.user_id, s.tenant_id, u.role,
         s.last_seen_at < now() - make_interval(secs => p_touch_ms / 1000)
    FROM sessions s
    LEFT JOIN operators o ON o.id = s.operator_id
    LEFT JOIN tenant_users u ON u.id = s.user_id
   WHERE s.token_hash = p_token_hash
     AND s.revoked_at IS NULL
     AND s.expires_at > now()
     AND s.last_seen_at > now() - make_interval(secs => p_idle_ms / 1000)
     AND (o.id IS NOT NULL AND o.disabled_at IS NULL OR u.id IS NOT NULL AND u.disabled_at IS NULL AND u.tenant_id = s.tenant_id)
$$;

-- An unrevoked API key by its public prefix; the caller compares the secret's hash itself.
CREATE FUNCTION auth_find_api_key(p_prefix text, p_touch_ms double precision,
  OUT id uuid, OUT tenant_id uuid, OUT role text, OUT secret_hash bytea, OUT stale boolean)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT k.id, k.tenant_id, k.role, k.secret_hash,
         k.last_used_at IS NULL OR k.last_used_at < now() - make_interval(secs => p_touch_ms / 1000)
    FROM api_keys k WHERE k.prefix = p_prefix AND k.revoked_at IS NULL
$$;

-- The tenant of a conversation, for routes addressed by conversation id (/admin/conversations/:id).
CREATE FUNCTION conversation_tenant(p_conversation_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT tenant_id FROM conversations WHERE id = p_conversation_id
$$;

-- Every audit chain that has events, checkpoints or anchors (a deleted tenant's chain included).
CREATE FUNCTION audit_chain_ids() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT chain_id FROM audit_events
  UNION SELECT chain_id FROM audit_checkpoints
  UNION SELECT chain_id FROM audit_anchors
$$;

-- Data key metadata across tenants (never the wrapped key): what key rotation and keys:status
-- plan with before they act on each tenant inside withTenant().
CREATE FUNCTION data_key_inventory(
  OUT tenant_id uuid, OUT version integer, OUT master_key_version integer, OUT created_at timestamptz,
  OUT superseded_at timestamptz, OUT encryptions bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT k.tenant_id, k.version, k.master_key_version, k.created_at, k.superseded_at, k.encryptions FROM tenant_data_keys k
$$;

REVOKE EXECUTE ON FUNCTION platform_tenant_ids(), route_channel(text, text), auth_find_tenant_user(text),
  auth_resolve_session(bytea, double precision, double precision), auth_find_api_key(text, double precision),
  conversation_tenant(uuid), audit_chain_ids(), data_key_inventory() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_tenant_ids(), route_channel(text, text), auth_find_tenant_user(text),
  auth_resolve_session(bytea, double precision, double precision), auth_find_api_key(text, double precision),
  conversation_tenant(uuid), audit_chain_ids(), data_key_inventory() TO switchboard_app;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'the migrating role % must be a superuser or have BYPASSRLS: the SECURITY DEFINER lookups of 0008 run as it', current_user;
  END IF;
END $$;
