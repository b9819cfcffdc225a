"""Shared fixtures: a real PostgreSQL (the machine's, on 127.0.0.1:5432), a database per test.

Helpers behind them live in ``dbtest`` (importable from every test area). Tests that stop a server use
a throwaway managed cluster (see ``cluster_dir``), never the shared one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from dbtest import (
    PLAIN,
    create_database,
    drop_database,
    dsn_for,
    dsn_in,
    migrate,
    pause_scheduled_jobs,
    shared_timescaledb_admin_dsn,
)

from aetherlens.db.capabilities import Capabilities, probe
from aetherlens.db.migrations import apply_migrations

DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
async def fresh_database() -> AsyncIterator[DatabaseFactory]:
    """Factory: each call creates an empty database and returns its DSN; all are dropped afterwards."""
    created: list[str] = []

    async def make() -> str:
        name = await create_database()
        created.append(name)
        return dsn_for(name)

    yield make
    for name in created:
        await drop_database(name)


@pytest.fixture(scope="session")
async def migrated_template() -> AsyncIterator[str]:
    """A database with every migration applied (plain PostgreSQL), made once per test session."""
    name = await create_database()
    await migrate(dsn_for(name))
    yield name
    await drop_database(name)


@pytest.fixture
async def migrated_database(migrated_template: str) -> AsyncIterator[DatabaseFactory]:
    """Factory: each call returns the DSN of a fresh copy of the migrated template (much faster than
    migrating again); all are dropped afterwards."""
    created: list[str] = []

    async def make() -> str:
        name = await create_database(template=migrated_template)
        created.append(name)
        return dsn_for(name)

    yield make
    for name in created:
        await drop_database(name)


@pytest.fixture
async def fresh_timescaledb() -> AsyncIterator[DatabaseFactory]:
    """Factory: a new empty database on the session's TimescaleDB cluster (skips where TimescaleDB is
    absent, saying why)."""
    admin = shared_timescaledb_admin_dsn()
    created: list[str] = []

    async def make() -> str:
        name = await create_database(admin)
        created.append(name)
        return dsn_in(admin, name)

    yield make
    for name in created:
        await drop_database(name, admin)


@pytest.fixture
async def both_paths(
    fresh_database: DatabaseFactory, fresh_timescaledb: DatabaseFactory
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection, Capabilities]]:
    """(plain connection, TimescaleDB connection, TimescaleDB capabilities), both migrated; the
    TimescaleDB scheduler's jobs paused so they cannot race a test's assertions."""
    tsdb = await asyncpg.connect(await fresh_timescaledb())
    plain = await asyncpg.connect(await fresh_database())
    caps = await probe(tsdb)
    assert caps.timescaledb and caps.timescaledb_tsl
    await apply_migrations(tsdb, caps)
    await pause_scheduled_jobs(tsdb)
    await apply_migrations(plain, PLAIN)
    yield plain, tsdb, caps
    await plain.close()
    await tsdb.close()


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A temp directory the unprivileged ``postgres`` user can reach (pytest's own tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="aetherlens-cluster-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def ingest_dsn(migrated_database: DatabaseFactory) -> str:
    """DSN of a fresh migrated database (metrics, metrics_latest, ingest_batches, rollup_pending, devices)."""
    return await migrated_database()


@pytest.fixture
def ingest_schema() -> Callable[[str], Awaitable[object]]:
    """``await ingest_schema(dsn)`` applies the product's migrations to an existing database."""
    return migrate
