-- Daily cloud spend (actual and forecast) written by the cloud-cost plugins. Plugins upsert with
--     ON CONFLICT ON CONSTRAINT cloud_costs_key DO UPDATE ...
-- NULLS NOT DISTINCT (PostgreSQL 15+) makes a row without, say, a resource group still one key.
CREATE TABLE cloud_costs (
    day            date NOT NULL,
    provider       text NOT NULL CHECK (provider <> ''),
    account        text,
    service        text,
    resource_group text,
    region         text,
    amount         numeric NOT NULL,
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    kind           text NOT NULL DEFAULT 'actual' CHECK (kind IN ('actual', 'forecast')),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cloud_costs_key
        UNIQUE NULLS NOT DISTINCT (day, provider, account, service, resource_group, region, kind)
);

-- One provider over a range of days.
CREATE INDEX cloud_costs_provider_day_idx ON cloud_costs (provider, day);
