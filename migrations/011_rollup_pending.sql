-- Hour buckets (UTC) touched by writes since the rollup job last ran. Writers insert them in the same
-- transaction as the data with
--     INSERT INTO rollup_pending (bucket) VALUES (...) ON CONFLICT (bucket) DO UPDATE SET marked_at = now()
-- (DO UPDATE, not DO NOTHING: it locks an existing row, so the job cannot consume the mark while the
-- writer's rows are still uncommitted). The job re-aggregates exactly these hours and their days.
CREATE TABLE rollup_pending (
    bucket    timestamptz PRIMARY KEY CHECK (bucket = date_trunc('hour', bucket, 'UTC')),
    marked_at timestamptz NOT NULL DEFAULT now()
);
