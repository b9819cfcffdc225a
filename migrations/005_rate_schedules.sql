-- Tariffs. A tariff name can have several versions; the one in force at time t is the version with the
-- latest effective_from <= t. `definition` is the tariff model's own JSON (see aetherlens.costs.tariff).
CREATE TABLE rate_schedules (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name           text NOT NULL CHECK (name <> ''),
    effective_from timestamptz NOT NULL,
    currency       text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    timezone       text NOT NULL DEFAULT 'UTC',
    source         text NOT NULL DEFAULT 'yaml',
    definition     jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    active         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, effective_from)
);

-- At most one tariff is the site's active one.
CREATE UNIQUE INDEX rate_schedules_one_active_idx ON rate_schedules (active) WHERE active;
CREATE INDEX rate_schedules_name_effective_idx ON rate_schedules (name, effective_from DESC);
