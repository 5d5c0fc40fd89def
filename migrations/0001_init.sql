-- Switchboard initial schema: tenants, channels (with encrypted tokens), conversations, messages,
-- non-message events, unrouted webhook events and the per-tenant product catalog.

CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id                uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  platform                 text NOT NULL CHECK (platform IN ('messenger', 'instagram')),
  -- Page ID (Messenger) or Instagram professional account ID: Meta's entry[].id.
  account_id               text NOT NULL CHECK (account_id ~ '^[0-9]{1,32}$'),
  -- Which Graph host the token belongs to: Facebook Login (Page token) or Instagram Login.
  graph_api                text NOT NULL CHECK (graph_api IN ('facebook', 'instagram')),
  status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'reauth_required', 'disabled')),
  status_reason            text,
  status_changed_at        timestamptz NOT NULL DEFAULT now(),
  -- AES-256-GCM, format v1 (src/crypto/token-cipher.ts); AAD binds table, column and row id.
  access_token_ciphertext  bytea NOT NULL,
  created_at               timestamptz NOT NULL DEFAULT now(),
  -- One owner per Meta account: this is the webhook routing key.
  UNIQUE (platform, account_id)
);
CREATE INDEX channels_tenant_idx ON channels (tenant_id);

CREATE TABLE conversations (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel_id       uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
  -- PSID or IGSID: scoped to the Page / IG account, not a global identity.
  customer_id      text NOT NULL,
  last_inbound_at  timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, customer_id)
);
CREATE INDEX conversations_tenant_idx ON conversations (tenant_id);

CREATE TABLE messages (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel_id       uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
  conversation_id  uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  author           text NOT NULL CHECK (author IN ('customer', 'bot', 'human_agent')),
  kind             text NOT NULL,
  -- Meta's message id (inbound mid, or the Send API's message_id once sent).
  mid              text,
  text             text,
  payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
  status           text NOT NULL CHECK (status IN ('received', 'pending', 'sent', 'failed')),
  error            jsonb,
  -- For a bot reply: the inbound message that caused it (one reply per decision).
  in_reply_to      uuid REFERENCES messages(id) ON DELETE CASCADE,
  meta_timestamp   timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz
);
-- Idempotency: Meta redelivers; the same mid on the same channel is one row.
CREATE UNIQUE INDEX messages_channel_mid_uq ON messages (channel_id, mid) WHERE mid IS NOT NULL;
CREATE UNIQUE INDEX messages_one_reply_uq ON messages (in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at);

-- Reactions, reads, deliveries, deletions, referrals: kept per conversation, keyed for dedupe.
CREATE TABLE conversation_events (
  id               bigserial PRIMARY KEY,
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  channel_id       uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
  conversation_id  uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  kind             text NOT NULL,
  dedupe_key       text NOT NULL,
  payload          jsonb NOT NULL,
  occurred_at      timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, dedupe_key)
);

-- Signed, valid deliveries we could not route to a tenant or do not handle yet. Acknowledged to
-- Meta (a non-200 only causes retries and, after an hour, an unsubscribe) but never lost.
CREATE TABLE unrouted_events (
  id           bigserial PRIMARY KEY,
  received_at  timestamptz NOT NULL DEFAULT now(),
  object       text NOT NULL,
  platform     text,
  account_id   text NOT NULL,
  reason       text NOT NULL CHECK (reason IN ('unknown_account', 'unsupported_event')),
  event_type   text NOT NULL,
  payload      jsonb NOT NULL
);
CREATE INDEX unrouted_events_account_idx ON unrouted_events (account_id, received_at);

CREATE TABLE products (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name         text NOT NULL,
  description  text NOT NULL DEFAULT '',
  price        numeric(12, 2),
  currency     char(3),
  stock        integer,
  url          text,
  search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', name || ' ' || description)) STORED
);
CREATE INDEX products_tenant_idx ON products (tenant_id);
CREATE INDEX products_search_idx ON products USING gin (search);
