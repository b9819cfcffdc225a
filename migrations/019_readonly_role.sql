-- Read-only role for Grafana (or any dashboard) over database.listen_port.
-- Roles are cluster-wide: create it once, tolerate another database (or a concurrent start) having
-- made it already. It cannot log in until the core sets its password (only when listen_port is set;
-- the password lives in data_dir/readonly_password, mode 0600).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'aetherlens_readonly') THEN
        CREATE ROLE aetherlens_readonly NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO aetherlens_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO aetherlens_readonly;
-- Tables and views created by later migrations (by the same owner) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO aetherlens_readonly;

-- Credentials stay private even to a read-only dashboard: password hashes, key digests, refresh
-- sessions, and the plugins' encrypted secrets (their other columns stay readable).
DO $$
DECLARE
    secret_table text;
BEGIN
    FOREACH secret_table IN ARRAY ARRAY['users', 'api_tokens', 'auth_sessions', 'plugins'] LOOP
        IF to_regclass(format('public.%I', secret_table)) IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON public.%I FROM aetherlens_readonly', secret_table);
        END IF;
    END LOOP;
    IF to_regclass('public.plugins') IS NOT NULL THEN
        GRANT SELECT (id, enabled, config, status, updated_at) ON plugins TO aetherlens_readonly;
    END IF;
END
$$;
