"""What the alert engine reads from the cost engine, as plain callables the runtime wires in.

The alert engine and the cost engine are siblings (pyproject.toml's layers), so the engine never imports
``aetherlens.costs``; the runtime hands it a :class:`CostSource` built from ``costs.service`` instead
(``aetherlens.runtime.cost_source``). The calls are the API's own: the summary of GET /costs/summary
(with its projected cycle total) and the hourly points of GET /costs/history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class TariffView:
    """The active tariff as far as windows need it."""

    zone: dt.tzinfo
    currency: str
    cycle: Callable[[dt.datetime], tuple[dt.datetime, dt.datetime]]  # billing cycle containing a time


@dataclass(frozen=True, slots=True)
class CostSource:
    # GET /costs/summary's dict at ``now``: today, month_to_date, projected_month (None while unknown).
    summary: Callable[[asyncpg.Connection, dt.datetime], Awaitable[dict[str, Any]]]
    # Hourly points {"time", "kwh", "cost"} of a device (None = the site) in [start, end).
    history: Callable[
        [asyncpg.Connection, str | None, dt.datetime, dt.datetime], Awaitable[list[dict[str, Any]]]
    ]
    # The tariff in force at a time, or None without one.
    tariff: Callable[[asyncpg.Connection, dt.datetime], Awaitable[TariffView | None]]


async def _no_summary(conn: asyncpg.Connection, now: dt.datetime) -> dict[str, Any]:
    return {"today": None, "month_to_date": None, "projected_month": None}


async def _no_history(
    conn: asyncpg.Connection, device_id: str | None, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    return []


async def _no_tariff(conn: asyncpg.Connection, now: dt.datetime) -> TariffView | None:
    return None


NO_COSTS = CostSource(summary=_no_summary, history=_no_history, tariff=_no_tariff)
