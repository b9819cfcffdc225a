"""A core-like child process for the outage test: Collector + Writer ingesting steadily.

argv: dsn spool_dir first_value
Every metric's value is a unique integer (starting at first_value), so the parent can check each
acknowledged metric is stored exactly once. Prints, flushed line by line:
  ACK <first> <last>         after submit() returned for metrics first..last (inclusive)
  STATUS <spool_batches> <db_reachable>   every 50 ms
  DONE                       after a clean shutdown (stdin closed)
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from aetherlens.collect import Collector
from aetherlens.config import Settings, WriterSettings
from aetherlens.db.writer import Writer

BATCH = 50


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    dsn, spool_dir, first = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    writer_settings = WriterSettings(batch_size=500, flush_interval=0.05, retry_initial=0.1, retry_max=0.5)
    settings = Settings(writer=writer_settings)
    # min_size=0: the child must start even while the database is down.
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
    writer = Writer(dsn, writer_settings, spool_dir, connect_timeout=2.0)
    await writer.start()
    collector = Collector(writer, pool, settings)
    await collector.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)

    async def report() -> None:
        while True:
            status = writer.status()
            out(f"STATUS {status['spool_batches']} {status['db_reachable']}")
            await asyncio.sleep(0.05)

    reporter = asyncio.create_task(report())
    value = first
    while not stop.is_set():
        now = datetime.now(UTC)
        batch = [
            {"time": now.isoformat(), "device_id": f"dev{i % 5}", "metric_type": "power", "value": value + i}
            for i in range(BATCH)
        ]
        result = await collector.submit(batch, source="outage-test")
        assert result.accepted == BATCH, result.rejected
        out(f"ACK {value} {value + BATCH - 1}")
        value += BATCH
        await asyncio.sleep(0.01)
    await writer.close()
    reporter.cancel()
    await pool.close()
    out(f"STATUS {writer.status()['spool_batches']} {writer.status()['db_reachable']}")
    out("DONE")


if __name__ == "__main__":
    asyncio.run(main())
