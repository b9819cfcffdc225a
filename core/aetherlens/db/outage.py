"""What "the database is not there right now" looks like, as opposed to an error about a statement.

The writer spools on these, the device registry keeps serving from memory, and the API answers 503 with
Retry-After; every other PostgreSQL error is about the statement and is reported as such.
"""

from __future__ import annotations

from typing import Final

import asyncpg

DATABASE_UNREACHABLE: Final = (
    OSError,  # refused, reset, unreachable; TimeoutError and ConnectionError are OSErrors
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection closed under us, or the pool is closing
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or a primary being demoted
    asyncpg.InvalidCatalogNameError,  # the database is gone (dropped, or not restored yet)
)
