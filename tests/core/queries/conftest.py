"""A migrated, empty database with the core's pool for each query test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from aetherlens.config import Settings
from aetherlens.db.pool import create_pool


@pytest.fixture
async def pool(migrated_database: Callable[[], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool]:
    p: asyncpg.Pool = await create_pool(await migrated_database(), Settings(), min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()
