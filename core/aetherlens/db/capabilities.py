"""What the connected PostgreSQL server offers: its version and whether TimescaleDB is usable.

"Usable" means in use in this database, not merely installed on disk: the extension must be listed in
``pg_available_extensions`` *and* ``CREATE EXTENSION`` must succeed. A server that has the files but
does not preload the library (the machine's shared server, typically) refuses the extension; that is
reported as absent with the server's reason, never as a crash.

The extension is created on a new database, never in one whose recorded storage mode is ``plain``:
the migration runner refuses a database whose mode changed, and its advice for a plain database that
got the extension is ``DROP EXTENSION`` — which must stick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

EXTENSION = "timescaledb"


@dataclass(frozen=True, slots=True)
class Capabilities:
    pg_version: str = ""
    pg_version_num: int = 0
    timescaledb: bool = False
    timescaledb_version: str | None = None
    # The Timescale License (TSL) offers compression, continuous aggregates and policies; the Apache
    # build offers hypertables only.
    timescaledb_tsl: bool = False
    # Why TimescaleDB is not in use (None when it is).
    timescaledb_reason: str | None = None

    @property
    def storage_mode(self) -> str:
        return "timescaledb" if self.timescaledb else "plain"

    def as_dict(self) -> dict[str, Any]:
        """The shape exposed by /health and /api/v1/info (``capabilities``)."""
        return {
            "postgresql": self.pg_version,
            "postgresql_version_num": self.pg_version_num,
            "timescaledb": self.timescaledb,
            "timescaledb_version": self.timescaledb_version,
            "timescaledb_tsl": self.timescaledb_tsl,
            "compression": self.timescaledb_tsl,
            "continuous_aggregates": self.timescaledb_tsl,
            "policies": self.timescaledb_tsl,
            "storage_mode": self.storage_mode,
        }


async def probe(conn: asyncpg.Connection) -> Capabilities:
    """Detect the server's capabilities, creating the timescaledb extension when it can be used."""
    version_num = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    version = str(await conn.fetchval("SELECT current_setting('server_version')"))
    installed: str | None = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = $1", EXTENSION
    )
    reason: str | None = None
    if installed is None:
        available = await conn.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = $1", EXTENSION
        )
        recorded = await _recorded_storage_mode(conn)
        if available is None:
            reason = "the timescaledb extension is not installed on this PostgreSQL server"
        elif not await _preloaded(conn):
            # Checked before creating it: without preloading, timescaledb's loader answers
            # CREATE EXTENSION with a FATAL error that ends the whole connection.
            reason = (
                "timescaledb is installed on the server but not preloaded "
                "(shared_preload_libraries does not list it)"
            )
            log.info("TimescaleDB not used: %s", reason)
        elif recorded == "plain":
            # Creating it would switch a plain database's storage mode under its feet (and undo a
            # DROP EXTENSION the user ran to keep the plain schema); it stays plain.
            reason = (
                "timescaledb is usable on this server, but this database was set up on plain PostgreSQL "
                "(storage mode recorded at its first migration); to use TimescaleDB, back it up and restore "
                "it into a new database"
            )
            log.warning("TimescaleDB not used: %s", reason)
        else:
            installed, reason = await _create_extension(conn)
    elif await _license(conn) is None:
        # Created earlier, but the server no longer loads the library (preload removed).
        reason = (
            f"timescaledb {installed} is created in this database but the server does not load it "
            "(shared_preload_libraries)"
        )
        installed = None

    if installed is None:
        caps = Capabilities(version, version_num, timescaledb_reason=reason)
        log.info(
            "database capabilities: PostgreSQL %s, TimescaleDB not in use (%s)",
            version,
            reason,
            extra={"capabilities": caps.as_dict()},
        )
        return caps
    license_name = await _license(conn)
    caps = Capabilities(
        version,
        version_num,
        timescaledb=True,
        timescaledb_version=installed,
        timescaledb_tsl=license_name == "timescale",
    )
    log.info(
        "database capabilities: PostgreSQL %s, TimescaleDB %s (license %s)",
        version,
        installed,
        license_name,
        extra={"capabilities": caps.as_dict()},
    )
    return caps


async def _create_extension(conn: asyncpg.Connection) -> tuple[str | None, str | None]:
    """Try to create the extension; a refusal (not preloaded, no privilege) means 'absent'."""
    try:
        # A savepoint when the caller is inside a transaction, so a refusal leaves it usable.
        async with conn.transaction():
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    except asyncpg.PostgresError as exc:
        reason = f"timescaledb is installed but cannot be created here: {exc}"
        log.warning("TimescaleDB not used: %s", reason)
        return None, reason
    version: str | None = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = $1", EXTENSION
    )
    return version, None


async def _preloaded(conn: asyncpg.Connection) -> bool:
    libraries = str(await conn.fetchval("SELECT current_setting('shared_preload_libraries')"))
    names = (part.strip().strip('"').rsplit("/", 1)[-1] for part in libraries.split(","))
    return any(name in (EXTENSION, f"{EXTENSION}.so") for name in names)


async def _recorded_storage_mode(conn: asyncpg.Connection) -> str | None:
    """The storage mode the migration runner recorded in ``core_state`` (None before the first run)."""
    if not await conn.fetchval("SELECT to_regclass('core_state') IS NOT NULL"):
        return None
    value: str | None = await conn.fetchval("SELECT value FROM core_state WHERE key = 'storage_mode'")
    return value


async def _license(conn: asyncpg.Connection) -> str | None:
    value: str | None = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    return value or None
