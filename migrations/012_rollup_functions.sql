-- Functions shared by both rollup paths (continuous aggregates on TimescaleDB, tables kept by the rollup
-- job on plain PostgreSQL), so both compute the same numbers.

-- Metric types that are cumulative counters (CONTRACT.md vocabulary: energy, energy_exported). Immutable
-- because continuous aggregates accept only immutable functions; a new counter type needs a migration
-- that replaces this function (and a refresh of the rollups).
CREATE FUNCTION aetherlens_is_counter(metric_type text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN metric_type IN ('energy', 'energy_exported');

-- Reset-aware increase of a counter inside one bucket.
-- The samples (times[i], vals[i]) are put in (time, value) order; every consecutive pair adds
--     v_i - v_{i-1}   when v_i >= v_{i-1}
--     v_i             when v_i <  v_{i-1}   (the counter was reset to 0 and has counted v_i since)
-- A bucket with a single sample adds 0. Energy between the last sample of one bucket and the first of the
-- next belongs to neither bucket (it is next.first - previous.last when no reset happened in between).
-- Takes arrays rather than being an aggregate with ORDER BY because continuous aggregates allow neither
-- ordered aggregates nor window functions; array_agg is linear, and sorting here is n log n.
CREATE FUNCTION aetherlens_counter_increase(times timestamptz[], vals double precision[])
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(sum(CASE WHEN delta >= 0 THEN delta ELSE v END), 0)
    FROM (
        SELECT v, v - lag(v) OVER (ORDER BY t, v) AS delta
        FROM unnest(times, vals) AS s (t, v)
        WHERE t IS NOT NULL AND v IS NOT NULL
    ) AS pairs
    WHERE delta IS NOT NULL
$$;
