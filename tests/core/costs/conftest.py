"""Cost-engine fixtures: a fresh, fully migrated database (plain PostgreSQL) and a connection to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations


@pytest.fixture
async def cost_dsn(fresh_database) -> str:  # type: ignore[no-untyped-def]
    dsn: str = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, await probe(conn))
    finally:
        await conn.close()
    return dsn


@pytest.fixture
async def conn(cost_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(cost_dsn)
    yield connection
    await connection.close()
