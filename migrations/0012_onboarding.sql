-- Self-service onboarding (issue 7, docs/onboarding.md): the OAuth `state` store the portal writes
-- and the onboarding saga's short-lived token grants. Both hold a tenant's rows only, under the
-- same row-level security as every tenant table (0008): ENABLED, FORCED, one tenant_isolation
-- policy for reads and writes.

-- One row per "connect" click. The state itself never reaches the database: only its SHA-256,
-- which the callback recomputes from the `state` Meta hands back. Single use (`used_at`), bound
-- to the portal session that started it and to the tenant (the row's scope), valid 10 minutes.
CREATE TABLE oauth_states (
  id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id                 uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  state_hash                bytea NOT NULL UNIQUE CHECK (length(state_hash) = 32),
  -- A session that ends (and is purged) takes its unfinished attempts with it.
  session_id                uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  flow                      text NOT NULL CHECK (flow IN ('facebook', 'instagram')),
  -- PKCE code verifier (Facebook Login only), sealed by the vault; NULL without PKCE.
  code_verifier_ciphertext  bytea,
  code_verifier_key_version integer,
  created_at                timestamptz NOT NULL DEFAULT now(),
  expires_at                timestamptz NOT NULL,
  used_at                   timestamptz,
  CHECK ((code_verifier_ciphertext IS NULL) = (code_verifier_key_version IS NULL))
);
-- Expired rows of a tenant are swept whenever that tenant starts a new attempt.
CREATE INDEX oauth_states_tenant_expiry_idx ON oauth_states (tenant_id, expires_at);

-- The user token an OAuth code was exchanged for (Facebook: the long-lived user token; Instagram:
-- the 60-day token), sealed by the vault, so the token never enters workflow history: the saga
-- carries only the row id. The id is chosen by the workflow before the exchange runs, so the
-- compensation registered before the step can name the row even if the step crashed half-way.
-- Deleted once the channels are stored (or by the compensation), and swept when stale.
CREATE TABLE onboarding_grants (
  id                    uuid PRIMARY KEY,
  tenant_id             uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  flow                  text NOT NULL CHECK (flow IN ('facebook', 'instagram')),
  -- 'short' right after the code exchange, 'long' once upgraded to the long-lived token.
  token_kind            text NOT NULL CHECK (token_kind IN ('short', 'long')),
  token_ciphertext      bytea NOT NULL,
  token_key_version     integer NOT NULL,
  token_expires_at      timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  -- Past this the row is swept even if no saga deleted it (a saga never waits this long with it).
  discard_after         timestamptz NOT NULL
);
CREATE INDEX onboarding_grants_tenant_discard_idx ON onboarding_grants (tenant_id, discard_after);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['oauth_states', 'onboarding_grants'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT app_tenant_id())) WITH CHECK (tenant_id = (SELECT app_tenant_id()))', t);
  END LOOP;
END $$;
