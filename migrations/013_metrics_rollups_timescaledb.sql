-- requires: timescaledb-tsl
-- metrics_hourly / metrics_daily as continuous aggregates (UTC buckets). materialized_only is set
-- explicitly to true: readers see what has been materialized, exactly like the plain path's tables,
-- which is what makes both paths give the same numbers. The rollup job refreshes the buckets recorded in
-- rollup_pending (late and backfilled data); refresh policies (018) cover the recent past.
CREATE MATERIALIZED VIEW metrics_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    time_bucket(INTERVAL '1 hour', time) AS bucket,
    device_id,
    metric_type,
    avg(value)            AS avg,
    min(value)            AS min,
    max(value)            AS max,
    sum(value)            AS sum,
    count(*)              AS count,
    first(value, time)    AS first,
    last(value, time)     AS last,
    CASE WHEN aetherlens_is_counter(metric_type) THEN
        aetherlens_counter_increase(
            array_agg(time) FILTER (WHERE aetherlens_is_counter(metric_type)),
            array_agg(value) FILTER (WHERE aetherlens_is_counter(metric_type)))
    END                   AS increase
FROM metrics
GROUP BY 1, device_id, metric_type
WITH NO DATA;

CREATE MATERIALIZED VIEW metrics_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    time_bucket(INTERVAL '1 day', time) AS bucket,
    device_id,
    metric_type,
    avg(value)            AS avg,
    min(value)            AS min,
    max(value)            AS max,
    sum(value)            AS sum,
    count(*)              AS count,
    first(value, time)    AS first,
    last(value, time)     AS last,
    CASE WHEN aetherlens_is_counter(metric_type) THEN
        aetherlens_counter_increase(
            array_agg(time) FILTER (WHERE aetherlens_is_counter(metric_type)),
            array_agg(value) FILTER (WHERE aetherlens_is_counter(metric_type)))
    END                   AS increase
FROM metrics
GROUP BY 1, device_id, metric_type
WITH NO DATA;

-- Rollups of one series over a range.
CREATE INDEX metrics_hourly_series_idx ON metrics_hourly (device_id, metric_type, bucket DESC);
CREATE INDEX metrics_daily_series_idx ON metrics_daily (device_id, metric_type, bucket DESC);
