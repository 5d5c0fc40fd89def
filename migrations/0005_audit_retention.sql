-- Audit retention (docs/security.md, "Audit retention"): per-tenant retention over monthly sealed
-- epochs, purged only through audit_purge_epoch() (SECURITY DEFINER, owned by the migrating owner:
-- the one path through the audit tables' immutability triggers, see 0004), and the results of the
-- scheduled verification, which /readyz reports.

-- Months an audit event is kept. Default 7 years (84 months, the product plan); never below 13
-- months (a full year of evidence plus the month an annual audit period may straddle).
ALTER TABLE tenants ADD COLUMN audit_retention_months integer NOT NULL DEFAULT 84
  CHECK (audit_retention_months >= 13);

-- The platform chain's retention (and the fallback for a deleted tenant's chain): one row.
CREATE TABLE audit_retention_settings (
  singleton                 boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  platform_retention_months integer NOT NULL DEFAULT 84 CHECK (platform_retention_months >= 13)
);
INSERT INTO audit_retention_settings DEFAULT VALUES;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_retention_settings FROM switchboard_app;

-- Results of the scheduled verification (AuditRetention workflow); /readyz reads the latest row.
CREATE TABLE audit_verifications (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  verified_at    timestamptz NOT NULL DEFAULT now(),
  ok             boolean NOT NULL,
  findings       integer NOT NULL DEFAULT 0,
  first_finding  text
);
CREATE INDEX audit_verifications_latest_idx ON audit_verifications (verified_at DESC, id DESC);
REVOKE UPDATE, DELETE, TRUNCATE ON audit_verifications FROM switchboard_app;

-- Purges ONE monthly epoch (calendar month of occurred_at, UTC) of one chain, when all of these hold:
--   * the month has ended and ended at least the chain's retention ago (tenant's
--     audit_retention_months; platform or deleted tenant: audit_retention_settings);
--   * it is the chain's oldest remaining epoch and whole: its events are exactly the contiguous seqs
--     right after the chain's latest anchor (or from seq 1), and no later event is dated inside it;
--   * it is sealed: a signed checkpoint has last_seq = the epoch's last seq and the same hash.
-- Then, in the caller's transaction: an anchor (anchor_seq/hash = the epoch's last event) is
-- recorded, the epoch's events and the checkpoints below the anchor are deleted (the anchor's own
-- checkpoint stays: the verifier requires the anchor to be backed by it; the checkpoint FILE keeps
-- the older ones). Returns the outcome instead of raising for a refused epoch. The caller appends
-- the `retention.purged` event to the chain in the same transaction (src/audit/retention.ts).
CREATE FUNCTION audit_purge_epoch(p_chain_id text, p_epoch date,
  OUT r_status text, OUT r_purged bigint, OUT r_anchor_seq bigint, OUT r_anchor_hash bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_start timestamptz;
  v_end timestamptz;
  v_months integer;
  v_anchor_seq bigint;
  v_first_seq bigint;
  v_last_seq bigint;
  v_last_hash bytea;
  v_count bigint;
BEGIN
  r_purged := 0;
  IF p_chain_id IS NULL OR p_epoch IS NULL OR p_epoch <> date_trunc('month', p_epoch)::date THEN
    r_status := 'invalid_epoch';
    RETURN;
  END IF;
  v_start := p_epoch::timestamp AT TIME ZONE 'UTC';
  v_end := (p_epoch + interval '1 month')::timestamp AT TIME ZONE 'UTC';

  IF p_chain_id = 'platform' THEN
    SELECT s.platform_retention_months INTO v_months FROM audit_retention_settings s;
  ELSIF p_chain_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    SELECT t.audit_retention_months INTO v_months FROM tenants t WHERE t.id = p_chain_id::uuid;
    IF v_months IS NULL THEN
      SELECT s.platform_retention_months INTO v_months FROM audit_retention_settings s;
    END IF;
  ELSE
    r_status := 'invalid_chain';
    RETURN;
  END IF;
  v_months := greatest(coalesce(v_months, 84), 13);
  IF v_end + make_interval(months => v_months) > now() THEN
    r_status := 'not_expired';
    RETURN;
  END IF;

  -- No appends to this chain while it is purged (the appenders' lock, src/audit/log.ts).
  PERFORM pg_advisory_xact_lock(hashtextextended('switchboard.audit:' || p_chain_id, 0));

  SELECT max(a.anchor_seq) INTO v_anchor_seq FROM audit_anchors a WHERE a.chain_id = p_chain_id;
  v_anchor_seq := coalesce(v_anchor_seq, 0);

  IF EXISTS (SELECT 1 FROM audit_events e WHERE e.chain_id = p_chain_id AND e.occurred_at < v_start) THEN
    r_status := 'not_oldest';
    RETURN;
  END IF;
  SELECT min(e.seq), max(e.seq), count(*) INTO v_first_seq, v_last_seq, v_count
    FROM audit_events e WHERE e.chain_id = p_chain_id AND e.occurred_at >= v_start AND e.occurred_at < v_end;
  IF v_count = 0 THEN
    r_status := 'empty';
    RETURN;
  END IF;
  IF v_first_seq <> v_anchor_seq + 1 OR v_last_seq - v_first_seq + 1 <> v_count
     OR EXISTS (SELECT 1 FROM audit_events e WHERE e.chain_id = p_chain_id AND e.seq <= v_last_seq AND e.occurred_at >= v_end) THEN
    r_status := 'not_whole';
    RETURN;
  END IF;
  SELECT e.hash INTO v_last_hash FROM audit_events e WHERE e.chain_id = p_chain_id AND e.seq = v_last_seq;
  IF NOT EXISTS (SELECT 1 FROM audit_checkpoints c
                  WHERE c.chain_id = p_chain_id AND c.last_seq = v_last_seq AND c.last_hash = v_last_hash) THEN
    r_status := 'not_sealed';
    RETURN;
  END IF;

  INSERT INTO audit_anchors (chain_id, anchor_seq, anchor_hash, details)
  VALUES (p_chain_id, v_last_seq, v_last_hash,
          jsonb_build_object('epoch', to_char(p_epoch, 'YYYY-MM'), 'purgedEvents', v_count,
                             'fromSeq', v_first_seq, 'retentionMonths', v_months));
  PERFORM set_config('audit.purge', 'on', true);
  DELETE FROM audit_events e WHERE e.chain_id = p_chain_id AND e.seq <= v_last_seq;
  GET DIAGNOSTICS r_purged = ROW_COUNT;
  DELETE FROM audit_checkpoints c WHERE c.chain_id = p_chain_id AND c.last_seq < v_last_seq;
  PERFORM set_config('audit.purge', 'off', true);

  r_status := 'purged';
  r_anchor_seq := v_last_seq;
  r_anchor_hash := v_last_hash;
END $$;

REVOKE ALL ON FUNCTION audit_purge_epoch(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_purge_epoch(text, date) TO switchboard_app;
