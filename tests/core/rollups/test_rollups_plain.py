"""Plain-PostgreSQL rollups against hand-computed numbers: counters with resets, late data, idempotence,
writers committing while the job runs, and the cost rollups."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from dbtest import PLAIN
from rollup_data import at, rollup_rows, write

from aetherlens.config import RetentionSettings
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.retention import RetentionJob
from aetherlens.db.rollups import RollupJob, mark_pending
from aetherlens.errors import ValidationError

DAY1 = [
    (at("2026-03-01T00:00:00"), "m1", "energy", 10.0),
    (at("2026-03-01T00:20:00"), "m1", "energy", 12.5),
    (at("2026-03-01T00:40:00"), "m1", "energy", 13.0),
    (at("2026-03-01T01:10:00"), "m1", "energy", 14.0),
    (at("2026-03-01T01:30:00"), "m1", "energy", 0.5),  # reset
    (at("2026-03-01T01:50:00"), "m1", "energy", 2.0),
    (at("2026-03-01T03:05:00"), "m1", "energy", 2.5),
    (at("2026-03-01T00:00:00"), "m1", "power", 100.0),
    (at("2026-03-01T00:30:00"), "m1", "power", 300.0),
    (at("2026-03-02T00:15:00"), "m1", "energy", 3.0),
]


@pytest.fixture
async def dsn(fresh_database) -> str:
    return await fresh_database()


@pytest.fixture
async def conn(dsn):
    connection = await asyncpg.connect(dsn)
    await apply_migrations(connection, PLAIN)
    yield connection
    await connection.close()


def values(row: dict, *columns: str) -> tuple:
    return tuple(row[c] for c in columns)


ALL = ("count", "sum", "min", "max", "first", "last", "increase")


async def test_hourly_and_daily_match_hand_computed_numbers(conn) -> None:
    await write(conn, DAY1)
    assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 4  # 00, 01, 03 on day 1; 00 day 2

    result = await RollupJob(PLAIN).run_once(conn)
    assert result.hours == [at("2026-03-01T00:00"), at("2026-03-01T01:00"), at("2026-03-01T03:00"),
                            at("2026-03-02T00:00")]  # fmt: skip
    assert result.days == [at("2026-03-01T00:00"), at("2026-03-02T00:00")]
    assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 0

    hourly = await rollup_rows(conn, "metrics_hourly")
    h0 = hourly[(at("2026-03-01T00:00"), "m1", "energy")]
    assert values(h0, *ALL) == (3, 35.5, 10.0, 13.0, 10.0, 13.0, 3.0)
    assert math.isclose(h0["avg"], 35.5 / 3)
    h1 = hourly[(at("2026-03-01T01:00"), "m1", "energy")]
    # 14 -> 0.5 is a reset: it adds 0.5 (counted since the reset), then 0.5 -> 2.0 adds 1.5.
    assert values(h1, *ALL) == (3, 16.5, 0.5, 14.0, 14.0, 2.0, 2.0)
    h3 = hourly[(at("2026-03-01T03:00"), "m1", "energy")]
    assert values(h3, *ALL) == (1, 2.5, 2.5, 2.5, 2.5, 2.5, 0.0)  # one sample: no increase
    power = hourly[(at("2026-03-01T00:00"), "m1", "power")]
    assert values(power, "avg", "count", "first", "last", "increase") == (200.0, 2, 100.0, 300.0, None)
    assert (at("2026-03-01T02:00"), "m1", "energy") not in hourly  # no samples, no row

    daily = await rollup_rows(conn, "metrics_daily")
    d1 = daily[(at("2026-03-01T00:00"), "m1", "energy")]
    # 10, 12.5, 13, 14, 0.5, 2, 2.5: 2.5 + 0.5 + 1 + 0.5 (reset) + 1.5 + 0.5 = 6.5
    assert values(d1, *ALL) == (7, 54.5, 0.5, 14.0, 10.0, 2.5, 6.5)
    assert math.isclose(d1["avg"], 54.5 / 7)
    d2 = daily[(at("2026-03-02T00:00"), "m1", "energy")]
    assert values(d2, "count", "first", "last", "increase") == (1, 3.0, 3.0, 0.0)


async def test_late_data_updates_exactly_its_old_bucket(conn) -> None:
    job = RollupJob(PLAIN)
    await write(conn, DAY1)
    await job.run_once(conn)
    before = await rollup_rows(conn, "metrics_hourly")

    # A replayed spool delivers a sample from long ago: a reset inside hour 00 of day 1.
    await write(conn, [(at("2026-03-01T00:50:00"), "m1", "energy", 1.0)])
    result = await job.run_once(conn)
    assert result.hours == [at("2026-03-01T00:00")] and result.days == [at("2026-03-01T00:00")]

    after = await rollup_rows(conn, "metrics_hourly")
    h0 = after[(at("2026-03-01T00:00"), "m1", "energy")]
    # 10, 12.5, 13, 1 (reset): 2.5 + 0.5 + 1.0
    assert values(h0, *ALL) == (4, 36.5, 1.0, 13.0, 10.0, 1.0, 4.0)
    unchanged = [k for k in before if k != (at("2026-03-01T00:00"), "m1", "energy")]
    assert all(after[k] == before[k] for k in unchanged)

    d1 = (await rollup_rows(conn, "metrics_daily"))[(at("2026-03-01T00:00"), "m1", "energy")]
    # 10, 12.5, 13, 1, 14, 0.5, 2, 2.5: 2.5 + 0.5 + 1 (reset) + 13 + 0.5 (reset) + 1.5 + 0.5 = 19.5
    assert values(d1, "count", "sum", "min", "last", "increase") == (8, 55.5, 0.5, 2.5, 19.5)


async def test_backfill_of_a_new_old_day_and_rerun_is_idempotent(conn) -> None:
    job = RollupJob(PLAIN, max_hours_per_run=2)
    await write(conn, DAY1)
    history = [(at("2025-06-01T12:00:00"), "m1", "energy", v) for v in (1.0,)] + [
        (at("2025-06-01T12:30:00"), "m1", "energy", 4.0),
        (at("2025-06-01T13:30:00"), "m1", "energy", 6.0),
    ]
    await write(conn, history)
    # Six pending hours, two per pass: run_until_idle loops.
    total = await job.run_until_idle(conn)
    assert len(total.hours) == 6
    daily = await rollup_rows(conn, "metrics_daily")
    old = daily[(at("2025-06-01T00:00"), "m1", "energy")]
    assert values(old, "count", "first", "last", "increase") == (3, 1.0, 6.0, 5.0)

    snapshot_hourly, snapshot_daily = await rollup_rows(conn, "metrics_hourly"), daily
    await mark_pending(conn, [at("2025-06-01T12:00"), at("2026-03-01T01:15"), at("2026-03-01T03:00")])
    await job.run_until_idle(conn)
    assert await rollup_rows(conn, "metrics_hourly") == snapshot_hourly
    assert await rollup_rows(conn, "metrics_daily") == snapshot_daily


async def test_a_writer_committing_during_the_job_is_not_lost(conn, dsn) -> None:
    job = RollupJob(PLAIN)
    hour = at("2026-03-01T05:00")
    await write(conn, [(at("2026-03-01T05:01:00"), "m1", "energy", 1.0)])
    writer = await asyncpg.connect(dsn)
    try:
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(
            "INSERT INTO metrics (time, device_id, metric_type, value) VALUES ($1, 'm1', 'energy', 4.0)",
            at("2026-03-01T05:30:00"),
        )
        await mark_pending(writer, [hour])  # re-marks (and locks) the existing pending row
        # The job does not wait for the writer and does not consume the hour it is still writing.
        first = await asyncio.wait_for(job.run_once(conn), timeout=60)
        assert hour not in first.hours
        await transaction.commit()
    finally:
        await writer.close()
    second = await job.run_once(conn)
    assert second.hours == [hour]
    row = (await rollup_rows(conn, "metrics_hourly"))[(hour, "m1", "energy")]
    assert values(row, "count", "last", "increase") == (2, 4.0, 3.0)


async def test_naive_times_are_refused(conn) -> None:
    with pytest.raises(ValidationError, match="no UTC offset"):
        await mark_pending(conn, [datetime(2026, 3, 1, 5)])
    assert await mark_pending(conn, [datetime(2026, 3, 1, 5, 59, tzinfo=UTC)]) == 1
    assert await conn.fetchval("SELECT bucket FROM rollup_pending") == at("2026-03-01T05:00")


async def test_late_data_older_than_raw_retention_keeps_the_rollup(conn) -> None:
    old = (datetime.now(UTC) - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    await write(conn, [(old + timedelta(minutes=m), "m1", "energy", float(m)) for m in range(0, 60, 10)])
    await RollupJob(PLAIN).run_once(conn)
    before = await rollup_rows(conn, "metrics_hourly")
    assert before[(old, "m1", "energy")]["count"] == 6
    await RetentionJob(PLAIN, RetentionSettings(raw_days=30)).run_once(conn)
    assert await conn.fetchval("SELECT count(*) FROM metrics") == 0

    # A replay brings one more sample of that hour: rebuilding it from raw would leave count 1.
    await write(conn, [(old + timedelta(minutes=55), "m1", "energy", 55.0)])
    result = await RollupJob(PLAIN, raw_retention_days=30).run_once(conn)
    assert result.skipped == [old] and result.hours == [] and result.days == []
    assert await rollup_rows(conn, "metrics_hourly") == before
    assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 0


async def test_a_bucket_that_cannot_be_aggregated_fails_alone(conn) -> None:
    from prometheus_client import REGISTRY

    def failures(width: str) -> float:
        return REGISTRY.get_sample_value("aetherlens_rollup_failures_total", {"width": width}) or 0.0

    hour_failures = failures("hour")
    # Written straight into metrics (ingest now refuses it): avg() sums squares, 1e200² overflows.
    await write(
        conn,
        [
            (at("2026-03-01T00:10:00"), "big", "power", 1e200),
            (at("2026-03-01T00:20:00"), "big", "power", 1.0),
            (at("2026-03-01T00:10:00"), "ok1", "power", 100.0),
            (at("2026-03-01T00:20:00"), "ok1", "power", 300.0),
            (at("2026-03-01T01:10:00"), "big", "power", 5.0),  # another hour of the same series
            (at("2026-03-01T01:10:00"), "ok2", "energy", 7.0),
        ],
    )
    job = RollupJob(PLAIN)
    result = await job.run_until_idle(conn)  # before: NumericValueOutOfRangeError, nothing rolled up

    from aetherlens.db.rollups import rollup_failures

    assert result.hours == [at("2026-03-01T00:00"), at("2026-03-01T01:00")]
    assert [(f["width"], f["bucket"], f["device_id"]) for f in result.failed] == [
        ("hour", at("2026-03-01T00:00").isoformat(), "big"),
        ("day", at("2026-03-01T00:00").isoformat(), "big"),
    ]
    assert "out of range" in result.failed[0]["error"]
    assert failures("hour") == hour_failures + 1
    assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 0

    hourly = await rollup_rows(conn, "metrics_hourly")
    assert set(hourly) == {
        (at("2026-03-01T00:00"), "ok1", "power"),
        (at("2026-03-01T01:00"), "big", "power"),
        (at("2026-03-01T01:00"), "ok2", "energy"),
    }
    assert hourly[(at("2026-03-01T00:00"), "ok1", "power")]["avg"] == 200.0
    daily = await rollup_rows(conn, "metrics_daily")
    # The day of 'big' would miss an hour: left out (and reported), the others are complete.
    assert set(daily) == {(at("2026-03-01T00:00"), "ok1", "power"), (at("2026-03-01T00:00"), "ok2", "energy")}
    recorded = await rollup_failures(conn)
    assert {(f["width"], f["device_id"], f["metric_type"]) for f in recorded} == {
        ("hour", "big", "power"),
        ("day", "big", "power"),
    }

    # New data keeps being rolled up while the failure stands.
    await write(conn, [(at("2026-03-01T02:10:00"), "ok1", "power", 50.0)])
    result = await job.run_until_idle(conn)
    assert at("2026-03-01T02:00") in result.hours
    assert (at("2026-03-01T02:00"), "ok1", "power") in await rollup_rows(conn, "metrics_hourly")
    assert len(await rollup_failures(conn)) == 2, "still failing: still reported"

    # The operator deletes the row by hand (no new write marks the hour): the next pass retries the
    # recorded buckets, and the failure clears.
    await conn.execute("DELETE FROM metrics WHERE value > 1e100")
    result = await job.run_until_idle(conn)
    assert result.failed == []
    assert await rollup_failures(conn) == []
    hourly = await rollup_rows(conn, "metrics_hourly")
    assert hourly[(at("2026-03-01T00:00"), "big", "power")]["count"] == 1
    daily = await rollup_rows(conn, "metrics_daily")
    assert daily[(at("2026-03-01T00:00"), "big", "power")]["count"] == 2
