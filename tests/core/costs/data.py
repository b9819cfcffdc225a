"""Writing metric readings for the database tests."""

from __future__ import annotations

import datetime as dt

import asyncpg


async def write(conn: asyncpg.Connection, rows: list[tuple[dt.datetime, str, str, float]]) -> None:
    await conn.copy_records_to_table(
        "metrics",
        records=[(t, d, m, v) for t, d, m, v in rows],
        columns=["time", "device_id", "metric_type", "value"],
    )


def counter(
    device: str,
    start: dt.datetime,
    steps: int,
    kwh_per_step: float,
    minutes: int = 60,
    first: float = 0.0,
    metric: str = "energy",
) -> list[tuple[dt.datetime, str, str, float]]:
    """A cumulative counter read every ``minutes``: ``steps`` intervals of ``kwh_per_step`` each."""
    return [
        (start + dt.timedelta(minutes=minutes * i), device, metric, first + kwh_per_step * i)
        for i in range(steps + 1)
    ]
