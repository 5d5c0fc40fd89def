-- Audit trail (src/audit/): hash-chained, append-only security events; signed checkpoints;
-- retention anchors. The database itself enforces immutability:
--   * the app role (switchboard_app) may only INSERT and SELECT on audit_events and
--     audit_checkpoints, and only SELECT on audit_anchors (REVOKEs below, after migration 0003's
--     default privileges granted UPDATE/DELETE);
--   * BEFORE UPDATE/DELETE row triggers and BEFORE TRUNCATE statement triggers raise on all three
--     tables, so even an accidental `GRANT UPDATE, DELETE, TRUNCATE … TO switchboard_app` changes
--     nothing;
--   * the one escape hatch: a DELETE (never UPDATE or TRUNCATE) on audit_events or
--     audit_checkpoints passes when the transaction set `audit.purge = 'on'` AND current_user is
--     the table's owner. Only a SECURITY DEFINER function owned by the owner (the retention purge,
--     `audit_purge_epoch(...)`, which deletes whole sealed epochs and records an anchor) runs as
--     the owner on the app's behalf; the app role can set the variable but can never be the
--     owner. The owner itself can always disable triggers (it owns the tables): tampering by the
--     owner is what hash links and signed checkpoints (outside the database) detect.

CREATE TABLE audit_events (
  -- Insertion order across chains; a checkpoint names the id of its last event.
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- 'platform' or the tenant id (lower-case UUID text): one hash chain each.
  chain_id         text NOT NULL,
  -- 1, 2, 3, … per chain, contiguous (appends are serialized per chain by an advisory lock).
  seq              bigint NOT NULL CHECK (seq >= 1),
  -- No foreign key: deleting a tenant must not delete (or be blocked by) its audit trail.
  tenant_id        uuid,
  -- Millisecond precision (hashed as ISO-8601 with milliseconds; round-trips through timestamptz).
  occurred_at      timestamptz NOT NULL,
  actor_type       text NOT NULL CHECK (actor_type IN ('system', 'operator', 'tenant_user', 'meta', 'api_key')),
  actor_id         text,
  action           text NOT NULL CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
  resource         text,
  outcome          text NOT NULL CHECK (outcome IN ('success', 'failure')),
  reason           text,
  ip               text,
  user_agent       text,
  request_id       text,
  -- PII-masked by src/audit/details.ts before hashing and storing.
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Workflow id + sequence (or any caller key): a repeat returns the first row instead of a second
  -- (unique where set: a partial index, so the many events without a key cost no index entry).
  idempotency_key  text,
  -- When the row was written (not hashed: the database's clock, for checkpoint timing and retention).
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  -- hash = SHA-256(prev_hash ‖ JCS(hashed fields)); genesis prev_hash = 32 zero bytes.
  prev_hash        bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash             bytea NOT NULL CHECK (octet_length(hash) = 32),
  CONSTRAINT audit_events_chain_seq_uq UNIQUE (chain_id, seq),
  CONSTRAINT audit_events_chain_tenant_ck CHECK (
    (tenant_id IS NULL AND chain_id = 'platform') OR (tenant_id IS NOT NULL AND chain_id = tenant_id::text)
  )
);

CREATE UNIQUE INDEX audit_events_idempotency_key_uq ON audit_events (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Signed checkpoints (Ed25519; the key is in the configuration, never here). Every row is also a
-- line of <AUDIT_CHECKPOINT_DIR>/<chain_id>.jsonl; the verifier requires both to agree.
CREATE TABLE audit_checkpoints (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain_id     text NOT NULL,
  last_seq     bigint NOT NULL CHECK (last_seq >= 1),
  last_id      bigint NOT NULL,
  last_hash    bytea NOT NULL CHECK (octet_length(last_hash) = 32),
  -- Events in the chain from genesis through last_seq (= last_seq: sequence numbers are contiguous).
  event_count  bigint NOT NULL,
  created_at   timestamptz NOT NULL,
  key_id       text NOT NULL,
  signature    bytea NOT NULL CHECK (octet_length(signature) = 64),
  CONSTRAINT audit_checkpoints_chain_seq_uq UNIQUE (chain_id, last_seq)
);

-- Where a chain starts after retention purged its oldest sealed epochs: the verifier begins at the
-- latest anchor (anchor_seq, anchor_hash) instead of seq 1 and the zero hash. Written only by the
-- owner's purge function; anchor_seq must be the last_seq of a signed checkpoint.
CREATE TABLE audit_anchors (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain_id     text NOT NULL,
  anchor_seq   bigint NOT NULL CHECK (anchor_seq >= 1),
  anchor_hash  bytea NOT NULL CHECK (octet_length(anchor_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  CONSTRAINT audit_anchors_chain_seq_uq UNIQUE (chain_id, anchor_seq)
);

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM switchboard_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_anchors FROM switchboard_app;
REVOKE ALL ON audit_events, audit_checkpoints, audit_anchors FROM PUBLIC;

CREATE FUNCTION audit_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE'
     AND TG_TABLE_NAME IN ('audit_events', 'audit_checkpoints')
     AND current_setting('audit.purge', true) = 'on'
     AND current_user = (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = TG_RELID) THEN
    RETURN OLD; -- the retention purge, running as the owner inside its SECURITY DEFINER function
  END IF;
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'The audit trail cannot be changed or deleted; retention purges sealed epochs through audit_purge_epoch().';
END $$;

CREATE FUNCTION audit_forbid_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: TRUNCATE is not allowed', TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_forbid_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_forbid_truncate();
CREATE TRIGGER audit_checkpoints_immutable BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_forbid_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_forbid_truncate();
CREATE TRIGGER audit_anchors_immutable BEFORE UPDATE OR DELETE ON audit_anchors
  FOR EACH ROW EXECUTE FUNCTION audit_forbid_change();
CREATE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors
  FOR EACH STATEMENT EXECUTE FUNCTION audit_forbid_truncate();

-- A chain's head (last seq and hash). A chain whose events were all purged continues from its latest
-- anchor; an empty chain starts at seq 0 / the zero hash. Runs as the caller, like the two below.
CREATE FUNCTION audit_chain_head(p_chain_id text, OUT last_seq bigint, OUT last_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  SELECT e.seq, e.hash INTO last_seq, last_hash
    FROM audit_events e WHERE e.chain_id = p_chain_id ORDER BY e.seq DESC LIMIT 1;
  IF NOT FOUND THEN
    SELECT a.anchor_seq, a.anchor_hash INTO last_seq, last_hash
      FROM audit_anchors a WHERE a.chain_id = p_chain_id ORDER BY a.anchor_seq DESC LIMIT 1;
    IF NOT FOUND THEN
      last_seq := 0;
      last_hash := decode(repeat('00', 32), 'hex');
    END IF;
  END IF;
END $$;

-- Takes the chain's transaction-scoped advisory lock (serializes appends to ONE chain; other chains
-- proceed in parallel), then reads its head. VOLATILE, so the read takes a fresh snapshot after the
-- lock is granted (READ COMMITTED) and sees the previous holder's committed row.
CREATE FUNCTION audit_lock_chain_head(p_chain_id text, OUT last_seq bigint, OUT last_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('switchboard.audit:' || p_chain_id, 0));
  SELECT h.last_seq, h.last_hash INTO last_seq, last_hash FROM audit_chain_head(p_chain_id) h;
END $$;

-- The append fast path in ONE round trip (src/audit/log.ts): the client computes the row's hash on
-- the head it expects (its cache of the chain's last append); under the chain's lock the function
-- checks that head and inserts, or returns the real head ('stale': the client recomputes and calls
-- again) or the row already written under the idempotency key ('duplicate'). Called outside a
-- transaction it is its own transaction, so the lock is held until the row is committed.
CREATE FUNCTION audit_append(
  p_chain_id text, p_prev_seq bigint, p_prev_hash bytea, p_hash bytea,
  p_tenant_id uuid, p_occurred_at timestamptz, p_actor_type text, p_actor_id text, p_action text,
  p_resource text, p_outcome text, p_reason text, p_ip text, p_user_agent text, p_request_id text,
  p_details jsonb, p_idempotency_key text,
  OUT r_status text, OUT r_seq bigint, OUT r_hash bytea, OUT r_chain_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
BEGIN
  SELECT h.last_seq, h.last_hash INTO v_seq, v_hash FROM audit_lock_chain_head(p_chain_id) h;
  IF p_idempotency_key IS NOT NULL THEN
    SELECT 'duplicate', e.seq, e.hash, e.chain_id INTO r_status, r_seq, r_hash, r_chain_id
      FROM audit_events e WHERE e.idempotency_key = p_idempotency_key;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  r_chain_id := p_chain_id;
  IF v_seq IS DISTINCT FROM p_prev_seq OR v_hash IS DISTINCT FROM p_prev_hash THEN
    r_status := 'stale';
    r_seq := v_seq;
    r_hash := v_hash;
    RETURN;
  END IF;
  INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome,
                            reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash)
  VALUES (p_chain_id, v_seq + 1, p_tenant_id, p_occurred_at, p_actor_type, p_actor_id, p_action, p_resource, p_outcome,
          p_reason, p_ip, p_user_agent, p_request_id, p_details, p_idempotency_key, p_prev_hash, p_hash);
  r_status := 'appended';
  r_seq := v_seq + 1;
  r_hash := p_hash;
END $$;

-- Many single-event appends of one process, coalesced into one statement (one transaction, one
-- commit; src/audit/log.ts). Rows come grouped by chain, in order. Set-based, so a batch costs a
-- handful of statements whatever its size: try every chain's lock, read the heads, look up the
-- idempotency keys, decide each row, insert the appended ones at once. A chain's lock is only
-- TRIED: a chain locked by another transaction answers 'busy' for its rows (the client then
-- appends them one by one with audit_append(), which waits), so this statement never waits for a
-- lock and can never be part of a deadlock. Otherwise each row is 'appended', 'stale' (with the
-- real head) or 'duplicate', exactly as with audit_append().
CREATE FUNCTION audit_append_batch(
  p_chain_ids text[], p_prev_seqs bigint[], p_prev_hashes bytea[], p_hashes bytea[],
  p_tenant_ids uuid[], p_occurred_ats timestamptz[], p_actor_types text[], p_actor_ids text[], p_actions text[],
  p_resources text[], p_outcomes text[], p_reasons text[], p_ips text[], p_user_agents text[], p_request_ids text[],
  p_details jsonb[], p_idempotency_keys text[])
RETURNS TABLE (r_status text, r_seq bigint, r_hash bytea, r_chain_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n int := coalesce(array_length(p_chain_ids, 1), 0);
  v_chains text[];
  v_locked boolean[];
  v_head_seq bigint[];
  v_head_hash bytea[];
  v_keys text[] := '{}';
  v_key_seq bigint[] := '{}';
  v_key_hash bytea[] := '{}';
  v_key_chain text[] := '{}';
  v_rows int[] := '{}';
  v_seqs bigint[] := '{}';
  i int;
  c int;
  k int;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  -- The batch's chains in first-appearance order, and their locks (tried, never awaited).
  SELECT array_agg(t.chain_id ORDER BY t.first) INTO v_chains
    FROM (SELECT u.chain_id, min(u.ord) AS first FROM unnest(p_chain_ids) WITH ORDINALITY AS u(chain_id, ord) GROUP BY u.chain_id) t;
  SELECT array_agg(pg_try_advisory_xact_lock(hashtextextended('switchboard.audit:' || u.chain_id, 0)) ORDER BY u.ord) INTO v_locked
    FROM unnest(v_chains) WITH ORDINALITY AS u(chain_id, ord);
  -- Heads, in a statement that starts after the locks: it sees the previous holders' commits.
  SELECT array_agg(coalesce(e.seq, a.anchor_seq, 0) ORDER BY u.ord),
         array_agg(coalesce(e.hash, a.anchor_hash, decode(repeat('00', 32), 'hex')) ORDER BY u.ord)
    INTO v_head_seq, v_head_hash
    FROM unnest(v_chains) WITH ORDINALITY AS u(chain_id, ord)
    LEFT JOIN LATERAL (SELECT x.seq, x.hash FROM audit_events x WHERE x.chain_id = u.chain_id ORDER BY x.seq DESC LIMIT 1) e ON true
    LEFT JOIN LATERAL (SELECT y.anchor_seq, y.anchor_hash FROM audit_anchors y WHERE y.chain_id = u.chain_id ORDER BY y.anchor_seq DESC LIMIT 1) a ON true;
  IF EXISTS (SELECT 1 FROM unnest(p_idempotency_keys) AS u(key) WHERE u.key IS NOT NULL) THEN
    SELECT coalesce(array_agg(x.idempotency_key), '{}'), coalesce(array_agg(x.seq), '{}'), coalesce(array_agg(x.hash), '{}'), coalesce(array_agg(x.chain_id), '{}')
      INTO v_keys, v_key_seq, v_key_hash, v_key_chain
      FROM audit_events x WHERE x.idempotency_key = ANY(p_idempotency_keys);
  END IF;

  FOR i IN 1 .. n LOOP
    c := array_position(v_chains, p_chain_ids[i]);
    r_chain_id := p_chain_ids[i];
    r_seq := NULL;
    r_hash := NULL;
    IF NOT v_locked[c] THEN
      r_status := 'busy';
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF p_idempotency_keys[i] IS NOT NULL THEN
      k := array_position(v_keys, p_idempotency_keys[i]);
      IF k IS NOT NULL THEN
        r_status := 'duplicate';
        r_seq := v_key_seq[k];
        r_hash := v_key_hash[k];
        r_chain_id := v_key_chain[k];
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    IF v_head_seq[c] IS DISTINCT FROM p_prev_seqs[i] OR v_head_hash[c] IS DISTINCT FROM p_prev_hashes[i] THEN
      r_status := 'stale';
      r_seq := v_head_seq[c];
      r_hash := v_head_hash[c];
      RETURN NEXT;
      CONTINUE;
    END IF;
    v_head_seq[c] := v_head_seq[c] + 1;
    v_head_hash[c] := p_hashes[i];
    v_rows := v_rows || i;
    v_seqs := v_seqs || v_head_seq[c];
    IF p_idempotency_keys[i] IS NOT NULL THEN
      v_keys := v_keys || p_idempotency_keys[i];
      v_key_seq := v_key_seq || v_head_seq[c];
      v_key_hash := v_key_hash || p_hashes[i];
      v_key_chain := v_key_chain || p_chain_ids[i];
    END IF;
    r_status := 'appended';
    r_seq := v_head_seq[c];
    r_hash := p_hashes[i];
    RETURN NEXT;
  END LOOP;

  IF cardinality(v_rows) > 0 THEN
    INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome,
                              reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash)
    SELECT u.chain_id, w.seq, u.tenant_id, u.occurred_at, u.actor_type, u.actor_id, u.action, u.resource, u.outcome,
           u.reason, u.ip, u.user_agent, u.request_id, u.details, u.idempotency_key, u.prev_hash, u.hash
      FROM unnest(v_rows, v_seqs) AS w(ord, seq)
      JOIN unnest(p_chain_ids, p_tenant_ids, p_occurred_ats, p_actor_types, p_actor_ids, p_actions, p_resources, p_outcomes,
                  p_reasons, p_ips, p_user_agents, p_request_ids, p_details, p_idempotency_keys, p_prev_hashes, p_hashes)
           WITH ORDINALITY AS u(chain_id, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome,
                                reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash, ord)
        ON u.ord = w.ord
     ORDER BY w.ord;
  END IF;
END $$;
