"""``aetherlens db start|stop|status``: the managed (embedded) PostgreSQL cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aetherlens.config import Settings
from aetherlens.db.database import APP_DATABASE, ensure_database
from aetherlens.db.managed import ManagedPostgres
from aetherlens.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "db",
        help="start, stop or inspect the managed database",
        description="Manage the embedded PostgreSQL cluster used when database.url is not set.",
    )
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start", help="start the managed cluster in the background (prints its DSN)", description=None
    )
    start.set_defaults(handler=_start)
    stop = actions.add_parser("stop", help="stop the managed cluster (fast shutdown)")
    stop.set_defaults(handler=_stop)
    status = actions.add_parser("status", help="print state, pid, socket, port and version")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _managed(settings: Settings) -> ManagedPostgres:
    if settings.database.url is not None:
        raise ConfigError(
            "database.url is set, so the managed database is not used; `aetherlens db` manages only the "
            "embedded cluster (unset database.url / AETHERLENS_DATABASE_URL to use it)"
        )
    return ManagedPostgres(settings)


def _start(args: argparse.Namespace, settings: Settings) -> int:
    managed = _managed(settings)
    # Detached: it keeps running after this command, and no later process treats it as an orphan.
    admin_dsn = managed.start(detach=True)
    asyncio.run(ensure_database(admin_dsn, APP_DATABASE))
    print(managed.dsn(APP_DATABASE))
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _managed(settings).stop()
    print("stopped" if stopped else "not running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    status = _managed(settings).status()
    data = status.as_dict()
    if args.json:
        print(json.dumps(data))
        return 0
    socket = f"{status.socket_dir}/.s.PGSQL.{status.port}" if status.port else str(status.socket_dir)
    rows = [
        ("state", status.state),
        ("pid", status.pid if status.pid is not None else "-"),
        ("socket", socket),
        ("port", status.listen_port if status.listen_port else "- (unix socket only)"),
        ("version", status.version or "-"),
        ("data", status.data_dir),
    ]
    for key, value in rows:
        print(f"{key:<8} {value}")
    return 0
