-- The conversation agent: per-tenant assistant settings and reply engine, the handoff state of a
-- conversation, outbound delivery states, reactions and deletions on messages, an importable
-- catalog, and per-channel send budgets.

CREATE TABLE tenant_settings (
  -- Secret columns are addressed by (tenant_id, id) in their AAD (src/crypto/secret-columns.ts).
  id                     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  tenant_id              uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  -- Persona, language, business facts, hours, address, policies (src/db/tenant-settings.ts).
  assistant              jsonb NOT NULL DEFAULT '{}'::jsonb,
  reply_engine           text NOT NULL DEFAULT 'catalog' CHECK (reply_engine IN ('catalog', 'openai-compatible')),
  llm_base_url           text,
  llm_model              text,
  -- The model provider's API key, vault format v2 (AAD: tenant, table, column, row id, key version).
  llm_api_key_ciphertext bytea,
  llm_api_key_version    integer,
  -- Quiet window that gathers a burst of messages into one answer.
  debounce_ms            integer NOT NULL DEFAULT 800 CHECK (debounce_ms BETWEEN 0 AND 3000),
  history_messages       integer NOT NULL DEFAULT 12 CHECK (history_messages BETWEEN 0 AND 100),
  turn_deadline_ms       integer NOT NULL DEFAULT 8000 CHECK (turn_deadline_ms BETWEEN 500 AND 60000),
  story_replies          text NOT NULL DEFAULT 'answer' CHECK (story_replies IN ('answer', 'ignore')),
  -- A conversation handed to a human returns to the bot after this long without human activity.
  handoff_idle_ms        bigint NOT NULL DEFAULT 1800000 CHECK (handoff_idle_ms BETWEEN 60000 AND 2592000000),
  updated_at             timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE conversations
  ADD COLUMN state            text NOT NULL DEFAULT 'bot_active' CHECK (state IN ('bot_active', 'human_active')),
  ADD COLUMN state_reason     text,
  ADD COLUMN state_changed_at timestamptz NOT NULL DEFAULT now(),
  -- Last message of a human agent (inbox echo or operator), drives the handoff's return to the bot.
  ADD COLUMN last_human_at    timestamptz;

-- Outbound delivery progresses sent → delivered → read; outside_window = decided but not sendable.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('received', 'pending', 'sent', 'delivered', 'read', 'failed', 'outside_window'));
ALTER TABLE messages
  -- RESPONSE / MESSAGE_TAG, and the tag (HUMAN_AGENT) when one was used.
  ADD COLUMN messaging_type text CHECK (messaging_type IN ('RESPONSE', 'UPDATE', 'MESSAGE_TAG')),
  ADD COLUMN message_tag    text,
  -- The inbound messages one bot answer covers (a debounced burst), in order.
  ADD COLUMN covers         uuid[],
  -- Idempotency key of an operator's send (admin API request id).
  ADD COLUMN client_ref     text,
  -- Current reactions to this message, keyed by reactor (customer): [{"reaction","emoji","at"}].
  ADD COLUMN reactions      jsonb NOT NULL DEFAULT '[]'::jsonb,
  ADD COLUMN delivered_at   timestamptz,
  ADD COLUMN read_at        timestamptz,
  -- The customer deleted it: text and payload are erased, the row stays as a tombstone.
  ADD COLUMN deleted_at     timestamptz,
  -- Send round whose request may have reached Meta: set just before the Send API call, cleared
  -- on a definite answer. A retry that finds its own round set cannot know: it is ambiguous.
  ADD COLUMN send_round     integer;
CREATE UNIQUE INDEX messages_client_ref_uq ON messages (conversation_id, client_ref) WHERE client_ref IS NOT NULL;
CREATE INDEX messages_outbound_sent_idx ON messages (conversation_id, sent_at) WHERE direction = 'outbound';

-- Catalog import upserts by (tenant, sku).
ALTER TABLE products
  ADD COLUMN sku        text,
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
UPDATE products SET sku = id::text WHERE sku IS NULL;
ALTER TABLE products ALTER COLUMN sku SET NOT NULL;
ALTER TABLE products ADD CONSTRAINT products_tenant_sku_uq UNIQUE (tenant_id, sku);

-- Per-channel send budget: a token bucket (refilled at send_rate_per_sec × throttle_factor) and a
-- pause Meta's throttling imposes (usage headers, throttle codes).
ALTER TABLE channels ADD COLUMN send_rate_per_sec numeric(8, 2) NOT NULL DEFAULT 20 CHECK (send_rate_per_sec > 0 AND send_rate_per_sec <= 1000);
CREATE TABLE channel_send_budgets (
  channel_id      uuid PRIMARY KEY REFERENCES channels(id) ON DELETE CASCADE,
  tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  tokens          double precision NOT NULL,
  refilled_at     timestamptz NOT NULL DEFAULT now(),
  -- 1 = full rate; lowered as Meta's reported usage approaches 100 %.
  throttle_factor double precision NOT NULL DEFAULT 1 CHECK (throttle_factor > 0 AND throttle_factor <= 1),
  paused_until    timestamptz,
  pause_reason    text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
