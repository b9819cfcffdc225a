"""The migration runner on the machine's real PostgreSQL: order, history, checksums, concurrency, markers,
recorded storage mode."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest
from dbtest import PLAIN, FakeCaps

from aetherlens.db.migrations import (
    apply_migrations,
    default_directory,
    discover,
    migration_status,
    select,
)
from aetherlens.errors import CapabilityChangedError, MigrationError

REPO_MIGRATIONS = Path(__file__).parents[3] / "migrations"


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def history(conn: asyncpg.Connection) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        "SELECT version, name, checksum FROM migration_history ORDER BY applied_at, version"
    )
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


async def test_repository_migrations_apply_in_order_and_rerun_is_a_no_op(fresh_database) -> None:
    conn = await connect(await fresh_database())
    try:
        applied = await apply_migrations(conn, PLAIN)
        expected = [f.name for f in select(discover(REPO_MIGRATIONS), PLAIN).values()]
        assert applied == expected
        assert applied[0] == "001_core_state.sql"
        assert "008_metrics_plain.sql" in applied and "008_metrics_timescaledb.sql" not in applied
        assert "014_metrics_policies.sql" not in applied  # TimescaleDB-only step, no plain twin

        recorded = await history(conn)
        assert [name for _, name, _ in recorded] == expected  # applied (and recorded) in numeric order
        for _, name, checksum in recorded:
            assert checksum == hashlib.sha256((REPO_MIGRATIONS / name).read_bytes()).hexdigest()

        for relation in (
            "core_state", "devices", "users", "api_tokens", "auth_sessions", "rate_schedules", "alerts",
            "alert_events", "plugins", "metrics", "metrics_latest", "ingest_batches", "rollup_pending",
            "metrics_hourly", "metrics_daily", "cost_calculations", "cost_hourly", "cost_daily",
            "cloud_costs", "migration_history",
        ):  # fmt: skip
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", relation), relation

        assert await apply_migrations(conn, PLAIN) == []
        assert len(await history(conn)) == len(expected)
    finally:
        await conn.close()


async def test_files_apply_in_numeric_order_each_in_its_own_transaction(
    fresh_database, tmp_path: Path
) -> None:
    # Written out of order on purpose: 003 needs 002's table, which needs 001's.
    write(tmp_path, "003_c.sql", "INSERT INTO b (a_id) SELECT id FROM a;")
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1), (2);")
    write(tmp_path, "002_b.sql", "CREATE TABLE b (a_id int REFERENCES a (id));")
    write(tmp_path, "004_broken.sql", "CREATE TABLE d (x int);\nSELECT no_such_column FROM a;")
    write(tmp_path, "README.txt", "not a migration")
    conn = await connect(await fresh_database())
    try:
        with pytest.raises(MigrationError) as failure:
            await apply_migrations(conn, PLAIN, tmp_path)
        assert "004_broken.sql" in failure.value.message and "no_such_column" in failure.value.message
        # 001-003 are applied and recorded; 004 was rolled back entirely (its first statement too).
        assert [name for _, name, _ in await history(conn)] == ["001_a.sql", "002_b.sql", "003_c.sql"]
        assert await conn.fetchval("SELECT count(*) FROM b") == 2
        assert await conn.fetchval("SELECT to_regclass('d')") is None
        # The advisory lock was released despite the failure: a fixed file applies.
        write(tmp_path, "004_broken.sql", "CREATE TABLE d (x int);")
        assert await apply_migrations(conn, PLAIN, tmp_path) == ["004_broken.sql"]
    finally:
        await conn.close()


async def test_changed_applied_file_is_refused_naming_it(fresh_database, tmp_path: Path) -> None:
    write(
        tmp_path, "001_core_state.sql", "CREATE TABLE core_state (key text PRIMARY KEY, value text NOT NULL);"
    )
    write(tmp_path, "002_t.sql", "CREATE TABLE t (x int);")
    conn = await connect(await fresh_database())
    try:
        assert await apply_migrations(conn, PLAIN, tmp_path) == ["001_core_state.sql", "002_t.sql"]
        write(tmp_path, "002_t.sql", "CREATE TABLE t (x bigint);")
        write(tmp_path, "003_u.sql", "CREATE TABLE u (x int);")
        with pytest.raises(MigrationError) as refused:
            await apply_migrations(conn, PLAIN, tmp_path)
        assert "002_t.sql" in refused.value.message and "changed" in refused.value.message
        assert await conn.fetchval("SELECT to_regclass('u')") is None  # nothing else ran
        states = {s.name: s.state for s in await migration_status(conn, PLAIN, tmp_path)}
        assert states == {"001_core_state.sql": "applied", "002_t.sql": "changed", "003_u.sql": "pending"}
    finally:
        await conn.close()


async def test_two_processes_starting_at_once_apply_each_migration_once(
    fresh_database, tmp_path: Path
) -> None:
    write(tmp_path, "001_slow.sql", "SELECT pg_sleep(0.5); CREATE TABLE counted (n int);")
    write(tmp_path, "002_count.sql", "INSERT INTO counted VALUES (1);")
    dsn = await fresh_database()
    first, second = await connect(dsn), await connect(dsn)
    try:
        results = await asyncio.gather(
            apply_migrations(first, PLAIN, tmp_path), apply_migrations(second, PLAIN, tmp_path)
        )
        assert sorted(results, key=len) == [[], ["001_slow.sql", "002_count.sql"]]
        assert await first.fetchval("SELECT count(*) FROM counted") == 1
        assert await first.fetchval("SELECT count(*) FROM migration_history") == 2
    finally:
        await first.close()
        await second.close()


async def test_requires_markers_select_one_variant_per_number(fresh_database, tmp_path: Path) -> None:
    write(tmp_path, "001_base.sql", "CREATE TABLE base (x int);")
    write(tmp_path, "002_series_timescaledb.sql", "-- requires: timescaledb\nCREATE TABLE series (v text);")
    write(tmp_path, "002_series_plain.sql", "-- requires: plain\nCREATE TABLE series (p text);")
    write(tmp_path, "003_rollup_tsl.sql", "-- requires: timescaledb-tsl\nCREATE TABLE rollup (v text);")
    write(tmp_path, "003_rollup_plain.sql", "-- requires: plain\nCREATE TABLE rollup (p text);")
    write(
        tmp_path, "004_policy.sql", "-- requires: timescaledb-tsl\nSELECT add_policy_that_does_not_exist();"
    )

    files = discover(tmp_path)
    every = (FakeCaps(), FakeCaps(timescaledb=True), FakeCaps(timescaledb=True, timescaledb_tsl=True))
    names = {caps: [f.name for f in select(files, caps).values()] for caps in every}
    assert names[FakeCaps()] == ["001_base.sql", "002_series_plain.sql", "003_rollup_plain.sql"]
    # TimescaleDB without the TSL licence: hypertables, but rollups stay tables.
    assert names[FakeCaps(timescaledb=True)] == [
        "001_base.sql", "002_series_timescaledb.sql", "003_rollup_plain.sql"]  # fmt: skip
    assert names[FakeCaps(timescaledb=True, timescaledb_tsl=True)] == [
        "001_base.sql", "002_series_timescaledb.sql", "003_rollup_tsl.sql", "004_policy.sql"]  # fmt: skip

    conn = await connect(await fresh_database())
    try:
        assert await apply_migrations(conn, PLAIN, tmp_path) == names[FakeCaps()]
        assert (
            await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE column_name = 'p'")
            == 2
        )
        states = {s.name: s.state for s in await migration_status(conn, PLAIN, tmp_path)}
        assert states["002_series_timescaledb.sql"] == "not_applicable"
        assert states["004_policy.sql"] == "not_applicable"
        assert states["002_series_plain.sql"] == "applied"
    finally:
        await conn.close()


def test_bad_file_names_and_markers_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "01_short.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"01_short\.sql"):
        discover(tmp_path)
    (tmp_path / "01_short.sql").unlink()
    write(tmp_path, "001_x.sql", "-- requires: oracle\nSELECT 1;")
    with pytest.raises(MigrationError, match="unknown requirement 'oracle'"):
        discover(tmp_path)
    write(tmp_path, "001_x.sql", "SELECT 1;")
    write(tmp_path, "001_y.sql", "-- requires: plain\nSELECT 1;")
    with pytest.raises(MigrationError, match="share number 001"):
        discover(tmp_path)


async def test_storage_mode_is_recorded_and_a_change_refused(fresh_database) -> None:
    conn = await connect(await fresh_database())
    try:
        await apply_migrations(conn, PLAIN)
        state = dict(await conn.fetch("SELECT key, value FROM core_state"))
        assert state["storage_mode"] == "plain" and state["rollup_mode"] == "tables"
        assert len(state["instance_id"]) == 36

        with pytest.raises(CapabilityChangedError) as changed:
            await apply_migrations(conn, FakeCaps(timescaledb=True, timescaledb_tsl=True))
        message = changed.value.message
        assert "plain PostgreSQL" in message and "now in use" in message and "DROP EXTENSION" in message
        # Refused before touching anything: no TimescaleDB variant was attempted or recorded.
        assert not await conn.fetchval("SELECT count(*) FROM migration_history WHERE requires <> 'any' "
                                       "AND requires <> 'plain'")  # fmt: skip
    finally:
        await conn.close()


async def test_extension_disappearing_is_refused_with_what_to_do(fresh_database, tmp_path: Path) -> None:
    write(
        tmp_path, "001_core_state.sql", "CREATE TABLE core_state (key text PRIMARY KEY, value text NOT NULL);"
    )
    conn = await connect(await fresh_database())
    try:
        await apply_migrations(conn, FakeCaps(timescaledb=True, timescaledb_tsl=True), tmp_path)
        assert await conn.fetchval("SELECT value FROM core_state WHERE key = 'storage_mode'") == "timescaledb"
        with pytest.raises(CapabilityChangedError) as changed:
            await apply_migrations(conn, PLAIN, tmp_path)
        assert "no longer offers the timescaledb extension" in changed.value.message
        assert "shared_preload_libraries" in changed.value.message
        # Same extension, licence switched to Apache: continuous aggregates are gone.
        with pytest.raises(CapabilityChangedError, match=r"timescaledb\.license"):
            await apply_migrations(conn, FakeCaps(timescaledb=True), tmp_path)
    finally:
        await conn.close()


async def test_status_lists_pending_then_applied(fresh_database) -> None:
    conn = await connect(await fresh_database())
    try:
        before = await migration_status(conn, PLAIN)
        assert {s.state for s in before if s.requires in ("any", "plain")} == {"pending"}
        assert {s.state for s in before if s.requires.startswith("timescaledb")} == {"not_applicable"}
        await apply_migrations(conn, PLAIN)
        after = await migration_status(conn, PLAIN)
        assert {s.state for s in after if s.requires in ("any", "plain")} == {"applied"}
        assert all(s.applied_at is not None for s in after if s.state == "applied")
    finally:
        await conn.close()


def test_default_directory_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AETHERLENS_MIGRATIONS_DIR", raising=False)
    assert default_directory() == REPO_MIGRATIONS
    monkeypatch.setenv("AETHERLENS_MIGRATIONS_DIR", str(tmp_path))
    assert default_directory() == tmp_path
    monkeypatch.setenv("AETHERLENS_MIGRATIONS_DIR", str(tmp_path / "absent"))
    with pytest.raises(MigrationError, match="not a directory"):
        default_directory()
