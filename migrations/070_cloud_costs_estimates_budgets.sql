-- Cloud costs from the cost plugins (owner: core/aetherlens/db/queries/cloud_costs.py, written through
-- core/aetherlens/collect/cloud_costs.py).
--
-- estimated: an actual the provider has not finalised (today so far, or a day it still revises).
ALTER TABLE cloud_costs
    ADD COLUMN estimated boolean NOT NULL DEFAULT false;

-- One account's month (summary and alerts): provider + account + a day range.
CREATE INDEX cloud_costs_provider_account_day_idx ON cloud_costs (provider, account, day);

-- The monthly budget configured per account in a cost plugin's settings (plugins.<id>.config.budget),
-- reported by that plugin instance (`source`) with every report; the alert engine's cloud_budget rule
-- and GET /cloud-costs/summary read it. A report's budgets replace those its instance stored before.
CREATE TABLE cloud_budgets (
    provider   text NOT NULL CHECK (provider <> ''),
    account    text NOT NULL CHECK (account <> ''),
    amount     numeric NOT NULL CHECK (amount >= 0),
    currency   text CHECK (currency ~ '^[A-Z]{3}$'),  -- NULL: the currency of the account's records
    source     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account)
);

CREATE INDEX cloud_budgets_source_idx ON cloud_budgets (source);
