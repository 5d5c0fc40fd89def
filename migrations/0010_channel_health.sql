-- Channel health for the admin API and the dashboard (issue 6): when the channel's token expires
-- and whether Meta's webhook subscription was found in place, as last checked. Filled by the token
-- and subscription checks (issue 8); NULL = not known yet, never a guess.
ALTER TABLE channels
  ADD COLUMN token_expires_at   timestamptz,
  ADD COLUMN webhook_subscribed boolean,
  ADD COLUMN webhook_checked_at timestamptz;

-- A channel's last event (GET /api/v1/tenants/:id/channels): the newest inbound message or
-- conversation event of the channel, read from these indexes instead of scanning its history.
CREATE INDEX messages_channel_inbound_idx ON messages (channel_id, created_at) WHERE direction = 'inbound';
CREATE INDEX conversation_events_channel_idx ON conversation_events (channel_id, created_at);

-- Newest-first pages of a tenant's conversations (keyset on created_at, id).
CREATE INDEX conversations_tenant_created_idx ON conversations (tenant_id, created_at, id);

-- The dashboard's live throughput and latency (src/db/metrics.ts, polled every few seconds): a
-- tenant's messages by arrival and by send time, without scanning every tenant's history.
CREATE INDEX messages_tenant_created_idx ON messages (tenant_id, created_at);
CREATE INDEX messages_tenant_sent_idx ON messages (tenant_id, sent_at) WHERE sent_at IS NOT NULL;
