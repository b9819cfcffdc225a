"""Plain-PostgreSQL retention: only rows older than the configured age go, in bounded batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from dbtest import PLAIN

from aetherlens.config import RetentionSettings
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.retention import RetentionJob, apply_retention_settings

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


async def test_deletes_only_expired_rows_in_batches(fresh_database) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await apply_migrations(conn, PLAIN)
        old_raw = [(NOW - timedelta(days=91, minutes=i), "d", "power", float(i)) for i in range(23)]
        kept_raw = [(NOW - timedelta(days=89, minutes=i), "d", "power", float(i)) for i in range(5)]
        await conn.executemany(
            "INSERT INTO metrics (time, device_id, metric_type, value) VALUES ($1, $2, $3, $4)",
            old_raw + kept_raw,
        )
        rollup = "INSERT INTO {} (bucket, device_id, metric_type, count) VALUES ($1, 'd', 'power', 1)"
        for days in (366, 400, 364):
            await conn.execute(rollup.format("metrics_hourly"), NOW - timedelta(days=days))
        for days in (1826, 1000):
            await conn.execute(rollup.format("metrics_daily"), NOW - timedelta(days=days))
        cost = (
            "INSERT INTO {} (bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count)"
            " VALUES ($1, 'd', 't', 0, 0, 0, false, 1)"
        )
        await conn.execute(cost.format("cost_hourly"), NOW - timedelta(days=370))
        await conn.execute(cost.format("cost_daily"), NOW - timedelta(days=30))
        await conn.execute(
            "INSERT INTO cost_calculations (time, device_id, tariff_id, kwh, cost) "
            "VALUES ($1, 'd', 't', 1, 1)",
            NOW.replace(minute=0) - timedelta(days=4000),
        )
        # Writer batch ids (exactly-once replay guard): kept as long as raw metrics.
        await conn.executemany(
            "INSERT INTO ingest_batches (batch_id, row_count, committed_at)"
            " VALUES (gen_random_uuid(), 1, $1)",
            [(NOW - timedelta(days=95),), (NOW - timedelta(days=91),), (NOW - timedelta(days=1),)],
        )

        # Batches of 5 rows: 23 expired raw rows need five DELETE statements.
        job = RetentionJob(PLAIN, RetentionSettings(), batch_size=5)
        removed = await job.run_once(conn, now=NOW)
        assert removed == {
            "ingest_batches": 2,
            "metrics": 23,
            "metrics_hourly": 2,
            "metrics_daily": 1,
            "cost_hourly": 1,
            "cost_daily": 0,
        }
        remaining = await conn.fetch("SELECT time FROM metrics ORDER BY time")
        assert [r["time"] for r in remaining] == sorted(r[0] for r in kept_raw)
        assert await conn.fetchval("SELECT min(bucket) FROM metrics_hourly") == NOW - timedelta(days=364)
        assert await conn.fetchval("SELECT count(*) FROM metrics_daily") == 1
        # Billing history is never expired.
        assert await conn.fetchval("SELECT count(*) FROM cost_calculations") == 1
        assert await conn.fetchval("SELECT count(*) FROM ingest_batches") == 1

        # A second pass finds nothing; a shorter configured age is honoured.
        assert set((await job.run_once(conn, now=NOW)).values()) == {0}
        shorter = RetentionJob(PLAIN, RetentionSettings(raw_days=30), batch_size=5)
        assert (await shorter.run_once(conn, now=NOW))["metrics"] == 5
        # Nothing to set up on plain PostgreSQL: the job reads the settings each pass.
        assert await apply_retention_settings(conn, PLAIN, RetentionSettings(raw_days=7)) == []
    finally:
        await conn.close()
