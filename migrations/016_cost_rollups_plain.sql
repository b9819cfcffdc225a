-- requires: plain
-- cost_hourly / cost_daily (UTC buckets) as tables; the cost engine calls
-- aetherlens.db.rollups.refresh_cost_rollups(conn, capabilities, hours) after writing cost_calculations.
-- Same names and columns as the continuous aggregates of 016_cost_rollups_timescaledb.sql.
CREATE TABLE cost_hourly (
    bucket    timestamptz NOT NULL,
    device_id text NOT NULL,
    tariff_id text NOT NULL,
    kwh       double precision,
    cost      double precision,
    carbon_kg double precision,
    estimated boolean,
    count     bigint NOT NULL,
    PRIMARY KEY (device_id, tariff_id, bucket)
);

CREATE TABLE cost_daily (LIKE cost_hourly INCLUDING ALL);

CREATE INDEX cost_hourly_bucket_idx ON cost_hourly (bucket);
CREATE INDEX cost_daily_bucket_idx ON cost_daily (bucket);
