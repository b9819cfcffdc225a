"""Push path benchmark: emit -> commit latency and throughput of a pushing plugin, next to the same
batches through ``Collector.submit()`` in the core's own process (the ceiling), measured in the same run.

    .venv/bin/python bench/push.py [--runs 300] [--batch 1] [--big-batch 1000] [--batches 200]
                                   [--concurrency 4]

A plugin (written to a temp directory, run unsigned by name) runs in its own process under the real
supervisor, with the real collector and writer on a temporary, migrated database on the machine's
server (created and dropped). Inside the plugin, each ``await emit(batch)`` is timed: it returns once
the core acknowledged the batch, i.e. after the writer committed it, so the time is emit -> commit as
the plugin sees it (frames both ways included). The ceiling is ``await collector.submit(batch)`` of
the same batches in the core process (no process boundary), measured before and after the plugin and
averaged, because the machine is shared and drifts. Latency: ``--runs`` sequential emits of ``--batch``
metrics; throughput: ``--batches`` batches of ``--big-batch`` metrics from ``--concurrency`` tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from aetherlens.collect import Collector
from aetherlens.config import load_settings
from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.pool import create_pool
from aetherlens.db.writer import Writer
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.runner import SupervisorOptions
from aetherlens.plugins.supervisor import Supervisor
from scratch import create_scratch_database, drop_scratch_database

MANIFEST = """\
id: bench_pusher
name: Push benchmark
version: 1.0.0
entry: "plugin:BenchPusher"
capabilities: [metrics.push]
config_schema: {type: object}
metrics: [{type: power, unit: W}]
timeout: 60
"""

PLUGIN = """\
import asyncio, time
from aetherlens.plugins.sdk import BasePlugin


class BenchPusher(BasePlugin):
    async def setup(self):
        self.result = {"done": False}

    def batch(self, device, start, size):
        return [
            self.metric(device, "power", float(i % 500), "W", time=start + i * 0.001) for i in range(size)
        ]

    async def run(self, emit):
        c = self.config
        base = time.time() - 3600
        latencies = []
        for n in range(c["runs"]):
            batch = self.batch("push-latency", base + n, c["batch"])
            began = time.perf_counter()
            await emit(batch)
            latencies.append(time.perf_counter() - began)
        queue = list(range(c["batches"]))

        async def worker():
            while queue:
                n = queue.pop()
                await emit(self.batch("push-bulk-%d" % (n % 8), base + 1000 + n, c["big_batch"]))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c["concurrency"])))
        elapsed = time.perf_counter() - began
        self.result = {"done": True, "latencies": latencies, "rate": c["batches"] * c["big_batch"] / elapsed}
        await asyncio.Event().wait()

    async def get_health(self):
        return self.result
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def batch(device: str, start: float, size: int) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    return [
        {
            "time": datetime.fromtimestamp(start + i * 0.001, UTC).isoformat(),
            "device_id": device,
            "metric_type": "power",
            "value": float(i % 500),
            "unit": "W",
        }
        for i in range(size)
    ]


async def direct(collector: Collector, args: argparse.Namespace, tag: str) -> tuple[list[float], float]:
    """The ceiling: the same batches through Collector.submit in this process."""
    base = time.time() - 7200
    latencies = []
    for n in range(args.runs):
        rows = batch(f"direct-{tag}-latency", base + n, args.batch)
        began = time.perf_counter()
        await collector.submit(rows, source="bench")
        latencies.append(time.perf_counter() - began)
    queue = list(range(args.batches))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            rows = batch(f"direct-{tag}-bulk-{n % 8}", base + 1000 + n, args.big_batch)
            result = await collector.submit(rows, source="bench")
            assert not result.rejected, result.rejected[:3]  # a refused batch is cheaper: not a ceiling

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return latencies, args.batches * args.big_batch / (time.perf_counter() - began)


