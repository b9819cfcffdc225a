"""Shared fixtures: a real PostgreSQL (the machine's, on 127.0.0.1:5432) with a database per test session.

The machine's server is shared by every test run, so each run creates databases with unique names and
drops them afterwards. Tests that stop a server use a throwaway managed cluster (see ``cluster_dir``),
never the shared one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("AETHERLENS_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
async def fresh_database() -> AsyncIterator[DatabaseFactory]:
    """Factory: each call creates an empty database and returns its DSN; all are dropped afterwards."""
    created: list[str] = []

    async def make() -> str:
        name = f"aetherlens_test_{uuid.uuid4().hex[:12]}"
        await _create_database(name)
        created.append(name)
        return dsn_for(name)

    yield make
    for name in created:
        await _drop_database(name)


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A temp directory the unprivileged ``postgres`` user can reach (pytest's own tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="aetherlens-cluster-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    yield root
    shutil.rmtree(root, ignore_errors=True)


# -- ingest (writer/collector tests): a database with the ingest tables -------------------------------
_INGEST_FALLBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (id text PRIMARY KEY, name text NOT NULL,
    type text NOT NULL DEFAULT 'other', room text, source text, tags jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS metrics (time timestamptz NOT NULL, device_id text NOT NULL,
    metric_type text NOT NULL, value double precision NOT NULL, unit text, tags jsonb);
CREATE INDEX IF NOT EXISTS metrics_series_time_idx ON metrics (device_id, metric_type, time DESC);
CREATE TABLE IF NOT EXISTS metrics_latest (device_id text NOT NULL, metric_type text NOT NULL,
    time timestamptz NOT NULL, value double precision NOT NULL, unit text,
    PRIMARY KEY (device_id, metric_type));
CREATE TABLE IF NOT EXISTS ingest_batches (batch_id uuid PRIMARY KEY, row_count integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS rollup_pending (bucket timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now());
"""


async def create_ingest_schema(dsn: str) -> None:
    """The product's migrations when the runner works, else the same shapes (docs/ARCHITECTURE.md)."""
    try:
        from aetherlens.db.capabilities import probe
        from aetherlens.db.migrations import apply_migrations

        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn, await probe(conn))
        finally:
            await conn.close()
    except Exception as exc:  # the runner is being built in parallel; ingest tests need only the tables
        import warnings

        warnings.warn(f"migrations unusable ({exc!r}); using the ingest fallback schema", stacklevel=1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_INGEST_FALLBACK_SCHEMA)
    finally:
        await conn.close()


@pytest.fixture
async def ingest_dsn(fresh_database: DatabaseFactory) -> str:
    """DSN of a fresh database holding metrics, metrics_latest, ingest_batches, rollup_pending, devices."""
    dsn = await fresh_database()
    await create_ingest_schema(dsn)
    return dsn


@pytest.fixture
def ingest_schema() -> Callable[[str], Awaitable[None]]:
    """``await ingest_schema(dsn)`` creates the ingest tables in an existing database."""
    return create_ingest_schema
