"""The one way the core gets its database: ``open_database(settings) -> Database``.

Starts the managed cluster when no ``database.url`` is set (and creates the application database in
it), probes the server's capabilities, applies pending migrations (which also check the recorded
storage mode), gives the Grafana read-only role its password when TCP is enabled, and opens the pool.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from aetherlens.config import Settings
from aetherlens.db.capabilities import Capabilities, probe
from aetherlens.db.managed import ManagedPostgres
from aetherlens.db.pool import create_pool, init_connection, server_settings
from aetherlens.errors import DatabaseError
from aetherlens.keyfile import read_or_create_private_file

log = logging.getLogger(__name__)

APP_DATABASE = "aetherlens"
READONLY_ROLE = "aetherlens_readonly"
READONLY_SECRET_FILE = "readonly_password"  # noqa: S105 (a file name, not a secret)
_SCRAM_ITERATIONS = 4096
POOL_CLOSE_GRACE = 10.0  # seconds a clean shutdown waits for connections still in use


@dataclass
class Database:
    pool: asyncpg.Pool
    dsn: str
    capabilities: Capabilities
    managed: ManagedPostgres | None = None
    applied_migrations: list[str] = field(default_factory=list)

    async def close(self, grace: float = POOL_CLOSE_GRACE) -> None:
        """Close the pool; stop the managed cluster if this process started (or adopted) it.

        ``Pool.close`` waits for every acquired connection to come back; a task that never releases one
        must not keep the core (and its database) from stopping, so after ``grace`` seconds the pool's
        remaining connections are terminated.
        """
        try:
            await asyncio.wait_for(self.pool.close(), timeout=grace)
        except TimeoutError:
            log.warning("database connections still in use after %.0f s; terminating them", grace)
            self.pool.terminate()
        if self.managed is not None and self.managed.owned:
            await asyncio.to_thread(self.managed.stop)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command works: the application database's DSN and, if managed, its cluster."""

    dsn: str
    managed: ManagedPostgres | None


@asynccontextmanager
async def database_target(settings: Settings) -> AsyncIterator[Target]:
    """The application database for one-shot commands (backup, restore, db start).

    With the managed database the cluster is started if needed and stopped again on exit if this
    call started it. Nothing is migrated.
    """
    if settings.database.url is not None:
        yield Target(settings.database.url, None)
        return
    managed = ManagedPostgres(settings)
    admin_dsn = await asyncio.to_thread(managed.start)
    try:
        await ensure_database(admin_dsn, APP_DATABASE)
        yield Target(managed.dsn(APP_DATABASE), managed)
    finally:
        if managed.owned:
            await asyncio.to_thread(managed.stop)


async def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    managed: ManagedPostgres | None = None
    if settings.database.url is not None:
        dsn = settings.database.url
    else:
        managed = ManagedPostgres(settings)
        admin_dsn = await asyncio.to_thread(managed.start)
    try:
        if managed is not None:
            await ensure_database(admin_dsn, APP_DATABASE)
            dsn = managed.dsn(APP_DATABASE)
        conn = await connect(dsn)
        try:
            capabilities = await probe(conn)
            applied: list[str] = []
            if migrate:
                # Imported here: the runner is its own module and may import from this package.
                from aetherlens.db.migrations import apply_migrations

                applied = await apply_migrations(conn, capabilities)
            if managed is not None and settings.database.listen_port:
                await set_readonly_password(conn, settings)
        finally:
            await conn.close()
        pool = await create_pool(dsn, settings)
    except BaseException:
        if managed is not None and managed.owned:
            await asyncio.to_thread(managed.stop)
        raise
    return Database(
        pool=pool, dsn=dsn, capabilities=capabilities, managed=managed, applied_migrations=applied
    )


async def connect(dsn: str, application_name: str = "aetherlens-core") -> asyncpg.Connection:
    """One connection with the core's codecs; a connection failure becomes a DatabaseError."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn, server_settings=server_settings(application_name)
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({_redact(dsn)}): {exc}") from exc
    await init_connection(conn)
    return conn


async def ensure_database(admin_dsn: str, name: str) -> bool:
    """Create database ``name`` on the server of ``admin_dsn`` if missing; True when created."""
    conn = await connect(admin_dsn, "aetherlens-setup")
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False  # a concurrent start created it first
        log.info("created database %s", name)
        return True
    finally:
        await conn.close()


def readonly_secret_path(settings: Settings) -> Path:
    return settings.data_dir / READONLY_SECRET_FILE


def read_or_create_secret(path: Path) -> str:
    """The read-only role's password: generated once into a 0600 file."""
    data = read_or_create_private_file(path, lambda: secrets.token_urlsafe(24).encode() + b"\n")
    return data.decode("utf-8")


async def set_readonly_password(conn: asyncpg.Connection, settings: Settings) -> None:
    """Let the read-only role log in over TCP with the password kept in data_dir."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", READONLY_ROLE):
        log.warning("role %s does not exist (migration 019 not applied); no read-only login", READONLY_ROLE)
        return
    path = readonly_secret_path(settings)
    password = await asyncio.to_thread(read_or_create_secret, path)  # an empty file is a ConfigError there
    # Utility statements take no bind parameters; send a SCRAM verifier so the plain password never
    # appears in SQL text (or a server log).
    verifier = scram_sha256_verifier(password)
    await conn.execute(f"ALTER ROLE {READONLY_ROLE} WITH LOGIN PASSWORD '{verifier}'")
    log.info(
        "read-only role %s can log in on 127.0.0.1:%s; its password is in %s",
        READONLY_ROLE,
        settings.database.listen_port,
        path,
    )


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (what libpq's PQencryptPasswordConn makes)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
