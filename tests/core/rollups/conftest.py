"""Fixtures of the rollup and retention tests; shares the migration tests' helpers (imported by name)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "migrations"))

from schema_helpers import (
    create_database,
    drop_database,
    dsn_in,
    shared_timescaledb_admin_dsn,
)


@pytest.fixture
async def fresh_timescaledb() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Factory: a new empty database on the TimescaleDB cluster (skips where TimescaleDB is absent)."""
    admin = shared_timescaledb_admin_dsn()
    created: list[str] = []

    async def make() -> str:
        name = await create_database(admin)
        created.append(name)
        return dsn_in(admin, name)

    yield make
    for name in created:
        await drop_database(admin, name)
