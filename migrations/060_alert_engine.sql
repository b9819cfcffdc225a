-- The alert engine's tables (owner: core/aetherlens/db/queries/alerts.py).
--
-- alerts.source / config_key: rules declared in the YAML configuration (`alerts.rules`) are upserted at
-- start by their name and removed when they leave the file; rules made through the API keep source 'api'.
ALTER TABLE alerts
    ADD COLUMN source     text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    ADD COLUMN config_key text UNIQUE;

-- What ended an event (the resolving value and its reason), next to what started it.
ALTER TABLE alert_events
    ADD COLUMN resolved_value   double precision,
    ADD COLUMN resolved_message text;

-- Only one open (unresolved) event per rule and series: a restart can never open a second one.
CREATE UNIQUE INDEX alert_events_one_open_idx
    ON alert_events (alert_id, coalesce(device_id, '')) WHERE resolved_at IS NULL;

-- Every transition (firing, resolved, acknowledged) as it was published: `data` is the stream's
-- `alerts` message data (IFACE "Alert stream / events"), so a webhook gets the same object.
CREATE TABLE alert_transitions (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    state    text NOT NULL CHECK (state IN ('firing', 'resolved', 'acknowledged')),
    time     timestamptz NOT NULL,
    data     jsonb NOT NULL
);

CREATE INDEX alert_transitions_event_idx ON alert_transitions (event_id, id);

-- The webhook outbox: one row per (transition, target URL), written in the transition's transaction,
-- so a transition is never lost and a dead endpoint only ever delays its own rows.
CREATE TABLE alert_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transition_id   bigint NOT NULL REFERENCES alert_transitions (id) ON DELETE CASCADE,
    url             text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text,
    UNIQUE (transition_id, url)
);

CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
