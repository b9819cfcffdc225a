"""Capability probe on the shared server (TimescaleDB never usable there: not preloaded) and on a
managed cluster (which preloads it whenever the extension files are installed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from managed_helpers import TIMESCALEDB_INSTALLED, requires_timescaledb

from aetherlens.config import Settings
from aetherlens.db.capabilities import Capabilities, probe
from aetherlens.db.database import APP_DATABASE, ensure_database
from aetherlens.db.managed import ManagedPostgres

DatabaseFactory = Callable[[], Awaitable[str]]


async def test_shared_server_without_preload_probes_as_plain(fresh_database: DatabaseFactory) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        caps = await probe(conn)
        assert caps.pg_version_num >= 150000
        assert caps.pg_version.startswith(str(caps.pg_version_num // 10000))
        assert caps.timescaledb is False and caps.timescaledb_tsl is False
        assert caps.timescaledb_version is None
        assert caps.timescaledb_reason
        if TIMESCALEDB_INSTALLED:
            # Installed on disk but not preloaded: refused by the server, reported, not raised.
            assert "not preloaded" in caps.timescaledb_reason
        # The connection is still usable and nothing was created.
        assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
        assert await conn.fetchval("SELECT 1") == 1
        # Inside a transaction the refusal must not poison it either.
        async with conn.transaction():
            again = await probe(conn)
            assert await conn.fetchval("SELECT 2") == 2
        assert again == caps
        info = caps.as_dict()
        assert info["timescaledb"] is False and info["storage_mode"] == "plain"
        assert info["postgresql"] == caps.pg_version
    finally:
        await conn.close()


async def test_migrated_plain_database_on_a_server_without_preload_names_the_real_reason(
    migrated_database: DatabaseFactory,
) -> None:
    conn = await asyncpg.connect(await migrated_database())  # storage mode recorded: plain
    try:
        caps = await probe(conn)
        assert caps.timescaledb is False
        if TIMESCALEDB_INSTALLED:
            # The server could not load it anyway: say that, not "restore into a new database".
            assert "not preloaded" in (caps.timescaledb_reason or "")
    finally:
        await conn.close()


def test_as_dict_reports_licence_features() -> None:
    tsl = Capabilities("15.20", 150020, timescaledb=True, timescaledb_version="2.22.1", timescaledb_tsl=True)
    apache = Capabilities(
        "15.20", 150020, timescaledb=True, timescaledb_version="2.22.1", timescaledb_tsl=False
    )
    assert (
        tsl.as_dict()["compression"] and tsl.as_dict()["continuous_aggregates"] and tsl.as_dict()["policies"]
    )
    assert not apache.as_dict()["compression"] and apache.as_dict()["storage_mode"] == "timescaledb"


@pytest.mark.timescaledb
@requires_timescaledb
async def test_managed_cluster_preloads_and_creates_timescaledb(stopped_after: Settings) -> None:
    managed = ManagedPostgres(stopped_after)
    admin_dsn = managed.start()
    await ensure_database(admin_dsn, APP_DATABASE)
    conn = await asyncpg.connect(managed.dsn(APP_DATABASE))
    try:
        assert "timescaledb" in await conn.fetchval("SHOW shared_preload_libraries")
        caps = await probe(conn)
        assert caps.timescaledb is True
        assert caps.timescaledb_reason is None
        installed = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        assert caps.timescaledb_version == installed
        licence = await conn.fetchval("SHOW timescaledb.license")
        assert caps.timescaledb_tsl is (licence == "timescale")
        assert await probe(conn) == caps  # idempotent

        # A database recorded as plain never gets the extension created behind its back.
        await conn.execute("CREATE DATABASE plain_recorded")
    finally:
        await conn.close()
    conn = await asyncpg.connect(managed.dsn("plain_recorded"))
    try:
        await conn.execute(
            "CREATE TABLE core_state(key text PRIMARY KEY, value text);"
            "INSERT INTO core_state VALUES ('storage_mode', 'plain')"
        )
        caps = await probe(conn)
        assert caps.timescaledb is False
        assert caps.timescaledb_reason and "plain" in caps.timescaledb_reason
        assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    finally:
        await conn.close()
