-- requires: timescaledb
-- Raw time series as a hypertable with one-day chunks. The plain-PostgreSQL twin is 008_metrics_plain.sql.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE metrics (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    metric_type text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    tags        jsonb
);

-- create_hypertable also makes the time index (metrics_time_idx) the rollup refreshes scan.
SELECT create_hypertable('metrics', by_range('time', INTERVAL '1 day'));

-- One device (series) over a range.
CREATE INDEX metrics_series_time_idx ON metrics (device_id, metric_type, time DESC);
