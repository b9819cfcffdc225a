"""Backups (``pg_dump -Fc`` with rotation) and restores of the application database.

Each backup ``aetherlens-<UTC timestamp>.dump`` gets a manifest ``<file>.json`` beside it with the
server and TimescaleDB versions: a custom-format archive lists the extension but not its version,
and TimescaleDB only restores into the same version it was dumped from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from aetherlens.db.database import READONLY_ROLE, Target, connect
from aetherlens.db.managed import find_bindir
from aetherlens.db.pool import APPLICATION_NAME
from aetherlens.errors import ConflictError, DatabaseError, ManagedDatabaseError, ValidationError

log = logging.getLogger(__name__)

PREFIX = "aetherlens-"
SUFFIX = ".dump"
MANIFEST_SUFFIX = ".json"
DEFAULT_KEEP = 7
_NAME = re.compile(r"^aetherlens-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z\.dump$")


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    timescaledb_version: str | None
    removed: list[Path]


def backup_name(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{PREFIX}{moment:%Y-%m-%dT%H-%M-%S}.{moment.microsecond // 1000:03d}Z{SUFFIX}"


def list_backups(directory: Path) -> list[Path]:
    """Backups in ``directory``, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name) and p.is_file())


def rotate(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (and their manifests); return what was removed."""
    if keep < 1:
        raise ValidationError(f"--keep must be at least 1 (got {keep})")
    old = list_backups(directory)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
        _manifest_path(path).unlink(missing_ok=True)
        log.info("removed old backup %s", path)
    return old


async def backup(target: Target, output_dir: Path, *, keep: int = DEFAULT_KEEP) -> BackupResult:
    """Dump the target database into ``output_dir`` and rotate; the file appears only when complete."""
    if keep < 1:
        raise ValidationError(f"--keep must be at least 1 (got {keep})")
    try:
        await asyncio.to_thread(output_dir.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create the backup directory {output_dir}: {exc.strerror}") from exc
    conn = await connect(target.dsn, "aetherlens-backup")
    try:
        pg_version = str(await conn.fetchval("SELECT current_setting('server_version')"))
        ts_version: str | None = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
        database = str(await conn.fetchval("SELECT current_database()"))
    finally:
        await conn.close()

    path = output_dir / backup_name()
    while path.exists():  # two backups within one millisecond
        await asyncio.sleep(0.002)
        path = output_dir / backup_name()
    partial = path.with_name(path.name + ".partial")
    # A dump holds password hashes, API key digests and encrypted plugin secrets: owner-only from the
    # first byte (pg_dump creates the file; the empty one made here carries the mode).
    partial.touch(mode=0o600)
    log.info("backing up database %s to %s", database, path)
    started = time.monotonic()
    try:
        await _run_tool(
            target, "pg_dump", ["--format=custom", "--file", str(partial)], app="aetherlens-backup"
        )
        manifest = {
            "format": "pg_dump custom",
            "database": database,
            "created": datetime.now(UTC).isoformat(),
            "postgresql_version": pg_version,
            "timescaledb_version": ts_version,
        }
        _manifest_path(path).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    size = path.stat().st_size
    log.info("backup written: %s (%d bytes in %.1fs)", path, size, time.monotonic() - started)
    removed = rotate(output_dir, keep)
    return BackupResult(path=path, size=size, timescaledb_version=ts_version, removed=removed)


async def restore(target: Target, file: Path, *, force: bool = False) -> None:
    """Restore ``file`` into the target database.

    Refuses while a core is connected to it, and refuses a non-empty database unless ``force``
    (which recreates the database first). A TimescaleDB backup needs the same extension version.
    """
    if not await asyncio.to_thread(file.is_file):
        raise ValidationError(f"backup file {file} does not exist")
    listing = await _listing(target, file)
    uses_timescaledb = re.search(r"\bEXTENSION - timescaledb\b", listing) is not None
    dump_ts_version = _manifest(file).get("timescaledb_version") if uses_timescaledb else None

    conn = await connect(target.dsn, "aetherlens-restore")
    try:
        database = str(await conn.fetchval("SELECT current_database()"))
        await _refuse_running_core(conn, database)
        relations = await _user_relations(conn)
    finally:
        await conn.close()
    if relations:
        if not force:
            raise ConflictError(
                f"database {database} is not empty ({relations} tables, views or sequences); "
                "restore into an empty database, or pass --force to replace its contents"
            )
        await _recreate_database(target.dsn, database)

    conn = await connect(target.dsn, "aetherlens-restore")
    try:
        if uses_timescaledb:
            await _prepare_timescaledb(conn, file, dump_ts_version)
        elif await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
            # An empty database where the probe already created the extension: a plain backup must
            # come back plain, or the next start would see a storage mode that changed.
            log.info("dropping the unused timescaledb extension: the backup is of a plain database")
            await conn.execute("DROP EXTENSION timescaledb")
        await _ensure_readonly_role(conn)
    finally:
        await conn.close()

    log.info("restoring %s into database %s%s", file, database, " (TimescaleDB)" if uses_timescaledb else "")
    started = time.monotonic()
    args = ["--exit-on-error", "--no-owner"]
    if not uses_timescaledb:
        # All or nothing. (TimescaleDB's restore mode is documented for the non-transactional form.)
        args.append("--single-transaction")
    try:
        await _run_tool(target, "pg_restore", [*args, str(file)], app="aetherlens-restore")
    finally:
        if uses_timescaledb:
            conn = await connect(target.dsn, "aetherlens-restore")
            try:
                await conn.execute("SELECT timescaledb_post_restore()")
            finally:
                await conn.close()
    log.info("restore of %s finished in %.1fs", file, time.monotonic() - started)


async def _refuse_running_core(conn: asyncpg.Connection, database: str) -> None:
    cores = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
        APPLICATION_NAME,
    )
    if cores:
        raise ConflictError(
            f"a core is running on database {database} ({cores} connection(s) named {APPLICATION_NAME}); "
            "stop it (aetherlens serve/demo) before restoring"
        )


async def _user_relations(conn: asyncpg.Connection) -> int:
    """Tables, views and sequences the user made (not system ones, not those of an extension)."""
    count: int = await conn.fetchval(
        """
        SELECT count(*)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%'
          AND n.nspname NOT LIKE '\\_timescaledb\\_%'
          AND n.nspname NOT IN ('timescaledb_information', 'timescaledb_experimental', 'toolkit_experimental')
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          )
        """
    )
    return count


async def _recreate_database(dsn: str, database: str) -> None:
    """Drop and recreate the target (same owner): --force replaces everything, not only dumped objects."""
    log.warning("--force: dropping and recreating database %s", database)
    try:
        admin = await asyncpg.connect(
            dsn, database="postgres", server_settings={"application_name": "aetherlens-restore"}
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(
            f"cannot connect to the server's 'postgres' database to recreate {database}: {exc}"
        ) from exc
    try:
        owner = await admin.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
        )
        name = await admin.fetchval("SELECT quote_ident($1)", database)
        owner_ident = await admin.fetchval("SELECT quote_ident($1)", owner)
        try:
            await admin.execute(f"DROP DATABASE {name}")
            await admin.execute(f"CREATE DATABASE {name} OWNER {owner_ident}")
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"cannot recreate database {database} for --force: {exc}") from exc
    finally:
        await admin.close()


async def _prepare_timescaledb(conn: asyncpg.Connection, file: Path, dump_version: Any) -> None:
    if not isinstance(dump_version, str):
        raise ValidationError(
            f"{file} contains TimescaleDB data but its manifest ({_manifest_path(file).name}) with the "
            "extension version is missing; TimescaleDB restores only into the version it was dumped from"
        )
    available = await conn.fetchval(
        "SELECT string_agg(version, ', ') FROM pg_available_extension_versions WHERE name = 'timescaledb'"
    )
    if not available:
        raise DatabaseError(
            f"{file} was made with TimescaleDB {dump_version}, but this PostgreSQL server does not have "
            f"the timescaledb extension; install TimescaleDB {dump_version} first"
        )
    literal = await conn.fetchval("SELECT quote_literal($1)", dump_version)
    try:
        await conn.execute(f"CREATE EXTENSION IF NOT EXISTS timescaledb VERSION {literal}")
    except asyncpg.PostgresError as exc:
        raise DatabaseError(
            f"{file} was made with TimescaleDB {dump_version}; this server cannot create that version "
            f"(available: {available}): {exc}"
        ) from exc
    installed = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if installed != dump_version:
        raise DatabaseError(
            f"{file} was made with TimescaleDB {dump_version}, the target database has {installed}; "
            "restore into a server with the same version"
        )
    await conn.execute("SELECT timescaledb_pre_restore()")


async def _ensure_readonly_role(conn: asyncpg.Connection) -> None:
    """The dump grants to the cluster-wide read-only role; a fresh server needs it to exist."""
    if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", READONLY_ROLE):
        return
    try:
        await conn.execute(f"CREATE ROLE {READONLY_ROLE} NOLOGIN")
    except asyncpg.DuplicateObjectError:
        pass
    except asyncpg.InsufficientPrivilegeError:
        log.warning("cannot create role %s; grants to it in the backup will fail", READONLY_ROLE)


async def _listing(target: Target, file: Path) -> str:
    try:
        return await _run_tool(target, "pg_restore", ["--list", str(file)], app=None)
    except DatabaseError as exc:
        raise ValidationError(f"{file} is not a pg_dump custom-format backup: {exc.message}") from None


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_manifest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tool(target: Target, name: str) -> str:
    """pg_dump/pg_restore of the managed cluster's binaries, else the newest server's, else PATH."""
    bindirs: list[Path] = []
    if target.managed is not None:
        bindirs.append(target.managed.bindir)
    else:
        with contextlib.suppress(ManagedDatabaseError):
            bindirs.append(find_bindir())
    for bindir in bindirs:
        if (bindir / name).is_file():
            return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise DatabaseError(f"{name} not found; install the PostgreSQL client tools")
    return found


def libpq_connection(dsn: str) -> tuple[str, dict[str, str]]:
    """Split the password out of a URL into PGPASSWORD, so it is not visible in the process list."""
    parts = urlsplit(dsn)
    env: dict[str, str] = {}
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}@{netloc[1]}")
    return urlunsplit(parts), env


async def _run_tool(target: Target, name: str, args: Sequence[str], *, app: str | None) -> str:
    tool = _tool(target, name)
    argv = [tool, *args]
    env = dict(os.environ)
    if app is not None:
        dsn, secret_env = libpq_connection(target.dsn)
        env.update(secret_env)
        env["PGAPPNAME"] = app
        argv.insert(1, f"--dbname={dsn}")
    result = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise DatabaseError(f"{name} failed: " + "\n".join(lines[-15:]))
    for line in result.stderr.splitlines():
        log.debug("%s: %s", name, line)
    return result.stdout
