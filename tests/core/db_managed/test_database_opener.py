"""open_database: managed cluster (created, migrated, TCP + read-only role) and external URL."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from managed_helpers import TIMESCALEDB_INSTALLED, free_port, settings_for

from aetherlens.config import Settings, load_settings
from aetherlens.db.database import (
    APP_DATABASE,
    READONLY_ROLE,
    open_database,
    readonly_secret_path,
    scram_sha256_verifier,
)
from aetherlens.db.managed import ManagedPostgres

pytest.importorskip("aetherlens.db.migrations", reason="the migration runner has not landed yet")

DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
def tcp_settings(cluster_root: Path, cluster_settings: Settings) -> Iterator[Settings]:
    settings = settings_for(cluster_root, listen_port=free_port())
    ManagedPostgres(settings).stop()
    yield settings
    ManagedPostgres(settings).stop()


async def test_managed_open_migrates_and_grafana_role_is_read_only(
    tcp_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = tcp_settings.database.listen_port
    assert port is not None
    db = await open_database(tcp_settings)
    try:
        assert db.managed is not None and db.managed.owned
        assert "019_readonly_role.sql" in db.applied_migrations
        assert db.capabilities.timescaledb is TIMESCALEDB_INSTALLED
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_database()") == APP_DATABASE
            assert await conn.fetchval("SHOW application_name") == "aetherlens-core"
            # json/jsonb come back as Python values (orjson codecs), both ways.
            assert await conn.fetchval("SELECT $1::jsonb", {"a": [1, 2]}) == {"a": [1, 2]}
            assert await conn.fetchval("SELECT '{\"b\": true}'::json") == {"b": True}
            await conn.execute("INSERT INTO devices (id, name) VALUES ('plug-1', 'Plug')")
            # Tables made after migration 019 are readable too (default privileges).
            await conn.execute("CREATE TABLE later_table(v int); INSERT INTO later_table VALUES (7)")

        secret = readonly_secret_path(tcp_settings)
        assert secret.stat().st_mode & 0o777 == 0o600
        password = secret.read_text().strip()
        assert password not in caplog.text
        assert str(secret) in caplog.text

        ro = await asyncpg.connect(
            host="127.0.0.1", port=port, user=READONLY_ROLE, password=password, database=APP_DATABASE
        )
        try:
            assert await ro.fetchval("SELECT name FROM devices WHERE id = 'plug-1'") == "Plug"
            assert await ro.fetchval("SELECT v FROM later_table") == 7
            assert await ro.fetchval("SELECT count(*) FROM metrics") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await ro.execute("INSERT INTO devices (id, name) VALUES ('x', 'y')")
            for private in ("users", "api_tokens", "auth_sessions"):  # credentials stay private
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await ro.fetchval(f"SELECT count(*) FROM {private}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await ro.fetchval("SELECT secrets FROM plugins")
            assert await ro.fetchval("SELECT count(*) FROM plugins WHERE enabled") == 0
        finally:
            await ro.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host="127.0.0.1", port=port, user=READONLY_ROLE, password="wrong", database=APP_DATABASE
            )
        with pytest.raises(asyncpg.InvalidPasswordError):
            # The superuser has no password: no TCP login for it.
            await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database=APP_DATABASE)
    finally:
        await db.close()
    assert db.managed.status().state == "stopped"  # this process started it, so close() stopped it

    again = await open_database(tcp_settings)
    try:
        assert again.applied_migrations == []
        ro = await asyncpg.connect(
            host="127.0.0.1", port=port, user=READONLY_ROLE, password=password, database=APP_DATABASE
        )
        await ro.close()
    finally:
        await again.close()


async def test_external_url_is_used_as_is(fresh_database: DatabaseFactory, tmp_path: Path) -> None:
    dsn = await fresh_database()
    settings = load_settings(env={}, data_dir=str(tmp_path), database={"url": dsn})
    db = await open_database(settings)
    try:
        assert db.managed is None and db.dsn == dsn
        assert db.capabilities.timescaledb is False  # the shared server does not preload it
        assert "001_core_state.sql" in db.applied_migrations
        assert await db.pool.fetchval("SELECT value FROM core_state WHERE key = 'storage_mode'") == "plain"
    finally:
        await db.close()
    assert not readonly_secret_path(settings).exists()


async def test_close_is_bounded_when_a_connection_is_never_released(
    fresh_database: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await fresh_database()
    db = await open_database(load_settings(env={}, data_dir=str(tmp_path), database={"url": dsn}))
    await db.pool.acquire()  # a task that never gives its connection back
    await db.close(grace=0.5)  # returns: the pool is terminated instead of waiting forever
    observer = await asyncpg.connect(dsn)
    try:
        left = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await observer.close()
    assert left == 0


def test_scram_verifier_matches_postgres_format() -> None:
    # RFC 7677 / PostgreSQL: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
    verifier = scram_sha256_verifier("pencil", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    stored, server = verifier.split("$", 2)[2].split(":")
    assert len(stored) == len(server) == 44
