"""Cost-engine fixtures: a fresh, fully migrated database (plain PostgreSQL) and a connection to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest


@pytest.fixture
async def cost_dsn(migrated_database: Callable[[], Awaitable[str]]) -> str:
    return await migrated_database()


@pytest.fixture
async def conn(cost_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(cost_dsn)
    yield connection
    await connection.close()
