-- Audit retention under row-level security (0008): a scope sees one audit chain, so finding each
-- chain's oldest epoch past its retention would take one transaction per chain, every round of
-- every retention run. This allow-listed SECURITY DEFINER function answers it in one statement
-- and returns metadata only: chain ids and epochs (the first day of a calendar month, UTC), never
-- an event. The purge itself stays audit_purge_epoch() (0005), which re-checks everything.
--
-- A chain's oldest epoch is the month of its first remaining event (lowest seq); it is expired
-- when that month ended at least the chain's retention ago (tenants.audit_retention_months; the
-- platform chain or a deleted tenant's: audit_retention_settings; never below 13 months). Chains
-- come from a loose index scan of UNIQUE (chain_id, seq); `p_exclude` skips chains the caller
-- already found refused in this run.
CREATE FUNCTION audit_expired_epochs(p_limit integer, p_exclude text[], p_now timestamptz,
  OUT chain_id text, OUT epoch date)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  WITH RECURSIVE chains(c) AS (
    (SELECT e.chain_id FROM audit_events e ORDER BY e.chain_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.chain_id FROM audit_events e WHERE e.chain_id > chains.c ORDER BY e.chain_id LIMIT 1)
      FROM chains WHERE chains.c IS NOT NULL
  ),
  firsts AS (
    SELECT ch.c AS chain_id,
           date_trunc('month', (SELECT e.occurred_at FROM audit_events e WHERE e.chain_id = ch.c ORDER BY e.seq LIMIT 1) AT TIME ZONE 'UTC') AS epoch
      FROM chains ch WHERE ch.c IS NOT NULL AND NOT (ch.c = ANY(coalesce(p_exclude, '{}')))
  ),
  policy AS (
    SELECT f.chain_id, f.epoch,
           greatest(coalesce(t.audit_retention_months, s.platform_retention_months, 84), 13) AS months
      FROM firsts f
      CROSS JOIN audit_retention_settings s
      LEFT JOIN tenants t ON f.chain_id <> 'platform' AND t.id::text = f.chain_id
  )
  SELECT p.chain_id, p.epoch::date FROM policy p
   WHERE ((p.epoch + interval '1 month' + make_interval(months => p.months)) AT TIME ZONE 'UTC') <= p_now
   ORDER BY p.epoch, p.chain_id
   LIMIT greatest(p_limit, 0)
$$;

REVOKE EXECUTE ON FUNCTION audit_expired_epochs(integer, text[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_expired_epochs(integer, text[], timestamptz) TO switchboard_app;
