"""Migration runner: plain SQL files ``migrations/NNN_name.sql`` applied in order, each in a transaction.

Rules (docs/ARCHITECTURE.md, "Schema"):

* Each file runs in one transaction with its ``migration_history`` row, so statements that cannot run
  inside a transaction (``CREATE INDEX CONCURRENTLY``, ``CALL refresh_continuous_aggregate``) do not
  belong in migrations.
* Every applied file is recorded in ``migration_history`` with the sha256 of its bytes; a run refuses to
  start (``MigrationError`` naming the file) when an applied file changed on disk.
* Two processes starting at once are safe: the whole run holds a session advisory lock, so one applies
  and the other waits, then finds nothing left to do.
* A first line ``-- requires: timescaledb`` (hypertables) or ``-- requires: timescaledb-tsl``
  (compression, continuous aggregates, policies) marks a file that applies only with that capability;
  ``-- requires: plain`` marks its twin for when no TimescaleDB variant of the same number applies. The
  variants of one number create the same relation names. An unmarked file applies everywhere and must
  be the only file with its number.
* The storage mode (``timescaledb`` or ``plain``) and the rollup mode (``continuous_aggregates`` or
  ``tables``) are recorded in ``core_state`` by the first run; a later run on a server whose
  capabilities no longer match raises ``CapabilityChangedError`` saying what changed and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import asyncpg

from aetherlens.errors import CapabilityChangedError, MigrationError

log = logging.getLogger(__name__)

# Any constant works as long as every AetherLens process uses the same one.
MIGRATION_LOCK_KEY: Final = 0x4165_7468_4D69_6721  # "AethMig!"
ENV_DIRECTORY: Final = "AETHERLENS_MIGRATIONS_DIR"

Requirement = Literal["any", "plain", "timescaledb", "timescaledb-tsl"]
_REQUIREMENTS: Final[tuple[str, ...]] = ("plain", "timescaledb", "timescaledb-tsl")
_FILE_PATTERN: Final = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_REQUIRES_PATTERN: Final = re.compile(r"^--\s*requires:\s*(\S+)\s*$")

_HISTORY_DDL: Final = """
CREATE TABLE IF NOT EXISTS migration_history (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    requires     text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms double precision NOT NULL
)
"""


class CapabilitiesLike(Protocol):
    """What the runner needs of ``aetherlens.db.capabilities.Capabilities``."""

    @property
    def timescaledb(self) -> bool: ...

    @property
    def timescaledb_tsl(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class MigrationFile:
    version: int
    name: str  # file name, e.g. "008_metrics_plain.sql"
    requires: Requirement
    path: Path
    checksum: str

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    requires: str
    # applied | pending | not_applicable (a variant for another storage mode) | changed (applied, but the
    # file differs now) | missing (applied, but no longer on disk: a newer core's migration?)
    state: str
    applied_at: datetime | None = None
    checksum: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "name": self.name,
            "requires": self.requires,
            "state": self.state,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "checksum": self.checksum,
        }


@dataclass(frozen=True, slots=True)
class _Applied:
    version: int
    name: str
    requires: str
    checksum: str
    applied_at: datetime


def storage_mode(capabilities: CapabilitiesLike) -> str:
    return "timescaledb" if capabilities.timescaledb else "plain"


def rollup_mode(capabilities: CapabilitiesLike) -> str:
    if capabilities.timescaledb and capabilities.timescaledb_tsl:
        return "continuous_aggregates"
    return "tables"


def default_directory() -> Path:
    """$AETHERLENS_MIGRATIONS_DIR, else the repository's ``migrations/``, else the installed copy."""
    configured = os.environ.get(ENV_DIRECTORY)
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise MigrationError(f"{ENV_DIRECTORY}={configured} is not a directory")
        return path
    candidates = (
        Path(__file__).parents[3] / "migrations",  # a checkout (editable install)
        Path(sys.prefix) / "share" / "aetherlens" / "migrations",  # a wheel's data files (pyproject)
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MigrationError(
        "no migrations directory found (looked at "
        + ", ".join(str(c) for c in candidates)
        + f"); set {ENV_DIRECTORY}"
    )


def discover(directory: Path) -> list[MigrationFile]:
    """Every migration file of ``directory`` in (version, name) order, with its requirement marker."""
    files: list[MigrationFile] = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is not named NNN_name.sql (three digits, lowercase name)"
            )
        data = path.read_bytes()
        first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
        requires: Requirement = "any"
        marker = _REQUIRES_PATTERN.match(first_line)
        if marker is not None:
            value = marker.group(1)
            if value not in _REQUIREMENTS:
                raise MigrationError(
                    f"migration {path.name}: unknown requirement {value!r} "
                    f"(allowed: {', '.join(_REQUIREMENTS)})"
                )
            requires = value  # type: ignore[assignment]
        files.append(
            MigrationFile(int(match.group(1)), path.name, requires, path, hashlib.sha256(data).hexdigest())
        )
    _check_variants(files)
    return files


