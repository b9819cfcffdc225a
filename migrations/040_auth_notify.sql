-- The API checks credentials from memory (so ingest survives a database outage) and reloads them when
-- told: every change of users, API keys or refresh sessions notifies channel 'aetherlens_auth'
-- (one notification per statement; the payload names the table, never a secret).
CREATE FUNCTION aetherlens_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aetherlens_auth', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_auth_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION aetherlens_auth_changed();
CREATE TRIGGER api_tokens_auth_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION aetherlens_auth_changed();
CREATE TRIGGER auth_sessions_auth_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION aetherlens_auth_changed();

-- API keys are found by their short prefix on every request; live prefixes must be unique.
CREATE UNIQUE INDEX api_tokens_live_prefix_idx ON api_tokens (key_prefix)
    WHERE key_prefix IS NOT NULL AND revoked_at IS NULL;
