-- requires: plain
-- cost_hourly / cost_daily are rebuilt by 032 as tables the cost engine keeps on every storage path:
-- cost_daily's days are the tariff's local days, which a continuous aggregate cannot bucket by.
DROP TABLE cost_hourly;
DROP TABLE cost_daily;
