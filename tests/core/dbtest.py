"""Database helpers shared by every test area (``tests/core`` is on pytest's import path: ``import dbtest``).

The machine's server (127.0.0.1:5432) is shared by every test run, so tests create databases with
unique names and drop them afterwards. TimescaleDB is not on that server's preload list, so TimescaleDB
tests run on one throwaway managed cluster per test session (``ManagedPostgres`` preloads timescaledb
when its files are installed), in a directory the ``postgres`` user can reach; it is stopped when the
session ends.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from aetherlens.config import load_settings
from aetherlens.db.capabilities import Capabilities, probe
from aetherlens.db.managed import ManagedPostgres, find_bindir, timescaledb_installed
from aetherlens.db.migrations import apply_migrations

TIMESCALEDB_INSTALLED = timescaledb_installed(find_bindir())
SKIP_REASON = (
    "the timescaledb extension is not installed for this machine's PostgreSQL binaries "
    "(no timescaledb.control / timescaledb.so); TimescaleDB tests need it"
)

ADMIN_DSN = os.environ.get("AETHERLENS_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

PLAIN = Capabilities(pg_version="15", timescaledb=False, timescaledb_tsl=False)


@dataclass(frozen=True)
class FakeCaps:
    """Capabilities as values, for selection rules that do not depend on the server."""

    timescaledb: bool = False
    timescaledb_tsl: bool = False


_cluster: dict[str, object] = {}


def shared_timescaledb_admin_dsn() -> str:
    """Admin DSN of the session's TimescaleDB cluster (started on first use, stopped at exit)."""
    if not TIMESCALEDB_INSTALLED:
        pytest.skip(SKIP_REASON)
    if "dsn" in _cluster:
        return str(_cluster["dsn"])
    root = Path(tempfile.mkdtemp(prefix="aetherlens-tsdb-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    settings = load_settings(
        env={},
        data_dir=str(root / "data"),
        database={"managed_dir": str(root / "pg")},
        log={"level": "info", "format": "text"},
    )
    managed = ManagedPostgres(settings)
    dsn = managed.start()

    def stop() -> None:
        managed.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    _cluster["dsn"] = dsn
    return dsn


def dsn_for(database: str) -> str:
    """DSN of ``database`` on the machine's shared server."""
    return dsn_in(ADMIN_DSN, database)


def dsn_in(admin_dsn: str, database: str) -> str:
    before, _, query = admin_dsn.partition("?")
    base = before.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def create_database(admin_dsn: str = ADMIN_DSN, *, template: str | None = None) -> str:
    """Create a uniquely named database (a copy of ``template`` when given); return its name."""
    name = f"aetherlens_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    return name


async def drop_database(name: str, admin_dsn: str = ADMIN_DSN) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def set_connectable(name: str, allowed: bool, admin_dsn: str = ADMIN_DSN) -> None:
    """Make database ``name`` refuse (or accept again) every connection, its pools' included: a
    database outage for one test's database, the server staying up for the others."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


async def migrate(dsn: str) -> Capabilities:
    """Probe the server (creating timescaledb where usable) and apply the repository's migrations."""
    conn = await asyncpg.connect(dsn)
    try:
        caps = await probe(conn)
        await apply_migrations(conn, caps)
        return caps
    finally:
        await conn.close()


async def pause_scheduled_jobs(conn: asyncpg.Connection) -> None:
    """Unschedule every TimescaleDB job of this database and wait until none is running.

    Tests then run policies deterministically with ``CALL run_job`` and no scheduled run of the same
    policy competes for the chunk locks (on this build scheduled runs fail anyway, see issue 2).
    """
    await conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs")
    for _ in range(120):
        running = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.job_stats WHERE job_status = 'Running'"
        )
        if not running:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("TimescaleDB jobs still running after 60 s")


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for ``predicate()`` to hold, re-checking every 20 ms; fails the test (never falls through)
    when it does not within ``timeout`` seconds, so a broken component fails instead of hanging."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.02)
