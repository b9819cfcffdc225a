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
