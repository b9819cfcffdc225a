"""Fixtures of the migration tests: a fresh TimescaleDB database factory on the session's cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from schema_helpers import create_database, drop_database, dsn_in, shared_timescaledb_admin_dsn


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
