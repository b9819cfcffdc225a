-- Views for dashboards (grafana/dashboards/*.json) and anyone writing their own SQL panels: the one
-- place that says what "the active tariff's current day and billing cycle" and "the site's cost" are,
-- so no panel re-derives them. They read the cost job's tables and add nothing of their own.
-- aetherlens_readonly can select them (019's default privileges cover views made later).

-- The active tariff's current local day and billing cycle (monthly from billing_cycle_day, 1..28, in
-- the tariff's zone; DST-correct because the bounds are local midnights turned into instants).
CREATE VIEW dashboard_billing_cycle AS
WITH active AS (
    SELECT id AS tariff_id, name, currency, timezone,
           coalesce((definition ->> 'billing_cycle_day')::int, 1) AS cycle_day,
           now() AT TIME ZONE timezone AS local_now
    FROM rate_schedules
    WHERE active
), cycle AS (
    SELECT active.*,
           date_trunc('month', local_now)
             - CASE WHEN extract(day FROM local_now) >= cycle_day THEN interval '0' ELSE interval '1 month' END
             + (cycle_day - 1) * interval '1 day' AS local_cycle_start
    FROM active
)
SELECT tariff_id, name, currency, timezone, cycle_day,
       date_trunc('day', local_now) AT TIME ZONE timezone AS day_start,
       local_cycle_start AT TIME ZONE timezone AS cycle_start,
       (local_cycle_start + interval '1 month') AT TIME ZONE timezone AS cycle_end,
       (local_cycle_start - interval '1 month') AT TIME ZONE timezone AS previous_cycle_start
FROM cycle;

-- Each device's allocated cost under the active tariff, with its name (UTC hours / local days).
CREATE VIEW dashboard_device_cost_hourly AS
SELECT h.bucket, h.device_id, coalesce(d.name, h.device_id) AS device_name,
       h.kwh, h.cost, h.carbon_kg, h.estimated
FROM cost_hourly h
JOIN rate_schedules r ON r.id = h.tariff_id AND r.active
LEFT JOIN devices d ON d.id = h.device_id;

CREATE VIEW dashboard_device_cost_daily AS
SELECT h.bucket, h.device_id, coalesce(d.name, h.device_id) AS device_name,
       h.kwh, h.cost, h.carbon_kg, h.estimated
FROM cost_daily h
JOIN rate_schedules r ON r.id = h.tariff_id AND r.active
LEFT JOIN devices d ON d.id = h.device_id;

-- The site: every device's share summed, which is the bill (as GET /costs/history without device_id).
CREATE VIEW dashboard_site_cost_hourly AS
SELECT h.bucket, sum(h.kwh) AS kwh, sum(h.cost) AS cost, sum(h.carbon_kg) AS carbon_kg
FROM cost_hourly h
JOIN rate_schedules r ON r.id = h.tariff_id AND r.active
GROUP BY h.bucket;

CREATE VIEW dashboard_site_cost_daily AS
SELECT h.bucket, sum(h.kwh) AS kwh, sum(h.cost) AS cost, sum(h.carbon_kg) AS carbon_kg
FROM cost_daily h
JOIN rate_schedules r ON r.id = h.tariff_id AND r.active
GROUP BY h.bucket;
