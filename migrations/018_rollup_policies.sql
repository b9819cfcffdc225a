-- requires: timescaledb-tsl
-- Refresh policies for the continuous aggregates (the recent past; older late data is refreshed by the
-- rollup job from rollup_pending) and retention of the rollups: 1 year hourly, 5 years daily. The core
-- re-applies the configured retention (settings.retention) at every start.
SELECT add_continuous_aggregate_policy('metrics_hourly',
    start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('metrics_daily',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');
SELECT add_continuous_aggregate_policy('cost_hourly',
    start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('cost_daily',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');

SELECT add_retention_policy('metrics_hourly', drop_after => INTERVAL '365 days');
SELECT add_retention_policy('metrics_daily', drop_after => INTERVAL '1825 days');
SELECT add_retention_policy('cost_hourly', drop_after => INTERVAL '365 days');
SELECT add_retention_policy('cost_daily', drop_after => INTERVAL '1825 days');
