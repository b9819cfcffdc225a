"""Series and current-value queries against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from aetherlens.db.queries import metrics as q
from aetherlens.errors import ValidationError

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def _raw(pool: asyncpg.Pool, device: str, minutes: int, start: datetime = T0) -> None:
    """One power reading per minute; value = minute index, so every point is checkable."""
    await pool.execute(
        """
        INSERT INTO metrics (time, device_id, metric_type, value, unit)
        SELECT $2::timestamptz + make_interval(mins => i), $1, 'power', i, 'W'
        FROM generate_series(0, $3 - 1) AS i
        """,
        device,
        start,
        minutes,
    )


async def _rollup(pool: asyncpg.Pool, table: str, device: str, buckets: list[datetime]) -> None:
    for n, bucket in enumerate(buckets):
        await pool.execute(
            f"""
            INSERT INTO {table}
              (bucket, device_id, metric_type, avg, min, max, sum, count, first, last, increase)
            SELECT $1, $2, 'power', v, v - 1, v + 1, v * 10, 10, v - 2, v + 2, NULL
            FROM (SELECT $3::float8 AS v) AS s
            """,
            bucket,
            device,
            float(n * 100),
        )


def test_auto_resolution_thresholds() -> None:
    assert q.choose_resolution(T0, T0 + timedelta(days=2), "auto") == "raw"
    assert q.choose_resolution(T0, T0 + timedelta(days=2, seconds=1), "auto") == "hour"
    assert q.choose_resolution(T0, T0 + timedelta(days=60), "auto") == "hour"
    assert q.choose_resolution(T0, T0 + timedelta(days=60, seconds=1), "auto") == "day"
    assert q.choose_resolution(T0, T0 + timedelta(days=365), "raw") == "raw"


def test_range_checks_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="'from' must be earlier than 'to'"):
        q.check_range(T0, T0)
    with pytest.raises(ValidationError, match="'to' needs a UTC offset"):
        q.check_range(T0, datetime(2026, 3, 2))


async def test_raw_points_in_half_open_range_in_order(pool: asyncpg.Pool) -> None:
    await _raw(pool, "d1", 120)
    await _raw(pool, "d2", 120)
    series = await q.query_series(pool, "d1", "power", T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert series.resolution == "raw"
    assert series.unit == "W"
    assert [v for _, v in series.points] == [float(i) for i in range(10, 20)]
    assert series.points[0][0] == T0 + timedelta(minutes=10)
    assert series.points[0][0].utcoffset() is not None


async def test_raw_range_in_another_offset_is_the_same_instant(pool: asyncpg.Pool) -> None:
    await _raw(pool, "d1", 60)
    plus2 = timezone(timedelta(hours=2))
    start = (T0 + timedelta(minutes=5)).astimezone(plus2)
    series = await q.query_series(pool, "d1", "power", start, start + timedelta(minutes=3), resolution="raw")
    assert [v for _, v in series.points] == [5.0, 6.0, 7.0]


@pytest.mark.parametrize(("agg", "offset"), [("avg", 0.0), ("min", -1.0), ("max", 1.0), ("last", 2.0)])
async def test_hourly_aggregates_read_the_matching_column(
    pool: asyncpg.Pool, agg: q.Aggregate, offset: float
) -> None:
    hours = [T0 + timedelta(hours=h) for h in range(5)]
    await _rollup(pool, "metrics_hourly", "d1", hours)
    series = await q.query_series(pool, "d1", "power", hours[1], hours[4], resolution="hour", agg=agg)
    assert series.resolution == "hour"
    assert series.points == [(hours[i], i * 100 + offset) for i in (1, 2, 3)]


async def test_hourly_sum_and_partial_bucket_overlap(pool: asyncpg.Pool) -> None:
    hours = [T0 + timedelta(hours=h) for h in range(4)]
    await _rollup(pool, "metrics_hourly", "d1", hours)
    # From 01:30 to 02:30 overlaps the 01:00 and 02:00 buckets only.
    series = await q.query_series(
        pool,
        "d1",
        "power",
        hours[1] + timedelta(minutes=30),
        hours[2] + timedelta(minutes=30),
        resolution="hour",
        agg="sum",
    )
    assert series.points == [(hours[1], 1000.0), (hours[2], 2000.0)]


async def test_auto_reads_daily_rollups_for_long_ranges(pool: asyncpg.Pool) -> None:
    days = [T0 + timedelta(days=d) for d in range(100)]
    await _rollup(pool, "metrics_daily", "d1", days)
    await _rollup(pool, "metrics_hourly", "d1", [T0])  # must not be read
    series = await q.query_series(pool, "d1", "power", T0, T0 + timedelta(days=90))
    assert series.resolution == "day"
    assert len(series.points) == 90
    assert series.points[-1] == (days[89], 8900.0)


async def test_auto_reads_hourly_for_a_week(pool: asyncpg.Pool) -> None:
    hours = [T0 + timedelta(hours=h) for h in range(24 * 7)]
    await _rollup(pool, "metrics_hourly", "d1", hours)
    await _raw(pool, "d1", 10)  # must not be read
    series = await q.query_series(pool, "d1", "power", T0, T0 + timedelta(days=7), agg="max")
    assert series.resolution == "hour"
    assert len(series.points) == 24 * 7
    assert series.points[3] == (hours[3], 301.0)


async def test_unknown_series_is_empty_with_no_unit(pool: asyncpg.Pool) -> None:
    series = await q.query_series(pool, "d1", "humidity", T0, T0 + timedelta(hours=1))
    assert series.points == []
    assert series.unit is None


async def test_plugin_type_takes_its_unit_from_latest(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO metrics_latest (device_id, metric_type, time, value, unit) "
        "VALUES ('d1', 'humidity', $1, 40, '%')",
        T0,
    )
    series = await q.query_series(pool, "d1", "humidity", T0, T0 + timedelta(hours=1))
    assert series.unit == "%"


async def test_current_values_come_from_metrics_latest(pool: asyncpg.Pool) -> None:
    # Only metrics_latest holds rows: the answer cannot have come from a scan of `metrics`.
    rows = [
        ("b", "power", T0, 12.5, "W"),
        ("a", "power", T0 + timedelta(seconds=1), 3.0, "W"),
        ("a", "energy", T0, 100.25, "kWh"),
    ]
    await pool.executemany(
        "INSERT INTO metrics_latest (device_id, metric_type, time, value, unit) VALUES ($1, $2, $3, $4, $5)",
        rows,
    )
    current = await q.current_values(pool)
    assert list(current) == ["a", "b"]
    assert [(v.metric_type, v.value, v.unit) for v in current["a"]] == [
        ("energy", 100.25, "kWh"),
        ("power", 3.0, "W"),
    ]
    assert current["b"][0].time == T0
    assert await pool.fetchval("SELECT count(*) FROM metrics") == 0
