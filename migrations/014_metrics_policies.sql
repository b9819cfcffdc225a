-- requires: timescaledb-tsl
-- Compression of raw chunks older than 7 days, segmented by series, and 90 days of raw retention. The
-- core re-applies the configured retention (settings.retention) at every start; on plain PostgreSQL the
-- retention job deletes in bounded batches instead, so this step has no plain twin.
ALTER TABLE metrics SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric_type',
    timescaledb.compress_orderby = 'time DESC'
);

SELECT add_compression_policy('metrics', compress_after => INTERVAL '7 days');
SELECT add_retention_policy('metrics', drop_after => INTERVAL '90 days');