def _check_variants(files: Sequence[MigrationFile]) -> None:
    by_version: dict[int, list[MigrationFile]] = {}
    for f in files:
        by_version.setdefault(f.version, []).append(f)
    for version, variants in by_version.items():
        names = ", ".join(v.name for v in variants)
        kinds = [v.requires for v in variants]
        if len(variants) > 1 and "any" in kinds:
            raise MigrationError(
                f"migrations {names} share number {version:03d}; an unmarked file must be alone "
                "(mark the variants with -- requires: timescaledb|timescaledb-tsl|plain)"
            )
        if len(kinds) != len(set(kinds)):
            raise MigrationError(f"migrations {names} share number {version:03d} and the same requirement")


def select(files: Sequence[MigrationFile], capabilities: CapabilitiesLike) -> dict[int, MigrationFile]:
    """The one variant of each number that applies with these capabilities (numbers with none are left out).

    Preference: timescaledb-tsl (if licensed) > timescaledb (if present) > plain; unmarked always.
    """
    chosen: dict[int, MigrationFile] = {}
    for f in files:
        rank = _rank(f.requires, capabilities)
        if rank is None:
            continue
        current = chosen.get(f.version)
        if current is None or rank > (_rank(current.requires, capabilities) or 0):
            chosen[f.version] = f
    return dict(sorted(chosen.items()))


def _rank(requires: str, capabilities: CapabilitiesLike) -> int | None:
    if requires == "any":
        return 3
    if requires == "timescaledb-tsl":
        return 2 if capabilities.timescaledb and capabilities.timescaledb_tsl else None
    if requires == "timescaledb":
        return 1 if capabilities.timescaledb else None
    return 0  # plain: applies when no TimescaleDB variant of its number does


async def apply_migrations(
    conn: asyncpg.Connection, capabilities: CapabilitiesLike, directory: Path | None = None
) -> list[str]:
    """Apply every pending migration; return the names applied (empty when the schema is current)."""
    files = discover(directory or default_directory())
    wanted = select(files, capabilities)
    applied_names: list[str] = []
    async with _migration_lock(conn):
        await conn.execute(_HISTORY_DDL)
        await _check_storage_mode(conn, capabilities)
        applied = await _applied(conn)
        _verify_checksums(applied, files)
        for version, migration in wanted.items():
            if version in applied:
                continue
            await _apply_one(conn, migration, capabilities)
            applied_names.append(migration.name)
        # A database migrated before core_state existed (or by hand) still gets its mode recorded.
        await _record_modes(conn, capabilities)
    if applied_names:
        log.info("applied %d migration(s): %s", len(applied_names), ", ".join(applied_names))
    else:
        log.info("database schema is current (%d migrations applied)", len(wanted))
    return applied_names


async def migration_status(
    conn: asyncpg.Connection, capabilities: CapabilitiesLike, directory: Path | None = None
) -> list[MigrationStatus]:
    """Every known migration (files and history) with its state, without changing anything."""
    files = discover(directory or default_directory())
    wanted = select(files, capabilities)
    has_history = await conn.fetchval("SELECT to_regclass('migration_history') IS NOT NULL")
    applied = await _applied(conn) if has_history else {}
    by_name = {f.name: f for f in files}
    result: list[MigrationStatus] = []
    for f in files:
        record = applied.get(f.version)
        if record is not None and record.name == f.name:
            state = "applied" if record.checksum == f.checksum else "changed"
            result.append(
                MigrationStatus(f.version, f.name, f.requires, state, record.applied_at, f.checksum)
            )
        elif record is None and wanted.get(f.version) is f:
            result.append(MigrationStatus(f.version, f.name, f.requires, "pending", None, f.checksum))
        else:
            result.append(MigrationStatus(f.version, f.name, f.requires, "not_applicable", None, f.checksum))
    for record in applied.values():
        if record.name not in by_name:
            result.append(
                MigrationStatus(
                    record.version,
                    record.name,
                    record.requires,
                    "missing",
                    record.applied_at,
                    record.checksum,
                )
            )
    result.sort(key=lambda s: (s.version, s.name))
    return result


