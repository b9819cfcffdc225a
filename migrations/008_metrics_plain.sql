-- requires: plain
-- Raw time series as an ordinary table. The TimescaleDB twin is 008_metrics_timescaledb.sql.
CREATE TABLE metrics (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    metric_type text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    tags        jsonb
);

-- One device (series) over a range.
CREATE INDEX metrics_series_time_idx ON metrics (device_id, metric_type, time DESC);
-- Whole-hour scans of the rollup job and the retention job's "older than" deletes. Rows arrive in
-- time order, so a BRIN index is tiny and costs next to nothing on ingest (a btree would cost 2-4x).
CREATE INDEX metrics_time_brin ON metrics USING brin (time) WITH (pages_per_range = 32);
