"""Writer test data: rows in the writer's shape and a helper to read back what landed.

A plain module imported by name (like ``dbtest``), not ``conftest``: ``from conftest import ...``
gets whichever conftest pytest loaded last, so it broke when another folder was collected too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from aetherlens.db.writer import Row

BASE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def make_rows(n: int, device: str = "dev1", start: int = 0, metric_type: str = "power") -> list[Row]:
    return [
        (BASE + timedelta(seconds=start + i), device, metric_type, float(start + i), "W", None)
        for i in range(n)
    ]


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM metrics"))
    finally:
        await conn.close()
