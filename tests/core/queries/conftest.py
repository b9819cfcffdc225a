"""A migrated, empty database with the core's pool for each query test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from aetherlens.config import Settings
from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.pool import create_pool


async def migrated_pool(fresh_database: Callable[[], Awaitable[str]]) -> asyncpg.Pool:
    dsn = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, await probe(conn))
    finally:
        await conn.close()
    pool: asyncpg.Pool = await create_pool(dsn, Settings(), min_size=1, max_size=4)
    return pool


@pytest.fixture
async def pool(fresh_database: Callable[[], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool]:
    p = await migrated_pool(fresh_database)
    try:
        yield p
    finally:
        await p.close()
