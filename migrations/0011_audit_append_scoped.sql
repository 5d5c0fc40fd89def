-- audit_append_batch() under row-level security (0008): the coalesced append path in one round trip
-- again, without opening a hole in the tenant scopes.
--
-- Why: the audit writer (src/audit/log.ts) coalesces one process's concurrent single-event appends
-- — any mix of tenant chains and the platform chain — into one statement and one commit. Under
-- 0008 a scope sees exactly one chain, so running that statement inside withTenant/withPlatform
-- meant one transaction per chain (BEGIN + scope, append, COMMIT: three round trips and a commit
-- per chain) and cut throughput by about six. Instead, called OUTSIDE any scope (the pool's
-- autocommit call), the function now enters each chain's own scope in turn — set_config(..., true)
-- to that chain, then its lock, head, idempotency lookup and INSERT, all statements that see only
-- that chain — and clears the scope before it returns. Every row it reads or writes is therefore
-- still checked by the tenant_isolation policies (USING and WITH CHECK): the function is NOT
-- SECURITY DEFINER, and it adds no way around RLS that the app role's set_config does not already
-- have. Called INSIDE a scope (a caller's withTenant/withPlatform transaction) it never changes the
-- scope and refuses, with 42501, any event of another chain: an audit event of tenant B written
-- from tenant A's transaction is a bug, and this function must not become the way to do it.
--
-- Same signature and results as 0004's version: rows answered in input order, each 'appended',
-- 'stale' (with the real head), 'duplicate' (with the row written first under the key) or 'busy'
-- (the chain's lock is held by another transaction: only TRIED, so the statement never waits and
-- can never be part of a deadlock). An idempotency key is looked up in the event's own chain only
-- (the scope sees no other): a key reused on another chain fails on the unique index, and the
-- statement with it, as any append in a scope does.
--
-- audit_append() (one event, the caller's transaction or the coalescer's busy fallback, both in the
-- chain's scope) is unchanged. test/integration/rls-catalog.test.ts lists the functions allowed to
-- set app.tenant_id: this one only (besides src/db/tenant-scope.ts, which is not in the database).
CREATE OR REPLACE FUNCTION audit_append_batch(
  p_chain_ids text[], p_prev_seqs bigint[], p_prev_hashes bytea[], p_hashes bytea[],
  p_tenant_ids uuid[], p_occurred_ats timestamptz[], p_actor_types text[], p_actor_ids text[], p_actions text[],
  p_resources text[], p_outcomes text[], p_reasons text[], p_ips text[], p_user_agents text[], p_request_ids text[],
  p_details jsonb[], p_idempotency_keys text[])
RETURNS TABLE (r_status text, r_seq bigint, r_hash bytea, r_chain_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n int := coalesce(array_length(p_chain_ids, 1), 0);
  -- Empty (or NULL, before the session's first scope): the pool's call, outside any scope.
  v_outside boolean := coalesce(current_setting('app.tenant_id', true), '') = '';
  v_scope_chain text;
  v_void text;
  v_chain text;
  v_idx int[];
  v_head_seq bigint;
  v_head_hash bytea;
  v_chain_keys text[];
  v_keys text[];
  v_key_seq bigint[];
  v_key_hash bytea[];
  v_key_chain text[];
  v_rows int[];
  v_seqs bigint[];
  o_status text[];
  o_seq bigint[];
  o_hash bytea[];
  o_chain text[];
  i int;
  j int;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  IF array_position(p_chain_ids, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'audit_append_batch: every event needs a chain id' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF NOT v_outside THEN
    v_scope_chain := app_audit_chain();
    IF EXISTS (SELECT 1 FROM unnest(p_chain_ids) AS u(c) WHERE u.c <> v_scope_chain) THEN
      RAISE EXCEPTION 'audit_append_batch inside a scope appends to that scope''s chain only (%): an event of another chain is refused', v_scope_chain
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Append other chains through the pool (outside any scope) or in their own withTenant/withPlatform transaction.';
    END IF;
  END IF;
  o_status := array_fill(NULL::text, ARRAY[n]);
  o_seq := array_fill(NULL::bigint, ARRAY[n]);
  o_hash := array_fill(NULL::bytea, ARRAY[n]);
  o_chain := p_chain_ids;

  -- Chain by chain, in first-appearance order; each chain's rows in input order.
  FOR v_chain, v_idx IN
    SELECT u.c, array_agg(u.ord::int ORDER BY u.ord)
      FROM unnest(p_chain_ids) WITH ORDINALITY AS u(c, ord) GROUP BY u.c ORDER BY min(u.ord)
  LOOP
    IF v_outside THEN
      -- The chain's own scope ('platform' or the tenant id): from here on every statement sees and
      -- writes that chain only, exactly as inside withTenant/withPlatform. (An assignment, not
      -- PERFORM: PL/pgSQL evaluates it without starting a query.)
      v_void := set_config('app.tenant_id', v_chain, true);
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtextextended('switchboard.audit:' || v_chain, 0)) THEN
      FOREACH i IN ARRAY v_idx LOOP
        o_status[i] := 'busy';
      END LOOP;
      CONTINUE;
    END IF;
    -- The head, in a statement that starts after the lock: it sees the previous holder's commit.
    SELECT x.seq, x.hash INTO v_head_seq, v_head_hash FROM audit_events x WHERE x.chain_id = v_chain ORDER BY x.seq DESC LIMIT 1;
    IF NOT FOUND THEN
      -- Every event purged by retention: the chain continues from its latest anchor; or a new chain.
      SELECT y.anchor_seq, y.anchor_hash INTO v_head_seq, v_head_hash FROM audit_anchors y WHERE y.chain_id = v_chain ORDER BY y.anchor_seq DESC LIMIT 1;
      IF NOT FOUND THEN
        v_head_seq := 0;
        v_head_hash := decode(repeat('00', 32), 'hex');
      END IF;
    END IF;

    -- Keys already written to this chain (the only chain the scope sees), looked up only when
    -- the chain's rows carry any.
    v_keys := '{}';
    v_key_seq := '{}';
    v_key_hash := '{}';
    v_key_chain := '{}';
    v_chain_keys := '{}';
    FOREACH i IN ARRAY v_idx LOOP
      IF p_idempotency_keys[i] IS NOT NULL THEN
        v_chain_keys := v_chain_keys || p_idempotency_keys[i];
      END IF;
    END LOOP;
    IF cardinality(v_chain_keys) > 0 THEN
      SELECT coalesce(array_agg(x.idempotency_key), '{}'), coalesce(array_agg(x.seq), '{}'), coalesce(array_agg(x.hash), '{}'), coalesce(array_agg(x.chain_id), '{}')
        INTO v_keys, v_key_seq, v_key_hash, v_key_chain
        FROM audit_events x WHERE x.idempotency_key = ANY(v_chain_keys);
    END IF;

    -- Row by row, as audit_append() decides; a repeat within the batch answers the row written first.
    v_rows := '{}';
    v_seqs := '{}';
    FOREACH i IN ARRAY v_idx LOOP
      IF p_idempotency_keys[i] IS NOT NULL THEN
        j := array_position(v_keys, p_idempotency_keys[i]);
        IF j IS NOT NULL THEN
          o_status[i] := 'duplicate';
          o_seq[i] := v_key_seq[j];
          o_hash[i] := v_key_hash[j];
          o_chain[i] := v_key_chain[j];
          CONTINUE;
        END IF;
      END IF;
      IF v_head_seq IS DISTINCT FROM p_prev_seqs[i] OR v_head_hash IS DISTINCT FROM p_prev_hashes[i] THEN
        o_status[i] := 'stale';
        o_seq[i] := v_head_seq;
        o_hash[i] := v_head_hash;
        CONTINUE;
      END IF;
      v_head_seq := v_head_seq + 1;
      v_head_hash := p_hashes[i];
      v_rows := v_rows || i;
      v_seqs := v_seqs || v_head_seq;
      IF p_idempotency_keys[i] IS NOT NULL THEN
        v_keys := v_keys || p_idempotency_keys[i];
        v_key_seq := v_key_seq || v_head_seq;
        v_key_hash := v_key_hash || p_hashes[i];
        v_key_chain := v_key_chain || v_chain;
      END IF;
      o_status[i] := 'appended';
      o_seq[i] := v_head_seq;
      o_hash[i] := p_hashes[i];
    END LOOP;

    -- One INSERT per chain (a statement sees one scope). Starting an INSERT into audit_events costs
    -- far more than a row (its CHECK constraints are prepared per statement), and a chain usually
    -- has one row per batch: that case is a plain VALUES, the cheapest form.
    IF cardinality(v_rows) = 1 THEN
      i := v_rows[1];
      INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome,
                                reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash)
      VALUES (p_chain_ids[i], v_seqs[1], p_tenant_ids[i], p_occurred_ats[i], p_actor_types[i], p_actor_ids[i],
              p_actions[i], p_resources[i], p_outcomes[i], p_reasons[i], p_ips[i], p_user_agents[i],
              p_request_ids[i], p_details[i], p_idempotency_keys[i], p_prev_hashes[i], p_hashes[i]);
    ELSIF cardinality(v_rows) > 1 THEN
      INSERT INTO audit_events (chain_id, seq, tenant_id, occurred_at, actor_type, actor_id, action, resource, outcome,
                                reason, ip, user_agent, request_id, details, idempotency_key, prev_hash, hash)
      SELECT p_chain_ids[w.i], w.seq, p_tenant_ids[w.i], p_occurred_ats[w.i], p_actor_types[w.i], p_actor_ids[w.i],
             p_actions[w.i], p_resources[w.i], p_outcomes[w.i], p_reasons[w.i], p_ips[w.i], p_user_agents[w.i],
             p_request_ids[w.i], p_details[w.i], p_idempotency_keys[w.i], p_prev_hashes[w.i], p_hashes[w.i]
        FROM unnest(v_rows, v_seqs) AS w(i, seq)
       ORDER BY w.i;
    END IF;
  END LOOP;

  IF v_outside THEN
    -- Nothing outlives the call: in a caller's (unscoped) transaction the next statement is
    -- outside any scope again. An error instead rolls the setting back with the statement.
    v_void := set_config('app.tenant_id', '', true);
  END IF;
  RETURN QUERY SELECT o_status[x], o_seq[x], o_hash[x], o_chain[x] FROM generate_series(1, n) AS x ORDER BY x;
END $$;
