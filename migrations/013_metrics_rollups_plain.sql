-- requires: plain
-- metrics_hourly / metrics_daily as tables kept current by the rollup job (aetherlens.db.rollups),
-- which re-aggregates exactly the hours recorded in rollup_pending and the (UTC) days containing them.
-- Same names and columns as the continuous aggregates of 013_metrics_rollups_timescaledb.sql.
CREATE TABLE metrics_hourly (
    bucket      timestamptz NOT NULL,
    device_id   text NOT NULL,
    metric_type text NOT NULL,
    avg         double precision,
    min         double precision,
    max         double precision,
    sum         double precision,
    count       bigint NOT NULL,
    first       double precision,
    last        double precision,
    increase    double precision,
    PRIMARY KEY (device_id, metric_type, bucket)
);

CREATE TABLE metrics_daily (LIKE metrics_hourly INCLUDING ALL);

-- The job replaces whole buckets, and retention deletes by bucket age.
CREATE INDEX metrics_hourly_bucket_idx ON metrics_hourly (bucket);
CREATE INDEX metrics_daily_bucket_idx ON metrics_daily (bucket);
