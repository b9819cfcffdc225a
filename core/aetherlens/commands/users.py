"""``aetherlens users create NAME --role R | set-password NAME`` (also ``list``).

The password is read from stdin with ``--password-stdin`` (one line) or prompted for twice on a
terminal; it never appears on the command line, in the process list or in a log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from aetherlens.auth import queries as q
from aetherlens.auth.passwords import check_policy
from aetherlens.auth.principal import ROLES
from aetherlens.commands._auth_db import auth_service
from aetherlens.config import Settings
from aetherlens.errors import ValidationError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="manage users of the API")
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.set_defaults(handler=_create)
    setpw = sub.add_parser("set-password", help="set a user's password (ends their sessions)")
    setpw.add_argument("name")
    setpw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    setpw.set_defaults(handler=_set_password)
    listing = sub.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ValidationError("the passwords do not match")
    else:
        raise ValidationError("no terminal to prompt on: pass --password-stdin and pipe the password")
    check_policy(password)
    return password


def _create(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password_stdin)

    async def run() -> None:
        async with auth_service(settings) as service:
            await service.create_user(args.name, args.role, password)

    asyncio.run(run())
    print(args.name)
    return 0


def _set_password(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password_stdin)

    async def run() -> None:
        async with auth_service(settings) as service:
            await service.update_user(args.name, role=None, password=password)

    asyncio.run(run())
    print(args.name)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> list[Any]:
        async with auth_service(settings) as service:
            return await q.list_users(service.pool)

    rows = asyncio.run(run())
    if args.json:
        print(json.dumps([{"name": r["name"], "role": r["role"]} for r in rows]))
    else:
        for r in rows:
            print(f"{r['name']:<32} {r['role']}")
    return 0
