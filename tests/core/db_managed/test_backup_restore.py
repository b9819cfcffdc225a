"""Backup (pg_dump -Fc, rotation) and restore (refusals, --force, TimescaleDB) on real servers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from managed_helpers import requires_timescaledb, table_fingerprints

from aetherlens.config import Settings, load_settings
from aetherlens.db import backup as backups
from aetherlens.db.database import Target, ensure_database, open_database
from aetherlens.db.managed import ManagedPostgres
from aetherlens.errors import ConflictError, DatabaseError, ValidationError

pytest.importorskip("aetherlens.db.migrations", reason="the migration runner has not landed yet")

DatabaseFactory = Callable[[], Awaitable[str]]


async def _populate(dsn: str, data_dir: Path) -> None:
    """The real schema (migrations) plus rows in several tables, and a table of awkward types."""
    settings = load_settings(env={}, data_dir=str(data_dir), database={"url": dsn})
    db = await open_database(settings)
    try:
        async with db.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO devices (id, name, type, tags) VALUES "
                "('plug-1', 'Plug', 'plug', '{\"room\": \"lab\"}'), ('meter', 'Meter', 'meter', '{}')"
            )
            await conn.execute(
                "INSERT INTO metrics (time, device_id, metric_type, value, unit) "
                "SELECT timestamptz '2026-01-01 00:00+00' + n * interval '1 minute', 'plug-1', 'power', "
                "n * 1.5, 'W' "
                "FROM generate_series(1, 2000) AS n"
            )
            await conn.execute(
                "CREATE TABLE backup_probe "
                "(id serial PRIMARY KEY, b bytea, j jsonb, n numeric, t timestamptz);"
                "INSERT INTO backup_probe (b, j, n, t) SELECT decode(md5(n::text), 'hex'), "
                "jsonb_build_object('n', n, 'q', 'it''s'), n / 3.0, now() - n * interval '1 hour' "
                "FROM generate_series(1, 300) AS n"
            )
    finally:
        await db.close()


async def test_round_trip_brings_back_every_table(fresh_database: DatabaseFactory, tmp_path: Path) -> None:
    source, target = await fresh_database(), await fresh_database()
    await _populate(source, tmp_path / "data")
    result = await backups.backup(Target(source, None), tmp_path / "backups")
    assert result.path.parent == tmp_path / "backups" and result.path.stat().st_size > 0
    assert result.path.read_bytes()[:5] == b"PGDMP"  # custom format
    manifest = json.loads(result.path.with_name(result.path.name + ".json").read_text())
    assert manifest["timescaledb_version"] is None

    await backups.restore(Target(target, None), result.path)

    before, after = await table_fingerprints(source), await table_fingerprints(target)
    assert before == after
    assert before["metrics"][0] == 2000 and before["devices"][0] == 2 and before["backup_probe"][0] == 300
    assert before["migration_history"][0] > 0 and before["core_state"][0] > 0
    conn = await asyncpg.connect(target)
    try:
        # Sequences come back too: the next id continues after the restored rows.
        assert await conn.fetchval("SELECT nextval('backup_probe_id_seq')") == 301
    finally:
        await conn.close()


async def test_rotation_keeps_the_newest(fresh_database: DatabaseFactory, tmp_path: Path) -> None:
    target = Target(await fresh_database(), None)
    out = tmp_path / "backups"
    made = [(await backups.backup(target, out, keep=2)).path for _ in range(4)]
    kept = backups.list_backups(out)
    assert kept == made[-2:]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)  # dumps hold credential digests
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in kept] + [p.name + ".json" for p in kept]
    )
    with pytest.raises(ValidationError):
        await backups.backup(target, out, keep=0)


async def test_restore_refusals_and_force(fresh_database: DatabaseFactory, tmp_path: Path) -> None:
    source, target = await fresh_database(), await fresh_database()
    await _populate(source, tmp_path / "data")
    dump = (await backups.backup(Target(source, None), tmp_path / "backups")).path

    conn = await asyncpg.connect(target)
    await conn.execute("CREATE TABLE leftover (v int); INSERT INTO leftover VALUES (1)")
    await conn.close()
    with pytest.raises(ConflictError, match=r"not empty.*--force"):
        await backups.restore(Target(target, None), dump)

    core = await asyncpg.connect(target, server_settings={"application_name": "aetherlens-core"})
    try:
        with pytest.raises(ConflictError, match="core is running"):
            await backups.restore(Target(target, None), dump, force=True)
    finally:
        await core.close()

    await backups.restore(Target(target, None), dump, force=True)
    after = await table_fingerprints(target)
    assert "leftover" not in after
    assert after == await table_fingerprints(source)

    with pytest.raises(ValidationError, match="not a pg_dump custom-format"):
        bogus = tmp_path / "bogus.dump"
        bogus.write_text("not a dump")
        await backups.restore(Target(target, None), bogus, force=True)
    with pytest.raises(ValidationError, match="does not exist"):
        await backups.restore(Target(target, None), tmp_path / "missing.dump")


@pytest.mark.timescaledb
@requires_timescaledb
async def test_timescaledb_round_trip_in_managed_cluster(stopped_after: Settings, tmp_path: Path) -> None:
    db = await open_database(stopped_after)
    try:
        assert db.capabilities.timescaledb
        async with db.pool.acquire() as conn:
            # Background policies (refresh, retention) would change the source while it is compared
            # with the restored copy; the comparison needs it still.
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                "WHERE job_id >= 1000"
            )
            await conn.execute("INSERT INTO devices (id, name) VALUES ('plug-1', 'Plug')")
            await conn.execute(
                "INSERT INTO metrics (time, device_id, metric_type, value, unit) "
                # Recent rows (~7 days: several 1-day chunks), so no retention job may drop them.
                "SELECT now() - n * interval '10 minutes', 'plug-1', 'power', n, 'W' "
                "FROM generate_series(1, 1000) AS n"
            )
        assert db.managed is not None
        source = Target(db.dsn, db.managed)
        result = await backups.backup(source, tmp_path / "backups")
        assert result.timescaledb_version == db.capabilities.timescaledb_version

        admin = db.managed.dsn()
        await ensure_database(admin, "restored")
        target = Target(db.managed.dsn("restored"), db.managed)
        await backups.restore(target, result.path)
        assert await table_fingerprints(target.dsn) == await table_fingerprints(source.dsn)
        conn = await asyncpg.connect(target.dsn)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM timescaledb_information.hypertables "
                    "WHERE hypertable_name = 'metrics'"
                )
                == 1
            )
            assert await conn.fetchval("SELECT count(*) FROM show_chunks('metrics')") >= 7
            # Restore mode was switched off again by timescaledb_post_restore().
            assert await conn.fetchval("SHOW timescaledb.restoring") == "off"
        finally:
            await conn.close()

        # A dump from another TimescaleDB version is refused before anything is restored.
        manifest = result.path.with_name(result.path.name + ".json")
        data = json.loads(manifest.read_text())
        data["timescaledb_version"] = "1.0.0"
        manifest.write_text(json.dumps(data))
        await ensure_database(admin, "restored2")
        with pytest.raises(DatabaseError, match=r"TimescaleDB 1\.0\.0"):
            await backups.restore(Target(db.managed.dsn("restored2"), db.managed), result.path)
    finally:
        await db.close()


@pytest.mark.timescaledb
@requires_timescaledb
async def test_plain_backup_restored_into_timescaledb_cluster_stays_plain(
    fresh_database: DatabaseFactory, stopped_after: Settings, tmp_path: Path
) -> None:
    source = await fresh_database()  # the shared server: plain
    await _populate(source, tmp_path / "data")
    dump = (await backups.backup(Target(source, None), tmp_path / "backups")).path

    managed = ManagedPostgres(stopped_after)
    managed.start()
    try:
        await ensure_database(managed.dsn(), "plain_target")
        target = managed.dsn("plain_target")
        conn = await asyncpg.connect(target)
        await conn.execute("CREATE EXTENSION timescaledb")  # as a probe on an empty database would
        await conn.close()
        await backups.restore(Target(target, managed), dump)
        assert await table_fingerprints(target) == await table_fingerprints(source)
        # The core opens it as the plain database it was: no capability change, nothing to migrate.
        settings = load_settings(env={}, data_dir=str(tmp_path / "data2"), database={"url": target})
        db = await open_database(settings)
        try:
            assert db.capabilities.timescaledb is False
            assert db.applied_migrations == []
        finally:
            await db.close()
    finally:
        managed.stop()
