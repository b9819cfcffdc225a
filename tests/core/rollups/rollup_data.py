"""Data helpers of the rollup tests (imported by name)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from aetherlens.db.rollups import mark_pending

Row = tuple[datetime, str, str, float]
COLUMNS = (
    "bucket",
    "device_id",
    "metric_type",
    "avg",
    "min",
    "max",
    "sum",
    "count",
    "first",
    "last",
    "increase",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def write(conn: asyncpg.Connection, rows: Iterable[Row]) -> None:
    """What the writer does: the rows and their pending hours in one transaction."""
    records = [(t, device, metric, value, None, None) for t, device, metric, value in rows]
    async with conn.transaction():
        await conn.copy_records_to_table(
            "metrics", records=records, columns=["time", "device_id", "metric_type", "value", "unit", "tags"]
        )
        await mark_pending(conn, [r[0] for r in records])


async def rollup_rows(conn: asyncpg.Connection, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    assert table in ("metrics_hourly", "metrics_daily")
    rows = await conn.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY bucket, device_id, metric_type"
    )
    return {(r["bucket"], r["device_id"], r["metric_type"]): dict(r) for r in rows}


def synthetic(start: datetime, hours: int) -> list[Row]:
    """Three devices, power and two counters with resets and gaps; deterministic, irregular intervals."""
    rows: list[Row] = []
    counters = {"plug-1": 100.0, "meter": 5000.0, "inverter": 0.0}
    step = 0
    t = start
    end = start + timedelta(hours=hours)
    while t < end:
        step += 1
        for n, device in enumerate(counters):
            if device == "plug-1" and 10 <= (t - start).total_seconds() / 3600 % 24 < 11:
                continue  # an hour without samples every day
            rows.append((t, device, "power", 200.0 + 150.0 * math.sin(step / 7.0 + n)))
            counters[device] += abs(math.cos(step / 5.0 + n)) * 0.05
            if step % 97 == n:  # counter reset (device reboot)
                counters[device] = abs(math.sin(step)) * 0.01
            kind = "energy_exported" if device == "inverter" else "energy"
            rows.append((t, device, kind, round(counters[device], 6)))
        t += timedelta(seconds=240 + (step * 37) % 300)
    return rows


def assert_same(
    left: dict[tuple[Any, ...], dict[str, Any]], right: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    assert left.keys() == right.keys()
    for key, row in left.items():
        other = right[key]
        for column in COLUMNS[3:]:
            a, b = row[column], other[column]
            if a is None or b is None:
                assert a is None and b is None, (key, column, a, b)
            else:
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (key, column, a, b)


def hours_of(rows: Sequence[Row]) -> set[datetime]:
    return {r[0].replace(minute=0, second=0, microsecond=0) for r in rows}
