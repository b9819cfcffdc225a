"""The TimescaleDB variant of the schema, on a throwaway managed cluster that preloads timescaledb.

Skipped (with the reason) where the extension is not installed. Policies are exercised with
``CALL run_job`` (TimescaleDB 2.22 on PostgreSQL 15.20 fails *scheduled* jobs, see issue 2).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest
from dbtest import PLAIN, migrate, pause_scheduled_jobs

from aetherlens.config import RetentionSettings
from aetherlens.db.capabilities import probe
from aetherlens.db.jobs_health import timescaledb_job_health
from aetherlens.db.migrations import apply_migrations, migration_status
from aetherlens.db.retention import RetentionJob, apply_retention_settings
from aetherlens.errors import CapabilityChangedError

pytestmark = pytest.mark.timescaledb


async def policies(conn: asyncpg.Connection) -> dict[tuple[str, str], dict]:
    rows = await conn.fetch(
        "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
        "WHERE hypertable_name IS NOT NULL"
    )
    return {(r["proc_name"], r["hypertable_name"]): r["config"] for r in rows}


async def test_timescaledb_schema_has_hypertables_caggs_compression_and_policies(fresh_timescaledb) -> None:
    conn = await asyncpg.connect(await fresh_timescaledb())
    try:
        caps = await probe(conn)
        assert caps.timescaledb and caps.timescaledb_tsl
        applied = await apply_migrations(conn, caps)
        assert "008_metrics_timescaledb.sql" in applied and "008_metrics_plain.sql" not in applied
        assert "013_metrics_rollups_timescaledb.sql" in applied and "018_rollup_policies.sql" in applied
        assert await apply_migrations(conn, caps) == []
        state = dict(await conn.fetch("SELECT key, value FROM core_state"))
        assert (state["storage_mode"], state["rollup_mode"]) == ("timescaledb", "continuous_aggregates")
        states = {s.name: s.state for s in await migration_status(conn, caps)}
        assert (
            states["008_metrics_plain.sql"] == "not_applicable"
            and states["014_metrics_policies.sql"] == "applied"
        )

        chunk = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'metrics'"
        )
        assert chunk == timedelta(days=1)
        rows = await conn.fetch(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        )
        caggs = {r["view_name"]: r["materialized_only"] for r in rows}
        # The cost rollups are tables the cost engine keeps (local days per tariff zone), not aggregates.
        assert caggs == {"metrics_hourly": True, "metrics_daily": True}
        segmentby = await conn.fetch(
            "SELECT attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = 'metrics' AND segmentby_column_index IS NOT NULL "
            "ORDER BY segmentby_column_index"
        )
        assert [r["attname"] for r in segmentby] == ["device_id", "metric_type"]

        jobs = await policies(conn)

        def cfg(key: tuple[str, str]) -> dict:
            value = jobs[key]
            return json.loads(value) if isinstance(value, str) else value

        assert cfg(("policy_compression", "metrics"))["compress_after"] == "7 days"
        assert cfg(("policy_retention", "metrics"))["drop_after"] == "90 days"
        assert cfg(("policy_retention", "metrics_hourly"))["drop_after"] == "365 days"
        assert cfg(("policy_retention", "metrics_daily"))["drop_after"] == "1825 days"
        for view in ("metrics_hourly", "metrics_daily"):
            assert ("policy_refresh_continuous_aggregate", view) in jobs
        assert not any(name.startswith("cost_") for _, name in jobs)  # their policies went with 031

        # Configured retention is re-applied at start: changed where it differs, untouched otherwise.
        custom = RetentionSettings(raw_days=30, hourly_days=365, daily_days=1000)
        assert await apply_retention_settings(conn, caps, custom) == ["metrics", "metrics_daily"]
        assert await apply_retention_settings(conn, caps, custom) == []
        jobs = await policies(conn)
        assert cfg(("policy_retention", "metrics"))["drop_after"] == "30 days"
        assert cfg(("policy_retention", "metrics_daily"))["drop_after"] == "1000 days"
    finally:
        await conn.close()


async def test_retention_and_compression_policies_work_when_run(fresh_timescaledb) -> None:
    conn = await asyncpg.connect(await fresh_timescaledb())
    try:
        caps = await probe(conn)
        await apply_migrations(conn, caps)
        await pause_scheduled_jobs(conn)
        await conn.execute(
            "INSERT INTO metrics (time, device_id, metric_type, value) "
            "SELECT now() - make_interval(days => d), 'd', 'power', d "
            "FROM unnest(ARRAY[200, 120, 10, 1]) AS d"
        )
        job = await conn.fetchval(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'metrics'"
        )
        await conn.execute("CALL run_job($1)", job)
        assert sorted(await conn.fetchval("SELECT array_agg(value) FROM metrics")) == [1.0, 10.0]

        job = await conn.fetchval(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_compression' AND hypertable_name = 'metrics'"
        )
        await conn.execute("CALL run_job($1)", job)
        compressed = await conn.fetch(
            "SELECT range_end, is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'metrics'"
        )
        assert {r["is_compressed"] for r in compressed} == {True, False}  # the 10-day-old chunk only
        assert sorted(await conn.fetchval("SELECT array_agg(value) FROM metrics")) == [1.0, 10.0]
    finally:
        await conn.close()


async def test_retention_job_runs_policies_the_scheduler_did_not(fresh_timescaledb) -> None:
    conn = await asyncpg.connect(await fresh_timescaledb())
    try:
        caps = await probe(conn)
        await apply_migrations(conn, caps)
        await pause_scheduled_jobs(conn)  # as good as the failing scheduler of issue 2
        await conn.execute(
            "INSERT INTO metrics (time, device_id, metric_type, value) "
            "SELECT now() - make_interval(days => d), 'd', 'power', d FROM unnest(ARRAY[200, 10, 1]) AS d"
        )
        job = RetentionJob(caps, RetentionSettings())
        ran = await job.run_once(conn)
        # metrics: retention + compression; every metrics rollup: its retention policy; the cost
        # rollups are tables: batched deletes (nothing expired here).
        assert ran == {
            "ingest_batches": 0,  # writer batch ids are pruned on both storage paths
            "metrics": 2,
            "metrics_hourly": 1,
            "metrics_daily": 1,
            "cost_hourly": 0,
            "cost_daily": 0,
        }
        assert sorted(await conn.fetchval("SELECT array_agg(value) FROM metrics")) == [1.0, 10.0]
        compressed = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'metrics' AND is_compressed"
        )
        assert compressed == 1  # the 10-day-old chunk
        # Each policy ran just now: none is due again within its schedule interval.
        again = await job.run_once(conn)
        assert again == {"ingest_batches": 0, "cost_hourly": 0, "cost_daily": 0}  # no policy ran again
        # A new job (a restart) runs overdue policies again: foreground runs leave job_stats as it was.
        assert (await RetentionJob(caps, RetentionSettings()).run_once(conn))["metrics"] == 2
    finally:
        await conn.close()


async def test_extension_appearing_after_a_plain_start_is_refused(fresh_timescaledb) -> None:
    dsn = await fresh_timescaledb()
    conn = await asyncpg.connect(dsn)
    try:
        # First start without TimescaleDB (the extension not yet created in this database).
        await apply_migrations(conn, PLAIN)
        # The probe leaves a plain database plain, so the next start is unchanged ...
        assert not (await probe(conn)).timescaledb
        assert await apply_migrations(conn, PLAIN) == []
        # ... until someone creates the extension in it by hand.
        await conn.execute("CREATE EXTENSION timescaledb")
        caps = await probe(conn)
        assert caps.timescaledb
        with pytest.raises(CapabilityChangedError) as changed:
            await apply_migrations(conn, caps)
        assert (
            "plain PostgreSQL" in changed.value.message
            and "DROP EXTENSION timescaledb" in changed.value.message
        )
    finally:
        await conn.close()


async def test_failing_background_job_is_reported_degraded(fresh_timescaledb) -> None:
    dsn = await fresh_timescaledb()
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE PROCEDURE always_fails(job_id int, config jsonb) LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk quota reached'; END $$"
        )
        job = await conn.fetchval("SELECT add_job('always_fails', '1 hour', initial_start => now())")
        # The scheduler runs it in the background; wait (bounded) until its failure is recorded.
        for _ in range(120):
            failing = {j["job_id"]: j for j in await timescaledb_job_health(conn)}
            if job in failing:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the scheduler did not run the job within 60 s")
        entry = failing[job]
        assert entry["status"] == "degraded" and entry["proc_name"] == "always_fails"
        assert entry["last_run_status"] == "Failed" and entry["total_failures"] >= 1
        assert entry["last_error"]  # the job's own error, or the 2.22/PG 15.20 portal error
    finally:
        await conn.close()


async def test_plain_postgresql_has_no_job_health_entries(fresh_database) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await apply_migrations(conn, PLAIN)
        assert await timescaledb_job_health(conn) == []
    finally:
        await conn.close()
