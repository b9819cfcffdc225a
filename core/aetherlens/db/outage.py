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
    # The client's protocol state broke (a server killed mid-COPY can leave it "in an unexpected
    # state"): the connection is unusable, the rows are not at fault. Treated as data, the whole batch
    # went to the dead-letter file under load in the kill -9 outage test.
    asyncpg.InternalClientError,
)


def is_outage(exc: BaseException) -> bool:
    """The database is not there right now: keep the data (spool) and retry later."""
    # asyncpg reports a value it cannot encode as a DataError that is both an InterfaceError and a
    # ValueError: it is about the data, not the connection.
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return False
    return isinstance(exc, DATABASE_UNREACHABLE)


# SQLSTATE classes that name the data itself: 22 data exception (a value out of range, a NUL or an
# invalid byte in text, malformed JSON), 23 integrity constraint violation.
_CONTENT_SQLSTATE_CLASSES: Final = frozenset({"22", "23"})


def is_content_error(exc: BaseException) -> bool:
    """A write failed because of what it holds: the same rows fail the same way on every retry.

    Server errors of other classes (disk full, lock or statement timeouts, a missing table) are about
    the server or the schema; retrying later is right for them, and every batch fails alike, so none
    is singled out. An error that is not PostgreSQL's (the client could not encode a value) is about
    the rows unless it is an outage.
    """
    if is_outage(exc):
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _CONTENT_SQLSTATE_CLASSES
    return True
