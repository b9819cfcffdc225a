-- Batch ids committed by the writer, recorded in the COPY's transaction: a replayed spool batch whose id
-- is already here was committed before and is skipped (exactly-once replay).
CREATE TABLE ingest_batches (
    batch_id     uuid PRIMARY KEY,
    row_count    integer NOT NULL CHECK (row_count >= 0),
    committed_at timestamptz NOT NULL DEFAULT now()
);

-- Pruning old ids.
CREATE INDEX ingest_batches_committed_idx ON ingest_batches (committed_at);
