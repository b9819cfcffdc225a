"""``aetherlens import-tariff FILE``: store a tariff (our YAML or OpenEI URDB JSON); prints its id."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from aetherlens.commands._costs_db import connect
from aetherlens.config import Settings
from aetherlens.costs import store
from aetherlens.costs.files import read_document, tariff_from_document


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-tariff",
        help="store a tariff from our YAML or OpenEI URDB JSON (prints its id)",
        description="Store a tariff version. URDB rates carry no time zone or holidays: give them here.",
    )
    parser.add_argument("file", type=Path, help='tariff YAML, or URDB JSON (rate, list or {"items": [...]})')
    parser.add_argument("--timezone", help="IANA zone (default: site.timezone)")
    parser.add_argument("--holidays", help="holiday calendar CC or CC-SUB, e.g. US-CA (default: none)")
    parser.add_argument("--name", help="name to store the tariff under")
    parser.add_argument("--label", help="URDB label picking one rate of several")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    tariff, source = tariff_from_document(
        read_document(args.file),
        timezone=args.timezone or settings.site.timezone,
        holidays=args.holidays,
        name=args.name,
        label=args.label,
    )

    async def run() -> str:
        async with connect(settings) as conn:
            return await store.insert_tariff(conn, tariff, source=source)

    print(asyncio.run(run()))
    return 0
