-- Devices: anything that draws power or costs money. Ids are chosen by the source (CONTRACT.md vocabulary).
CREATE TABLE devices (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    name       text NOT NULL CHECK (name <> ''),
    type       text NOT NULL DEFAULT 'other' CHECK (type IN (
                   'plug', 'meter', 'inverter', 'battery', 'hvac', 'appliance', 'server', 'network',
                   'cloud', 'other')),
    room       text,
    source     text,
    tags       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(tags) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX devices_source_idx ON devices (source);
