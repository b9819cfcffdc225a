"""The exact cost history on TimescaleDB (cost_calculations a hypertable, migration 031 replacing the old
cost continuous aggregates by tables) gives the same rows and bills as on plain PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from aetherlens.costs import service
from aetherlens.costs.job import CostJob

from .data import counter, write
from .helpers import cents, utc
from .test_history import RICH_NY

pytestmark = pytest.mark.timescaledb


async def test_cost_history_is_the_same_on_both_storage_paths(both_paths: tuple[Any, ...]) -> None:
    start = utc(2026, 2, 25)
    readings = (
        counter("main", start, 20 * 96, 0.4, minutes=15)
        + counter("tv", start, 20 * 96, 0.1, minutes=15)
        + counter("pc", start, 20 * 96, 0.15, minutes=15)
    )
    now = start + dt.timedelta(days=20)
    results = []
    plain, tsdb, _ = both_paths
    for conn in (plain, tsdb):
        money = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'cost_calculations' AND column_name = 'cost'"
        )
        assert money == "numeric"
        tid = await service.create_tariff(conn, RICH_NY)
        await write(conn, readings)
        await CostJob(meter_device="main").run_once(conn, now=now)
        rows = await conn.fetch(
            "SELECT time, device_id, cost FROM cost_calculations ORDER BY time, device_id"
        )
        days = await service.history(conn, None, "2026-02-25", "2026-03-16", "day")
        (march,) = await service.bill(conn, tid, "2026-03-01", "2026-03-16", meter_device="main")
        items = await service.device_costs(conn, "2026-03-01", "2026-03-16", meter_device="main", now=now)
        assert cents(sum((Decimal(repr(i["cost"])) for i in items), Decimal(0))) == cents(march["total"])
        results.append(([(r["time"], r["device_id"], r["cost"]) for r in rows], days, march["total"]))
    (plain_rows, plain_days, plain_total), (tsdb_rows, tsdb_days, tsdb_total) = results
    assert plain_rows and plain_rows == tsdb_rows
    assert plain_days == tsdb_days and plain_days["points"][0]["time"] == "2026-02-25T00:00:00-05:00"
    assert plain_total == tsdb_total
