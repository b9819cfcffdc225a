"""``aetherlens backup`` and ``aetherlens restore``: pg_dump custom-format files with rotation.

With the managed database the cluster is started for the command if it is not running, and stopped
again afterwards if the command started it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from aetherlens.config import Settings
from aetherlens.db import backup as backups
from aetherlens.db.database import database_target


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser(
        "backup",
        help="write a pg_dump custom-format backup (prints its path)",
        description="Back up the database with pg_dump -Fc into DIR, keeping the newest N backups.",
    )
    backup.add_argument("--output", type=Path, help="directory for backups (default: DATA_DIR/backups)")
    backup.add_argument(
        "--keep", type=_positive, default=backups.DEFAULT_KEEP, help="backups to keep (default: %(default)s)"
    )
    backup.set_defaults(handler=_backup)

    restore = subparsers.add_parser(
        "restore",
        help="restore a backup made by `aetherlens backup`",
        description="Restore FILE into the database. Refuses while a core is running on it, and refuses "
        "a non-empty database unless --force (which drops and recreates it first).",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="backup file (.dump)")
    restore.add_argument("--force", action="store_true", help="replace the contents of a non-empty database")
    restore.set_defaults(handler=_restore)


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    output: Path = (args.output or settings.data_dir / "backups").absolute()

    async def run() -> backups.BackupResult:
        async with database_target(settings) as target:
            return await backups.backup(target, output, keep=args.keep)

    result = asyncio.run(run())
    print(result.path)
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    file: Path = args.file.absolute()

    async def run() -> None:
        async with database_target(settings) as target:
            await backups.restore(target, file, force=args.force)

    asyncio.run(run())
    return 0
