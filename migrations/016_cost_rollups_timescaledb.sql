-- requires: timescaledb-tsl
-- cost_hourly / cost_daily (UTC buckets) as continuous aggregates of cost_calculations;
-- materialized_only is explicit so both paths read only what has been rolled up.
CREATE MATERIALIZED VIEW cost_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    time_bucket(INTERVAL '1 hour', time) AS bucket,
    device_id,
    tariff_id,
    sum(kwh)         AS kwh,
    sum(cost)        AS cost,
    sum(carbon_kg)   AS carbon_kg,
    bool_or(estimated) AS estimated,
    count(*)         AS count
FROM cost_calculations
GROUP BY 1, device_id, tariff_id
WITH NO DATA;

CREATE MATERIALIZED VIEW cost_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT
    time_bucket(INTERVAL '1 day', time) AS bucket,
    device_id,
    tariff_id,
    sum(kwh)         AS kwh,
    sum(cost)        AS cost,
    sum(carbon_kg)   AS carbon_kg,
    bool_or(estimated) AS estimated,
    count(*)         AS count
FROM cost_calculations
GROUP BY 1, device_id, tariff_id
WITH NO DATA;

CREATE INDEX cost_hourly_device_idx ON cost_hourly (device_id, tariff_id, bucket DESC);
CREATE INDEX cost_daily_device_idx ON cost_daily (device_id, tariff_id, bucket DESC);