async def run(args: argparse.Namespace) -> int:
    name, dsn = await create_scratch_database("push")
    with tempfile.TemporaryDirectory(prefix="aetherlens-bench-push-") as temp:
        root = Path(temp)
        plugin_dir = root / "plugins" / "bench_pusher"
        plugin_dir.mkdir(parents=True)
        (plugin_dir / "plugin.yaml").write_text(MANIFEST)
        (plugin_dir / "plugin.py").write_text(PLUGIN)
        config = {
            "runs": args.runs,
            "batch": args.batch,
            "big_batch": args.big_batch,
            "batches": args.batches,
            "concurrency": args.concurrency,
        }
        settings = load_settings(
            env={},
            data_dir=root / "data",
            database={"url": dsn},
            plugin_options={"directories": [str(root / "plugins")], "allow_unsigned": ["bench_pusher"]},
            plugins={"bench_pusher": {"enabled": False, "config": config}},
        )
        try:
            conn = await asyncpg.connect(dsn)
            await apply_migrations(conn, await probe(conn))
            await conn.close()
            pool = await create_pool(dsn, settings)
            writer = Writer(pool, settings.writer, root / "spool")
            await writer.start()
            collector = Collector(writer, pool, settings)
            await collector.start()
            print(
                f"push benchmark: {args.runs} sequential emits of {args.batch} metric(s); "
                f"{args.batches} x {args.big_batch:,}-metric batches from {args.concurrency} tasks"
            )
            before = await direct(collector, args, "before")
            enabled = settings.model_copy(
                update={
                    "plugins": {
                        "bench_pusher": settings.plugins["bench_pusher"].model_copy(update={"enabled": True})
                    }
                }
            )
            supervisor = Supervisor(
                enabled,
                collector,
                plugins=discover(enabled, include_packages=False),
                options=SupervisorOptions(),
            )
            await supervisor.start()
            runner = supervisor.runners["bench_pusher"]
            result: dict[str, Any] = {}
            deadline = time.monotonic() + 600
            while not result.get("done"):
                if time.monotonic() > deadline or runner.crashes:
                    raise RuntimeError(f"the plugin did not finish: {runner.status()}")
                await asyncio.sleep(0.2)
                if runner.state == "running":
                    result = await runner.request("health")
            await supervisor.stop()
            after = await direct(collector, args, "after")
            stored = await pool.fetchval("SELECT count(*) FROM metrics WHERE device_id LIKE 'push-%'")
            await writer.close()
            await pool.close()
        finally:
            await drop_scratch_database(name)

    push_lat: list[float] = result["latencies"]
    ceiling_lat = before[0] + after[0]
    ceiling_rate = statistics.mean([before[1], after[1]])
    expected = args.runs * args.batch + args.batches * args.big_batch
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, values in (
        ("emit -> commit (plugin process)", push_lat),
        ("Collector.submit (ceiling)", ceiling_lat),
    ):
        print(f"{label:34}{percentile(values, 0.5) * 1e3:>10.2f}{percentile(values, 0.99) * 1e3:>10.2f}")
    print(
        f"latency ratio push/ceiling: p50 {percentile(push_lat, 0.5) / percentile(ceiling_lat, 0.5):.2f}x, "
        f"p99 {percentile(push_lat, 0.99) / percentile(ceiling_lat, 0.99):.2f}x"
    )
    print(
        f"throughput: push {result['rate']:,.0f} metrics/s, ceiling {ceiling_rate:,.0f} metrics/s "
        f"(before {before[1]:,.0f}, after {after[1]:,.0f}); ratio {result['rate'] / ceiling_rate:.2f}"
    )
    print(f"stored from the plugin: {stored:,} of {expected:,} emitted")
    return 0 if stored == expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="sequential emits timed (default 300)")
    parser.add_argument("--batch", type=int, default=1, help="metrics per timed emit (default 1)")
    parser.add_argument("--big-batch", type=int, default=1000, help="metrics per throughput batch")
    parser.add_argument("--batches", type=int, default=200, help="throughput batches (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks emitting at once (default 4)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
