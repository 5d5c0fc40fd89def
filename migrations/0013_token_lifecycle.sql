-- Token lifecycle (issue 8, docs/token-lifecycle.md): scheduled refresh and validation of every
-- channel's token, replies parked while a channel waits for reauthorization, reconnect attempts,
-- tenant notifications once per episode, and the Graph call budget the rotation sweep shares.

-- When the stored token was issued (code exchange, reconnect or refresh): Instagram refuses to
-- refresh a token younger than 24 hours. Existing rows take their last status change, the closest
-- thing to "when the token was stored" they have.
ALTER TABLE channels
  ADD COLUMN token_issued_at      timestamptz,
  ADD COLUMN token_checked_at     timestamptz,
  -- Consecutive runs whose check failed transiently (reset by any definite outcome): the sweep
  -- retries them on its next run, and the count says how long a channel has gone unchecked.
  ADD COLUMN token_check_failures integer NOT NULL DEFAULT 0 CHECK (token_check_failures >= 0);
UPDATE channels SET token_issued_at = status_changed_at;
ALTER TABLE channels ALTER COLUMN token_issued_at SET NOT NULL, ALTER COLUMN token_issued_at SET DEFAULT now();
-- The sweep walks active channels in id order (keyset), per Graph host.
CREATE INDEX channels_token_sweep_idx ON channels (id) WHERE status = 'active';

-- A reply decided while its channel needs reauthorization waits as `parked` (the reason in
-- `error`), in its conversation workflow and here, until the channel is reconnected.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('received', 'pending', 'parked', 'sent', 'delivered', 'read', 'failed', 'outside_window'));
CREATE INDEX messages_parked_idx ON messages (channel_id, created_at) WHERE status = 'parked';

-- A reconnect attempt names the channel it re-authorizes; NULL is an onboarding attempt.
ALTER TABLE oauth_states ADD COLUMN channel_id uuid REFERENCES channels(id) ON DELETE CASCADE;

-- Where a tenant hears about its channels: e-mail (default: the tenant's owners) and an optional
-- signed webhook. The webhook's signing secret is sealed by the vault like every secret column.
ALTER TABLE tenant_settings
  ADD COLUMN notify_email                    text CHECK (notify_email IS NULL OR length(notify_email) BETWEEN 3 AND 320),
  ADD COLUMN notify_webhook_url              text CHECK (notify_webhook_url IS NULL OR notify_webhook_url ~ '^https?://'),
  ADD COLUMN notify_webhook_secret_ciphertext bytea,
  ADD COLUMN notify_webhook_secret_version   integer,
  ADD CONSTRAINT tenant_settings_notify_secret_ck
    CHECK ((notify_webhook_secret_ciphertext IS NULL) = (notify_webhook_secret_version IS NULL));

-- One row per episode: from the moment a channel needs reauthorization (or its token is about to
-- expire) until it is resolved. The partial unique index makes "once per episode" a database fact:
-- a second failed call finds the open episode instead of opening another.
CREATE TABLE notification_episodes (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel_id       uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
  kind             text NOT NULL CHECK (kind IN ('reauth_required', 'token_expiring')),
  level            text NOT NULL CHECK (level IN ('warning', 'critical')),
  reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
  -- For token_expiring: when the token expires.
  expires_at       timestamptz,
  opened_at        timestamptz NOT NULL DEFAULT now(),
  closed_at        timestamptz,
  closed_reason    text,
  email_sent_at    timestamptz,
  email_error      text,
  webhook_sent_at  timestamptz,
  webhook_attempts integer NOT NULL DEFAULT 0,
  webhook_error    text
);
CREATE UNIQUE INDEX notification_episodes_open_uq ON notification_episodes (channel_id, kind) WHERE closed_at IS NULL;
CREATE INDEX notification_episodes_tenant_idx ON notification_episodes (tenant_id, opened_at);

ALTER TABLE notification_episodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_episodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_episodes
  USING (tenant_id = (SELECT app_tenant_id())) WITH CHECK (tenant_id = (SELECT app_tenant_id()));

-- Token buckets shared by every worker (src/db/graph-call-budget.ts): the rotation sweep takes one
-- token per Graph call, so however many workers and retries run, the calls stay within budget.
CREATE TABLE graph_call_budgets (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9_.-]{1,64}$'),
  tokens      double precision NOT NULL,
  refilled_at timestamptz NOT NULL
);

-- The sweep's work list across tenants: ids and token metadata of active channels, never a token.
-- Keyset-paged by channel id so a run of any size is a series of bounded reads.
CREATE FUNCTION token_sweep_candidates(p_after uuid, p_limit integer,
  OUT channel_id uuid, OUT tenant_id uuid, OUT platform text, OUT graph_api text,
  OUT token_expires_at timestamptz, OUT token_issued_at timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT c.id, c.tenant_id, c.platform, c.graph_api, c.token_expires_at, c.token_issued_at
    FROM channels c
   WHERE c.status = 'active' AND (p_after IS NULL OR c.id > p_after)
   ORDER BY c.id
   LIMIT least(greatest(p_limit, 1), 1000)
$$;
REVOKE EXECUTE ON FUNCTION token_sweep_candidates(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION token_sweep_candidates(uuid, integer) TO switchboard_app;
