-- Exact cost history (issue "Exact cost history").
--
-- * Money and energy in numeric: sums are exact, so per-device costs add up to the bill.
-- * Cost rows per slot of the tariff zone's grid (60 minutes, or 30/15 where local hours start at half
--   or quarter hours, e.g. Asia/Kolkata, Asia/Kathmandu), so local days and periods split exactly.
-- * Stored energy per slot and every demand window's average kW (not only each hour's peak), so closed
--   hours are priced from them instead of from raw readings.
-- * cost_pending: hours touched by writes (marked by the writer in the data's transaction, like
--   rollup_pending), so the cost job prices late data however old it is.
ALTER TABLE cost_calculations DROP CONSTRAINT IF EXISTS cost_calculations_time_check;
ALTER TABLE cost_calculations
    ALTER COLUMN kwh TYPE numeric,
    ALTER COLUMN cost TYPE numeric,
    ALTER COLUMN carbon_kg TYPE numeric,
    ADD CONSTRAINT cost_calculations_slot_check
        CHECK (time = date_bin(INTERVAL '15 minutes', time, TIMESTAMPTZ '2000-01-01 00:00+00'));

-- cost_hourly: UTC hours (what Home Assistant's hourly statistics are); cost_daily: local days of the
-- tariff's zone, bucket = local midnight as an instant (23 or 25 hours on DST changes).
CREATE TABLE cost_hourly (
    bucket    timestamptz NOT NULL,
    device_id text NOT NULL,
    tariff_id text NOT NULL,
    kwh       numeric NOT NULL,
    cost      numeric NOT NULL,
    carbon_kg numeric NOT NULL,
    estimated boolean NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (device_id, tariff_id, bucket)
);
CREATE TABLE cost_daily (LIKE cost_hourly INCLUDING ALL);
CREATE INDEX cost_hourly_bucket_idx ON cost_hourly (tariff_id, bucket);
CREATE INDEX cost_daily_bucket_idx ON cost_daily (tariff_id, bucket);

CREATE TABLE cost_energy_slots (
    slot       timestamptz NOT NULL
        CHECK (slot = date_bin(INTERVAL '15 minutes', slot, TIMESTAMPTZ '2000-01-01 00:00+00')),
    device_id  text NOT NULL,
    import_kwh numeric NOT NULL DEFAULT 0,
    export_kwh numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, slot)
);
CREATE INDEX cost_energy_slots_slot_idx ON cost_energy_slots (slot);
INSERT INTO cost_energy_slots (slot, device_id, import_kwh, export_kwh)
SELECT hour, device_id, import_kwh::numeric, export_kwh::numeric FROM cost_energy_hourly;
DROP TABLE cost_energy_hourly;

-- The site's kWh per slot (the meter, or the sum of the devices: cost_energy_state's signature says
-- which), so a bill reads one row per slot instead of one per device and slot.
CREATE TABLE cost_site_slots (
    slot       timestamptz PRIMARY KEY,
    import_kwh numeric NOT NULL DEFAULT 0,
    export_kwh numeric NOT NULL DEFAULT 0
);
INSERT INTO cost_site_slots (slot, import_kwh, export_kwh)
SELECT slot, sum(import_kwh), sum(export_kwh) FROM cost_energy_slots GROUP BY slot;

-- The site's average kW of every demand window (by its start), per window length.
CREATE TABLE cost_demand_windows (
    start          timestamptz NOT NULL,
    window_minutes integer NOT NULL CHECK (window_minutes BETWEEN 1 AND 60),
    kw             numeric NOT NULL,
    PRIMARY KEY (window_minutes, start)
);
-- Beyond raw retention the old hourly peaks are all there is: each becomes its hour's first window.
INSERT INTO cost_demand_windows (start, window_minutes, kw)
SELECT hour, window_minutes, peak_kw::numeric FROM cost_demand_peaks;
DROP TABLE cost_demand_peaks;

-- Gaps found while deriving (a bill lists them, whether it reads stored slots or raw readings).
CREATE TABLE cost_energy_gaps (
    device_id   text NOT NULL,
    metric_type text NOT NULL,
    t0          timestamptz NOT NULL,
    t1          timestamptz NOT NULL,
    kwh         numeric,
    PRIMARY KEY (device_id, metric_type, t0)
);
CREATE INDEX cost_energy_gaps_t0_idx ON cost_energy_gaps (t0);

-- What the stored slots were derived with, and how far.
CREATE TABLE cost_energy_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    signature    text NOT NULL,
    slot_minutes integer NOT NULL,
    derived_to   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cost_pending (
    bucket    timestamptz PRIMARY KEY CHECK (bucket = date_trunc('hour', bucket, 'UTC')),
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- Everything is priced once more into the new tables by the next cost job run.
DELETE FROM cost_job_state;
DELETE FROM cost_calculations;
