-- The latest value of every series, kept by the writer in the same transaction as each COPY, so
-- "latest per device" is a primary-key read and never scans `metrics`.
CREATE TABLE metrics_latest (
    device_id   text NOT NULL,
    metric_type text NOT NULL,
    time        timestamptz NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    PRIMARY KEY (device_id, metric_type)
);
