-- requires: timescaledb-tsl
-- cost_hourly / cost_daily are rebuilt by 032 as tables the cost engine keeps on every storage path:
-- cost_daily's days are the tariff's local days (per tariff zone), which a continuous aggregate cannot
-- bucket by. Retention of the new tables is the retention job's batched delete (aetherlens.db.retention).
-- The policies go first: removing a job waits for a run in progress to finish, and it must not wait
-- while this transaction holds the views' locks the run needs (that deadlocks).
SELECT remove_retention_policy('cost_daily', if_exists => true);
SELECT remove_retention_policy('cost_hourly', if_exists => true);
SELECT remove_continuous_aggregate_policy('cost_daily', if_exists => true);
SELECT remove_continuous_aggregate_policy('cost_hourly', if_exists => true);
DROP MATERIALIZED VIEW cost_daily;
DROP MATERIALIZED VIEW cost_hourly;
