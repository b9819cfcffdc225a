"""``aetherlens api-keys create --name N --scopes S[,S] | list [--json] | revoke ID``.

``create`` prints the key once on stdout (only a digest is stored); nothing here logs a key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aetherlens.auth import queries as q
from aetherlens.auth.principal import SCOPES
from aetherlens.commands._auth_db import auth_service
from aetherlens.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("api-keys", help="create, list or revoke API keys")
    sub = parser.add_subparsers(dest="api_keys_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="what the key is for (e.g. grafana, home-assistant)")
    create.add_argument(
        "--scopes", required=True, type=_scopes, help=f"comma-separated scopes of {', '.join(SCOPES)}"
    )
    create.add_argument("--json", action="store_true", help="print id, name, scopes and key as JSON")
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="list live keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key's id (from list)")
    revoke.set_defaults(handler=_revoke)


def _scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SCOPES)}"
        )
    return scopes


def _create(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> Any:
        async with auth_service(settings) as service:
            return await service.create_key(args.name, args.scopes)

    created = asyncio.run(run())
    if args.json:
        print(
            json.dumps({"id": created.id, "name": created.name, "scopes": created.scopes, "key": created.key})
        )
    else:
        print(created.key)
        print(
            f"created API key {created.id} ({', '.join(created.scopes)}); it is shown only now",
            file=sys.stderr,
        )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> list[Any]:
        async with auth_service(settings) as service:
            return await q.list_keys(service.pool)

    rows = asyncio.run(run())
    items = [
        {
            "id": r["id"],
            "name": r["name"],
            "prefix": r["prefix"],
            "scopes": list(r["scopes"]),
            "created_at": r["created_at"].isoformat(),
            "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None,
        }
        for r in rows
    ]
    if args.json:
        print(json.dumps(items))
        return 0
    for item in items:
        print(f"{item['id']}  al_{item['prefix']}_…  {','.join(item['scopes']):<28} {item['name']}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> None:
        async with auth_service(settings) as service:
            await service.revoke_key(args.id)

    asyncio.run(run())
    print(args.id)
    return 0
