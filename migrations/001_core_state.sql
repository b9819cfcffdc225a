-- Key/value facts about this database that the core checks at every start: the storage mode chosen at
-- the first migration ('timescaledb' or 'plain', written by the migration runner), how rollups are kept
-- ('continuous_aggregates' or 'tables') and the instance id shown by /api/v1/info.
CREATE TABLE core_state (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO core_state (key, value) VALUES ('instance_id', gen_random_uuid()::text);
