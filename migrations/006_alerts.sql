-- Alert rules and the events they raise.
CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL CHECK (name <> ''),
    enabled          boolean NOT NULL DEFAULT true,
    device_id        text REFERENCES devices (id) ON DELETE CASCADE,
    metric_type      text,
    condition        jsonb NOT NULL CHECK (jsonb_typeof(condition) = 'object'),
    severity         text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    notify           jsonb NOT NULL DEFAULT '[]'::jsonb,
    cooldown_seconds integer NOT NULL DEFAULT 300 CHECK (cooldown_seconds >= 0),
    state            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alert_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    device_id       text,
    triggered_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    severity        text NOT NULL,
    value           double precision,
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    acknowledged_at timestamptz,
    acknowledged_by text
);

CREATE INDEX alert_events_triggered_idx ON alert_events (triggered_at DESC);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, triggered_at DESC);
CREATE INDEX alert_events_open_idx ON alert_events (triggered_at DESC) WHERE acknowledged_at IS NULL;
