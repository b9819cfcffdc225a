"""``aetherlens migrate [--status] [--json]``: apply pending migrations, or list every migration's state.

Works on the configured server or the managed cluster (started for the command and stopped again if
this command started it). stdout carries only the result: the names applied (or the status table);
progress goes to stderr through the log. Like ``serve`` and ``demo``, the first ``migrate`` creates user
``admin`` if absent (CONTRACT.md); a generated password is shown once on the terminal (stderr), never
logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aetherlens.auth.service import ensure_admin
from aetherlens.config import Settings
from aetherlens.db.capabilities import probe
from aetherlens.db.database import connect, database_target
from aetherlens.db.migrations import MigrationStatus, apply_migrations, migration_status
from aetherlens.db.pool import create_pool
from aetherlens.db.retention import apply_retention_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply (or list) database migrations",
        description="Apply pending schema migrations in order, or list them with --status.",
    )
    parser.add_argument(
        "--status", action="store_true", help="list migrations and their state; change nothing"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.status:
        statuses, mode = asyncio.run(_status(settings))
        _print_status(statuses, mode, as_json=args.json)
        return 0
    applied, admin_password = asyncio.run(_apply(settings))
    if admin_password:
        print(f"created user 'admin'; its password (shown once): {admin_password}", file=sys.stderr)
    if args.json:
        print(json.dumps({"applied": applied}))
    else:
        for name in applied:
            print(name)
    return 0


async def _apply(settings: Settings) -> tuple[list[str], str | None]:
    async with database_target(settings) as target:
        conn = await connect(target.dsn, "aetherlens-migrate")
        try:
            capabilities = await probe(conn)
            applied = await apply_migrations(conn, capabilities)
            await apply_retention_settings(conn, capabilities, settings.retention)
        finally:
            await conn.close()
        pool = await create_pool(target.dsn, settings, min_size=1, max_size=1)
        try:
            return applied, await ensure_admin(pool, settings)
        finally:
            await pool.close()


async def _status(settings: Settings) -> tuple[list[MigrationStatus], str]:
    async with database_target(settings) as target:
        conn = await connect(target.dsn, "aetherlens-migrate")
        try:
            capabilities = await probe(conn)
            return await migration_status(conn, capabilities), capabilities.storage_mode
        finally:
            await conn.close()


def _print_status(statuses: list[MigrationStatus], mode: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"storage_mode": mode, "migrations": [s.as_dict() for s in statuses]}))
        return
    header = ("VERSION", "NAME", "REQUIRES", "STATE", "APPLIED AT")
    rows = [
        (
            f"{s.version:03d}",
            s.name,
            s.requires,
            s.state,
            s.applied_at.strftime("%Y-%m-%d %H:%M:%S%z") if s.applied_at else "-",
        )
        for s in statuses
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
