-- Plugin state kept by the supervisor. `secrets` holds the plugin's secret settings encrypted at rest
-- (never returned by the API); `status` is the supervisor's last health report.
CREATE TABLE plugins (
    id         text PRIMARY KEY CHECK (id <> ''),
    enabled    boolean NOT NULL DEFAULT true,
    config     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    secrets    bytea,
    status     jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
