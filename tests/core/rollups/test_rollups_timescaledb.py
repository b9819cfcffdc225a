"""Both storage paths give the same rollup numbers for the same data, backfill included.

The plain path runs on the machine's server, the TimescaleDB path (continuous aggregates refreshed over
the pending ranges) on the session's throwaway cluster. Skipped where TimescaleDB is not installed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from dbtest import PLAIN, pause_scheduled_jobs
from rollup_data import assert_same as assert_same_rows
from rollup_data import at, rollup_rows, synthetic, write

from aetherlens.config import RetentionSettings
from aetherlens.db.retention import apply_retention_settings
from aetherlens.db.rollups import RollupJob, mark_pending

pytestmark = pytest.mark.timescaledb

START = at("2026-01-10T00:00:00")


async def compare(plain: asyncpg.Connection, tsdb: asyncpg.Connection) -> dict:
    hourly = await rollup_rows(tsdb, "metrics_hourly")
    assert hourly, "the continuous aggregate materialized nothing"
    assert_same_rows(await rollup_rows(plain, "metrics_hourly"), hourly)
    daily = await rollup_rows(tsdb, "metrics_daily")
    assert_same_rows(await rollup_rows(plain, "metrics_daily"), daily)
    return {"hourly": hourly, "daily": daily}


async def test_same_numbers_on_both_paths_backfill_included(both_paths) -> None:
    plain, tsdb, caps = both_paths
    rows = synthetic(START, 72)
    for conn in (plain, tsdb):
        await write(conn, rows)
    plain_job, tsdb_job = RollupJob(PLAIN), RollupJob(caps)
    assert tsdb_job.continuous_aggregates and not plain_job.continuous_aggregates
    done_plain = await plain_job.run_until_idle(plain)
    done_tsdb = await tsdb_job.run_until_idle(tsdb)
    assert done_plain.hours == done_tsdb.hours and len(done_tsdb.hours) == 72
    first = await compare(plain, tsdb)
    assert len(first["daily"]) == 3 * 6  # 3 days x (3 power + 3 counter series)
    increases = [r["increase"] for r in first["daily"].values() if r["increase"] is not None]
    assert len(increases) == 9 and all(i > 0 for i in increases)

    # Compress the old chunks, then backfill into them: a reset inside an existing hour, samples that
    # fill the daily hour without samples, and a whole day before anything else.
    compression = await tsdb.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
    )
    await tsdb.execute("CALL run_job($1)", compression)
    assert await tsdb.fetchval(
        "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'metrics'"
    )
    late = [
        (START + timedelta(hours=5, minutes=33, seconds=7), "meter", "energy", 0.25),
        (START + timedelta(hours=10, minutes=12), "plug-1", "power", 42.0),
        (START + timedelta(hours=10, minutes=48), "plug-1", "energy", 101.0),
        *synthetic(START - timedelta(days=30), 5),
    ]
    for conn in (plain, tsdb):
        await write(conn, late)
    assert len((await plain_job.run_until_idle(plain)).hours) == 2 + 5
    assert len((await tsdb_job.run_until_idle(tsdb)).hours) == 2 + 5
    second = await compare(plain, tsdb)

    reset_hour = (START + timedelta(hours=5), "meter", "energy")
    assert second["hourly"][reset_hour]["count"] == first["hourly"][reset_hour]["count"] + 1
    assert second["hourly"][reset_hour]["increase"] != first["hourly"][reset_hour]["increase"]
    assert (START + timedelta(hours=10), "plug-1", "power") in second["hourly"]
    assert (START - timedelta(days=30), "meter", "energy") in second["daily"]
    for conn in (plain, tsdb):
        assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 0


async def test_open_day_is_refreshed_at_most_every_interval(both_paths) -> None:
    _, tsdb, caps = both_paths
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    this_hour = now.replace(minute=0, second=0)
    job = RollupJob(caps, open_day_refresh_interval=3600)

    await write(tsdb, [(this_hour, "meter", "energy", 1.0)])
    assert (await job.run_once(tsdb)).days == [today]
    await write(tsdb, [(this_hour + timedelta(seconds=1), "meter", "energy", 2.0)])
    second = await job.run_once(tsdb)
    assert second.hours == [this_hour] and second.days == []  # the hour now, the open day later
    hourly = (await rollup_rows(tsdb, "metrics_hourly"))[(this_hour, "meter", "energy")]
    daily = (await rollup_rows(tsdb, "metrics_daily"))[(today, "meter", "energy")]
    assert (hourly["count"], daily["count"]) == (2, 1)

    # A job that may refresh the open day right away (or the next interval) catches up from
    # TimescaleDB's invalidation log.
    await mark_pending(tsdb, [this_hour])
    assert (await RollupJob(caps, open_day_refresh_interval=0).run_once(tsdb)).days == [today]
    daily = (await rollup_rows(tsdb, "metrics_daily"))[(today, "meter", "energy")]
    assert (daily["count"], daily["increase"]) == (2, 1.0)


async def test_late_data_older_than_raw_retention_keeps_the_aggregate(both_paths) -> None:
    _, tsdb, caps = both_paths
    old = (datetime.now(UTC) - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    await write(tsdb, [(old + timedelta(minutes=m), "m1", "energy", float(m)) for m in range(0, 60, 10)])
    await RollupJob(caps).run_once(tsdb)
    assert (await rollup_rows(tsdb, "metrics_hourly"))[(old, "m1", "energy")]["count"] == 6
    await apply_retention_settings(tsdb, caps, RetentionSettings(raw_days=30))
    # Only this test's run_job may apply the new policy: a scheduled run racing the assertions below
    # would delete the late row too.
    await pause_scheduled_jobs(tsdb)
    job_id = await tsdb.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_retention' AND hypertable_name = 'metrics'"
    )
    await tsdb.execute("CALL run_job($1)", job_id)
    assert await tsdb.fetchval("SELECT count(*) FROM metrics") == 0

    await write(tsdb, [(old + timedelta(minutes=55), "m1", "energy", 55.0)])
    result = await RollupJob(caps, raw_retention_days=30).run_once(tsdb)
    assert result.skipped == [old] and result.hours == []
    assert (await rollup_rows(tsdb, "metrics_hourly"))[(old, "m1", "energy")]["count"] == 6
    # Without the guard the refresh would rebuild the hour from the one late row.
    await mark_pending(tsdb, [old])
    await RollupJob(caps).run_once(tsdb)
    assert (await rollup_rows(tsdb, "metrics_hourly"))[(old, "m1", "energy")]["count"] == 1


async def test_a_bucket_that_cannot_be_aggregated_fails_alone_on_timescaledb(both_paths) -> None:
    from aetherlens.db.rollups import rollup_failures

    _, tsdb, caps = both_paths
    # Written straight into metrics (ingest refuses it): the refresh of its hour overflows in avg().
    await write(
        tsdb,
        [
            (at("2026-03-01T00:10:00"), "big", "power", 1e200),
            (at("2026-03-01T00:20:00"), "big", "power", 1.0),  # a second sample: avg() squares them
            (at("2026-03-01T00:20:00"), "ok1", "power", 100.0),
            (at("2026-03-01T01:10:00"), "ok1", "power", 300.0),
            (at("2026-03-02T01:10:00"), "ok2", "energy", 7.0),
        ],
    )
    job = RollupJob(caps, open_day_refresh_interval=0)
    result = await job.run_until_idle(tsdb)
    # TimescaleDB materializes a refresh window whole, and a neighbouring hour whose refresh reaches the
    # same invalidated range fails with it (reported without a series, "*"); the failing series is
    # named, and buckets elsewhere (the next day) are materialized.
    failed = {(f["width"], f["bucket"], f["device_id"]) for f in result.failed}
    assert ("hour", at("2026-03-01T00:00").isoformat(), "big") in failed
    assert all(f["bucket"].startswith("2026-03-01") for f in result.failed)
    assert await tsdb.fetchval("SELECT count(*) FROM rollup_pending") == 0
    hourly = await rollup_rows(tsdb, "metrics_hourly")
    assert (at("2026-03-02T01:00"), "ok2", "energy") in hourly
    assert (at("2026-03-01T00:00"), "big", "power") not in hourly
    assert len(await rollup_failures(tsdb)) == len(result.failed)

    await tsdb.execute("DELETE FROM metrics WHERE value > 1e100")
    result = await job.run_until_idle(tsdb)
    assert result.failed == [] and await rollup_failures(tsdb) == []
    hourly = await rollup_rows(tsdb, "metrics_hourly")
    assert (at("2026-03-01T00:00"), "ok1", "power") in hourly
    assert (at("2026-03-01T01:00"), "ok1", "power") in hourly
    assert hourly[(at("2026-03-01T00:00"), "big", "power")]["count"] == 1