@asynccontextmanager
async def _migration_lock(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Session advisory lock around a whole run; released even when a migration fails."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
        log.info("another process is applying migrations; waiting for it to finish")
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        yield
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _applied(conn: asyncpg.Connection) -> dict[int, _Applied]:
    rows = await conn.fetch(
        "SELECT version, name, requires, checksum, applied_at FROM migration_history ORDER BY version"
    )
    return {
        r["version"]: _Applied(r["version"], r["name"], r["requires"], r["checksum"], r["applied_at"])
        for r in rows
    }


def _verify_checksums(applied: dict[int, _Applied], files: Sequence[MigrationFile]) -> None:
    by_name = {f.name: f for f in files}
    for record in applied.values():
        current = by_name.get(record.name)
        if current is None:
            log.warning(
                "applied migration %s is not in the migrations directory (written by a newer core?)",
                record.name,
            )
            continue
        if current.checksum != record.checksum:
            raise MigrationError(
                f"migration {record.name} was applied on {record.applied_at:%Y-%m-%d %H:%M} UTC but the file "
                f"has changed since (checksum {record.checksum[:12]}… recorded, {current.checksum[:12]}… on "
                "disk). Applied migrations must never be edited: restore the file and put the change in "
                "a new migration.",
                details={"migration": record.name, "recorded": record.checksum, "on_disk": current.checksum},
            )


async def _apply_one(
    conn: asyncpg.Connection, migration: MigrationFile, capabilities: CapabilitiesLike
) -> None:
    log.info("applying migration %s", migration.name)
    sql = migration.sql()
    started = time.perf_counter()
    try:
        async with conn.transaction():
            await conn.execute(sql)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            await conn.execute(
                "INSERT INTO migration_history (version, name, requires, checksum, execution_ms) "
                "VALUES ($1, $2, $3, $4, $5)",
                migration.version,
                migration.name,
                migration.requires,
                migration.checksum,
                elapsed_ms,
            )
            await _record_modes(conn, capabilities)
    except asyncpg.PostgresError as exc:
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        hint = f" Hint: {exc.hint}" if getattr(exc, "hint", None) else ""
        raise MigrationError(
            f"migration {migration.name} failed and was rolled back: {exc}{detail}.{hint}",
            details={"migration": migration.name, "sqlstate": exc.sqlstate},
        ) from exc


async def _record_modes(conn: asyncpg.Connection, capabilities: CapabilitiesLike) -> None:
    if not await conn.fetchval("SELECT to_regclass('core_state') IS NOT NULL"):
        return
    await conn.execute(
        "INSERT INTO core_state (key, value) VALUES ('storage_mode', $1), ('rollup_mode', $2) "
        "ON CONFLICT (key) DO NOTHING",
        storage_mode(capabilities),
        rollup_mode(capabilities),
    )


async def recorded_modes(conn: asyncpg.Connection) -> dict[str, str]:
    """The storage and rollup modes recorded at the first migration (empty before it)."""
    if not await conn.fetchval("SELECT to_regclass('core_state') IS NOT NULL"):
        return {}
    rows = await conn.fetch("SELECT key, value FROM core_state WHERE key IN ('storage_mode', 'rollup_mode')")
    return {r["key"]: r["value"] for r in rows}


async def instance_id(db: Any) -> str:
    """This database's instance id (``/info``, the HA config entry's unique id), made by migration 001."""
    return str(await db.fetchval("SELECT value FROM core_state WHERE key = 'instance_id'"))


async def _check_storage_mode(conn: asyncpg.Connection, capabilities: CapabilitiesLike) -> None:
    check_storage_mode(await recorded_modes(conn), capabilities)


def check_storage_mode(recorded: dict[str, str], capabilities: CapabilitiesLike) -> None:
    """Raise CapabilityChangedError when the server no longer matches the recorded storage mode."""
    was, now = recorded.get("storage_mode"), storage_mode(capabilities)
    if was is not None and was != now:
        if was == "timescaledb":
            raise CapabilityChangedError(
                "this database was set up with TimescaleDB (storage mode 'timescaledb', recorded at its "
                "first migration) but the server no longer offers the timescaledb extension. Install "
                "TimescaleDB and preload it again (shared_preload_libraries = 'timescaledb'), or back the "
                "data up and restore it into a new database to continue on plain PostgreSQL.",
                details={"recorded": was, "current": now},
            )
        raise CapabilityChangedError(
            "this database was set up on plain PostgreSQL (storage mode 'plain', recorded at its first "
            "migration) but the timescaledb extension is now in use. The storage mode is not switched in "
            "place: run DROP EXTENSION timescaledb in this database (or stop preloading it) to keep the "
            "plain schema, or use a new, empty database to start on TimescaleDB.",
            details={"recorded": was, "current": now},
        )
    was_rollup, now_rollup = recorded.get("rollup_mode"), rollup_mode(capabilities)
    if was_rollup is not None and was_rollup != now_rollup:
        raise CapabilityChangedError(
            f"this database keeps its rollups as {was_rollup.replace('_', ' ')} (recorded at its first "
            f"migration) but the server now offers {now_rollup.replace('_', ' ')}: the TimescaleDB licence "
            "changed (timescaledb.license). Set timescaledb.license back to "
            f"'{'timescale' if was_rollup == 'continuous_aggregates' else 'apache'}', or restore a backup "
            "into a new database.",
            details={"recorded": was_rollup, "current": now_rollup},
        )
