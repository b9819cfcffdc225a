"""The one "pool or connection" adapter: code that takes either uses ``async with connection(db) as conn``.

A caller holding a connection (a transaction, a job's pass) passes it and every statement runs on it; a
caller without one passes the pool and a connection is borrowed for the block and given back after. The
``isinstance(x, asyncpg.Pool)`` test lives here only, so no module grows its own copy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

type PoolOrConnection = asyncpg.Pool | asyncpg.Connection


@asynccontextmanager
async def connection(
    db: PoolOrConnection, *, timeout: float | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """``db`` itself when it is a connection, else one borrowed from the pool (``timeout``: how long to
    wait for one)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire(timeout=timeout) as conn:
            yield conn
    else:
        yield db
