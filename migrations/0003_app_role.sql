-- The role the gateway and worker connect as (through a LOGIN role that is a member of it; see
-- src/db/app-role.ts). It owns nothing, cannot create objects, has no BYPASSRLS, and gets data
-- privileges only; migrations run as the schema owner. Later migrations narrow what it may do
-- on append-only tables (the audit log: INSERT and SELECT only).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'switchboard_app') THEN
    CREATE ROLE switchboard_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  -- Another database of the same cluster created it concurrently (the race surfaces as either).
  NULL;
END $$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO switchboard_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO switchboard_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO switchboard_app;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM switchboard_app;

-- Tables later migrations create (as this owner) get the same data privileges by default.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO switchboard_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO switchboard_app;
