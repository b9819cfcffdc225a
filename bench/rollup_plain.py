"""Plain-PostgreSQL rollup job throughput against a ceiling measured in the same run.

Loads DEVICES x 2 metric types x MINUTES one-minute samples (the PERFORMANCE-NOTES shape) into a scratch
database on the machine's server, marks every hour pending and times ``RollupJob.run_until_idle``
(hourly + daily, first/last, reset-aware increase). The ceiling is one GROUP BY over the same rows that
computes only avg/min/max/sum/count per hour: the least work any hourly rollup must do.

    .venv/bin/python bench/rollup_plain.py [--devices 100] [--minutes 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from aetherlens.db.capabilities import Capabilities
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.rollups import RollupJob, mark_pending
from scratch import create_scratch_database, drop_scratch_database

PLAIN = Capabilities(pg_version="bench")
START = datetime(2026, 1, 1, tzinfo=UTC)

LOAD_SQL = """
INSERT INTO metrics (time, device_id, metric_type, value, unit)
SELECT $1::timestamptz + make_interval(mins => i), 'dev' || d, mt,
       CASE WHEN mt = 'energy' THEN i * 0.01 ELSE 100 + (i * d) % 37 END, 'x'
FROM generate_series(0, $2 - 1) AS i, generate_series(1, $3) AS d, unnest(ARRAY['power', 'energy']) AS mt
ORDER BY 1
"""
CEILING_SQL = """
SELECT date_bin('1 hour', time, timestamptz '2000-01-01'), device_id, metric_type,
       avg(value), min(value), max(value), sum(value), count(*)
FROM metrics GROUP BY 1, 2, 3
"""


async def main(devices: int, minutes: int) -> None:
    name, dsn = await create_scratch_database("rollup")
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn, PLAIN)
            await conn.execute(LOAD_SQL, START, minutes, devices)
            await conn.execute("ANALYZE metrics")
            rows = devices * 2 * minutes
            hours = [START + timedelta(hours=h) for h in range(minutes // 60 + 1)]

            started = time.perf_counter()
            await conn.fetch(CEILING_SQL)
            ceiling = time.perf_counter() - started

            await mark_pending(conn, hours)
            started = time.perf_counter()
            result = await RollupJob(PLAIN).run_until_idle(conn)
            job = time.perf_counter() - started
        finally:
            await conn.close()
    finally:
        await drop_scratch_database(name)
    print(f"rows: {rows:,}  hours: {len(result.hours)}  days: {len(result.days)}")
    print(
        f"ceiling (GROUP BY avg/min/max/sum/count per hour): {ceiling:.2f} s = {rows / ceiling:,.0f} rows/s"
    )
    print(f"RollupJob (hourly + daily, first/last, increase):   {job:.2f} s = {rows / job:,.0f} rows/s")
    print(f"ratio job / ceiling: {job / ceiling:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.minutes))
