-- What changed in the hourly cost history since a point (GET /api/v1/costs/changes?since=<revision>), so
-- Home Assistant rewrites exactly the re-priced hours of its long-term statistics.
--
-- * cost_hourly.revision: drawn from one sequence when a row is inserted or its values (kwh, cost,
--   carbon_kg) change; the cost job's refresh is an upsert that leaves identical rows (and their
--   revision) alone, so re-pricing to the same numbers reports nothing.
-- * cost_hourly_removed: a row the refresh deleted (the hour no longer has that device's cost) keeps its
--   key and the revision of its removal; the series changed there too.
-- * cost_history_activations: the revision at which a tariff became the active one; /costs/history serves
--   the active tariff's rows, so activating another tariff changes every series from its first hour.
--   A trigger records it on every path that sets rate_schedules.active (API, CLI, import, first tariff).
-- Revisions are drawn under the cost rollup lock (db.queries.costs.COST_ROLLUP_LOCK_KEY) so they commit
-- in order: a reader's highest visible revision never hides a lower one committed later.
-- cost_hourly is a plain table on both storage paths (032), so one file serves both.
CREATE SEQUENCE cost_hourly_revision_seq AS bigint;

ALTER TABLE cost_hourly ADD COLUMN revision bigint NOT NULL DEFAULT nextval('cost_hourly_revision_seq');
ALTER SEQUENCE cost_hourly_revision_seq OWNED BY cost_hourly.revision;
CREATE INDEX cost_hourly_revision_idx ON cost_hourly (tariff_id, revision);

CREATE TABLE cost_hourly_removed (
    bucket    timestamptz NOT NULL,
    device_id text NOT NULL,
    tariff_id text NOT NULL,
    revision  bigint NOT NULL DEFAULT nextval('cost_hourly_revision_seq'),
    PRIMARY KEY (device_id, tariff_id, bucket)
);
CREATE INDEX cost_hourly_removed_revision_idx ON cost_hourly_removed (tariff_id, revision);

CREATE TABLE cost_history_activations (
    tariff_id text PRIMARY KEY,
    revision  bigint NOT NULL
);

CREATE FUNCTION cost_history_activated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.active AND (TG_OP = 'INSERT' OR NOT OLD.active) THEN
        -- The same lock as the rollup refresh: revisions commit in the order they are drawn.
        PERFORM pg_advisory_xact_lock(4712300576269890420);
        INSERT INTO cost_history_activations (tariff_id, revision)
        VALUES (NEW.id, nextval('cost_hourly_revision_seq'))
        ON CONFLICT (tariff_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER rate_schedules_activated AFTER INSERT OR UPDATE OF active ON rate_schedules
    FOR EACH ROW EXECUTE FUNCTION cost_history_activated();

-- The tariff active now counts as activated now (its history is what clients backfill with since=0).
INSERT INTO cost_history_activations (tariff_id, revision)
SELECT id, nextval('cost_hourly_revision_seq') FROM rate_schedules WHERE active;
