-- requires: plain
-- Hourly cost of each device under each tariff, written by the cost engine (one row per UTC hour).
CREATE TABLE cost_calculations (
    time        timestamptz NOT NULL CHECK (time = date_trunc('hour', time, 'UTC')),
    device_id   text NOT NULL,
    tariff_id   text NOT NULL,
    kwh         double precision NOT NULL,
    cost        double precision NOT NULL,
    period      text,
    carbon_kg   double precision,
    estimated   boolean NOT NULL DEFAULT false,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, tariff_id, time)
);

-- Whole-hour reads of the cost rollups.
CREATE INDEX cost_calculations_time_idx ON cost_calculations (time);
