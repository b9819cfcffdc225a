"""One database connection for the cost commands (through the core's open_database: managed or URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from aetherlens.config import Settings
from aetherlens.db.database import open_database


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    database = await open_database(settings)
    try:
        async with database.pool.acquire() as conn:
            yield conn
    finally:
        await database.close()
