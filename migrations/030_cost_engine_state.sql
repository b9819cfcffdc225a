-- Cost engine state (aetherlens.costs.job). Energy per device and UTC hour, kept beyond raw retention so
-- a tariff change can re-price history; the site's highest window-average demand per hour (for each
-- window length), so demand charges can be re-priced too; and each tariff's pricing watermark.
CREATE TABLE cost_energy_hourly (
    hour       timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    device_id  text NOT NULL,
    import_kwh double precision NOT NULL DEFAULT 0,
    export_kwh double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, hour)
);
CREATE INDEX cost_energy_hourly_hour_idx ON cost_energy_hourly (hour);

CREATE TABLE cost_demand_peaks (
    hour           timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    window_minutes integer NOT NULL CHECK (window_minutes BETWEEN 1 AND 60),
    peak_kw        double precision NOT NULL,
    PRIMARY KEY (window_minutes, hour)
);

CREATE TABLE cost_job_state (
    tariff_id    text PRIMARY KEY,
    watermark    timestamptz NOT NULL,
    versions_sig text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
