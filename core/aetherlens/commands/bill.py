"""``aetherlens bill``: the contract's bill per billing cycle, as JSON (``--json``) or a table."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from aetherlens.commands._costs_db import connect
from aetherlens.config import Settings
from aetherlens.costs import service
from aetherlens.costs.files import read_document, tariff_from_document
from aetherlens.costs.tariff import Tariff


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bill", help="bill per billing cycle for a tariff", description="Price metered energy with a tariff."
    )
    parser.add_argument("--tariff", required=True, help="a tariff file (YAML or URDB JSON) or a stored id")
    parser.add_argument("--device", help="bill one device on its own (default: the site)")
    parser.add_argument("--from", dest="start", required=True, help="ISO date or datetime (tariff's zone)")
    parser.add_argument("--to", dest="end", required=True, help="ISO date or datetime, exclusive")
    parser.add_argument("--json", action="store_true", help="print the bill JSON list")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    tariff: str | Tariff = args.tariff
    path = Path(args.tariff)
    if path.is_file():
        tariff, _ = tariff_from_document(read_document(path), timezone=settings.site.timezone)

    async def run() -> list[dict[str, Any]]:
        async with connect(settings) as conn:
            return await service.bill(
                conn, tariff, args.start, args.end, args.device, meter_device=settings.site.meter_device
            )

    bills = asyncio.run(run())
    if args.json:
        print(orjson.dumps(bills).decode())
    else:
        print(render_table(bills))
    return 0


def render_table(bills: list[dict[str, Any]]) -> str:
    columns = (
        "start",
        "end",
        "kwh",
        "peak_kw",
        "energy",
        "fixed",
        "demand",
        "minimum",
        "export_credit",
        "total",
    )
    lines = ["  ".join(f"{c:>13}" if i > 1 else f"{c:<25}" for i, c in enumerate(columns))]
    for b in bills:
        cells = [f"{b['start']:<25}", f"{b['end']:<25}"]
        cells += [f"{b[c]:>13.3f}" if c in ("kwh", "peak_kw") else f"{b[c]:>13.2f}" for c in columns[2:]]
        lines.append("  ".join(cells))
    if bills:
        lines.append(
            f"{'':<25}  {'total ' + bills[0]['currency']:>25}  " + f"{sum(b['total'] for b in bills):>13.2f}"
        )
    return "\n".join(lines)
