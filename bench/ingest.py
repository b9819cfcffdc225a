"""Ingest benchmark: metrics/s through ``Collector.submit()`` (validation + normalisation on) → writer →
PostgreSQL, next to the binary-COPY ceiling of the same rows, measured in the same run.

    .venv/bin/python bench/ingest.py [--rows N] [--producers 8] [--batch 10000] [--latency-requests 200]

Uses its own temporary database on the machine's server (created and dropped), migrated with the
product's migrations, so ``metrics`` has the product's indexes. The ceiling loads the same rows with
asyncpg ``copy_records_to_table`` in batches of 100k (PERFORMANCE-NOTES.md: the fastest client-side
COPY) into ``CREATE TABLE ... (LIKE metrics INCLUDING ALL)``, i.e. a fresh copy of the product's table
with the same indexes. Each path starts from empty tables; the ceiling is measured before and after the
product paths and averaged, because the machine is shared and drifts.

Rows of the report are pluggable: ``PATHS`` maps a name to an async function ``(ctx) -> PathResult``.
The HTTP row runs ``aetherlens serve`` as its own process on the same database and posts the same rows
as pre-encoded JSON batches, so the client's encoding is not counted against the core. Two more rows use
the same server: one client posting 1,000-metric batches one after another (each waits for its commit,
so this row shows the writer's commit latency as throughput), and the answer time (p50/p99) of a
one-metric POST on an idle core and with 8 clients posting single metrics at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from aetherlens.collect import Collector
from aetherlens.config import Settings, WriterSettings
from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.pool import create_pool
from aetherlens.db.writer import COLUMNS, Writer
from aetherlens.models import Metric
from scratch import create_scratch_database, drop_scratch_database

DEVICES = 100
TYPES = ("power", "energy")
CEILING_BATCH = 100_000
SERIAL_BATCH = 1_000
SERIAL_TARGET = 0.25
LATENCY_CLIENTS = 8
IDLE_P50_TARGET_MS = 20
BUSY_P99_TARGET_MS = 50


@dataclass
class BenchContext:
    dsn: str
    rows: int
    producers: int
    batch: int
    settings: Settings
    latency_requests: int = 200  # timed one-metric POSTs per latency client
    tuples: list[tuple[Any, ...]] = field(default_factory=list)  # the canonical rows (ceiling input)


@dataclass
class PathResult:
    name: str
    seconds: float | None
    note: str = ""
    rss_growth_mb: float | None = None
    target: float = 0.5  # ratio of the COPY ceiling this row must reach

    def rate(self, rows: int) -> float | None:
        return rows / self.seconds if self.seconds else None


PathFn = Callable[[BenchContext], Awaitable[PathResult]]
PATHS: dict[str, PathFn] = {}


def register_path(name: str, fn: PathFn) -> None:
    """Add a row to the report (e.g. the HTTP ingest path once the API exists)."""
    PATHS[name] = fn


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_tuples(n: int) -> list[tuple[Any, ...]]:
    """100 devices x 2 types x one-minute timestamps ending now (inside raw retention)."""
    per_step = DEVICES * len(TYPES)
    steps = -(-n // per_step)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=steps)
    devices = [f"bench-dev-{d:03d}" for d in range(DEVICES)]
    units = {"power": "W", "energy": "kWh"}
    out: list[tuple[Any, ...]] = []
    for step in range(steps):
        t = start + timedelta(minutes=step)
        for d, device in enumerate(devices):
            for metric_type in TYPES:
                value = 100.0 + d + step * 0.01 if metric_type == "power" else step * 0.05 + d
                out.append((t, device, metric_type, value, units[metric_type], None))
                if len(out) == n:
                    return out
    return out


async def reset_tables(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE metrics, metrics_latest, ingest_batches, rollup_pending, devices CASCADE")
    await conn.execute("DROP TABLE IF EXISTS metrics_ceiling")
    await conn.execute("CREATE TABLE metrics_ceiling (LIKE metrics INCLUDING ALL)")
    await conn.execute("CHECKPOINT")


async def ceiling_path(ctx: BenchContext) -> PathResult:
    conn = await asyncpg.connect(ctx.dsn)
    try:
        await reset_tables(conn)
        rows = ctx.tuples
        start = time.perf_counter()
        for i in range(0, len(rows), CEILING_BATCH):
            await conn.copy_records_to_table(
                "metrics_ceiling", records=rows[i : i + CEILING_BATCH], columns=COLUMNS
            )
        seconds = time.perf_counter() - start
        stored = await conn.fetchval("SELECT count(*) FROM metrics_ceiling")
        assert stored == len(rows), f"ceiling stored {stored} of {len(rows)}"
    finally:
        await conn.close()
    return PathResult("binary COPY ceiling", seconds, f"copy_records_to_table, {CEILING_BATCH:,} per batch")


async def _through_collector(ctx: BenchContext, name: str, items: Sequence[Any], note: str) -> PathResult:
    conn = await asyncpg.connect(ctx.dsn)
    await reset_tables(conn)
    pool = await create_pool(ctx.dsn, ctx.settings, min_size=1, max_size=2)
    with tempfile.TemporaryDirectory(prefix="aetherlens-bench-spool-") as spool_dir:
        writer = Writer(ctx.dsn, ctx.settings.writer, Path(spool_dir))
        await writer.start()
        collector = Collector(writer, pool, ctx.settings)
        await collector.start()
        batches = [items[i : i + ctx.batch] for i in range(0, len(items), ctx.batch)]
        queue: asyncio.Queue[Sequence[Any]] = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)
        accepted = 0

        async def producer() -> None:
            nonlocal accepted
            while not queue.empty():
                result = await collector.submit(queue.get_nowait(), source="bench")
                assert not result.rejected, result.rejected[:3]
                accepted += result.accepted

        rss_before = rss_mb()
        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(ctx.producers)))
        seconds = time.perf_counter() - start
        growth = rss_mb() - rss_before
        await writer.close()
    await pool.close()
    stored = await conn.fetchval("SELECT count(*) FROM metrics")
    await conn.close()
    assert accepted == stored == len(items), f"{name}: accepted {accepted}, stored {stored} of {len(items)}"
    return PathResult(name, seconds, note, rss_growth_mb=growth)


async def collector_metric_path(ctx: BenchContext) -> PathResult:
    # Plugin path: models.Metric with aware datetimes; power in kW so normalisation really converts.
    items = [
        Metric(t, d, mt, v / 1000.0 if mt == "power" else v, "kW" if mt == "power" else u)
        for t, d, mt, v, u, _ in ctx.tuples
    ]
    try:
        return await _through_collector(
            ctx, "Collector.submit(Metric)", items, "plugin shape; power given in kW, converted to W"
        )
    finally:
        del items
        gc.collect()


async def collector_dict_path(ctx: BenchContext) -> PathResult:
    # HTTP shape after JSON parsing: dicts, ISO 8601 times with offset, energy given in Wh.
    items = http_items(ctx.tuples)
    try:
        return await _through_collector(
            ctx, "Collector.submit(dict, ISO time)", items, "HTTP shape after parsing; energy in Wh → kWh"
        )
    finally:
        del items
        gc.collect()


def http_items(tuples: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The HTTP shape before JSON encoding: ISO 8601 times with offset, energy given in Wh."""
    iso: dict[datetime, str] = {}
    return [
        {
            "time": iso.setdefault(t, t.isoformat()),
            "device_id": d,
            "metric_type": mt,
            "value": v * 1000.0 if mt == "energy" else v,
            "unit": "Wh" if mt == "energy" else u,
        }
        for t, d, mt, v, u, _ in tuples
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.asynccontextmanager
async def core_server(ctx: BenchContext, connections: int) -> AsyncIterator[CoreServer]:
    """`aetherlens serve` as its own process on the bench database (tables reset first), with an
    ingest API key and a client session of ``connections`` connections."""
    conn = await asyncpg.connect(ctx.dsn)
    try:
        await reset_tables(conn)
    finally:
        await conn.close()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aetherlens-bench-http-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")} | {
            "AETHERLENS_DATABASE_URL": ctx.dsn,
            "AETHERLENS_DATA_DIR": data_dir,
            "AETHERLENS_ADMIN_PASSWORD": "bench-admin-password",
            "AETHERLENS_WRITER__BATCH_SIZE": str(ctx.settings.writer.batch_size),
            "AETHERLENS_LOG__LEVEL": "warning",
        }
        cli = [sys.executable, "-m", "aetherlens.cli"]
        created = await asyncio.create_subprocess_exec(
            *cli,
            "api-keys",
            "create",
            "--name",
            "bench",
            "--scopes",
            "ingest",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await created.communicate()
        assert created.returncode == 0, "api-keys create failed"
        key = out.decode().strip()
        server = await asyncio.create_subprocess_exec(
            *cli, "serve", "--port", str(port), env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            url = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            connector = aiohttp.TCPConnector(limit=connections)
            async with aiohttp.ClientSession(connector=connector) as session:
                await _wait_until_serving(session, url)
                yield CoreServer(session, f"{url}/api/v1/metrics", headers, server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), timeout=60)


@dataclass
class CoreServer:
    session: aiohttp.ClientSession
    ingest_url: str
    headers: dict[str, str]
    pid: int
    accepted: int = 0
    backpressured: int = 0

    async def post(self, body: bytes) -> float:
        """POST one ingest body until it is taken (a 503 is retried after its Retry-After); returns the
        seconds of the answer that took it."""
        while True:
            started = time.perf_counter()
            async with self.session.post(self.ingest_url, data=body, headers=self.headers) as r:
                if r.status == 503:  # backpressure: retry after the advertised wait
                    self.backpressured += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                answer = await r.json()
                elapsed = time.perf_counter() - started
                assert r.status == 200 and not answer["rejected"], answer
                self.accepted += answer["accepted"]
                return elapsed


async def _count_metrics(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM metrics"))
    finally:
        await conn.close()


async def http_path(ctx: BenchContext) -> PathResult:
    """POST /api/v1/metrics against `aetherlens serve` running as its own process on the same database."""
    bodies = [
        orjson.dumps({"metrics": http_items(ctx.tuples[i : i + ctx.batch])})
        for i in range(0, len(ctx.tuples), ctx.batch)
    ]
    async with core_server(ctx, ctx.producers) as core:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def poster() -> None:
            while not queue.empty():
                await core.post(queue.get_nowait())

        start = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(ctx.producers)))
        seconds = time.perf_counter() - start
        server_rss = process_rss_mb(core.pid)
    stored = await _count_metrics(ctx.dsn)
    assert core.accepted == stored == len(ctx.tuples), f"http: accepted {core.accepted}, stored {stored}"
    return PathResult(
        "POST /api/v1/metrics",
        seconds,
        f"`aetherlens serve` process, {ctx.producers} connections x {ctx.batch:,}-metric batches, "
        f"{core.backpressured} answers 503 (queue full); core RSS {server_rss:.0f} MB after",
    )


async def http_serial_path(ctx: BenchContext) -> PathResult:
    """One client posting 1,000-metric batches one after another: each waits for its commit, so this is
    bounded by the writer's per-commit latency, not by group commit across clients."""
    bodies = [
        orjson.dumps({"metrics": http_items(ctx.tuples[i : i + SERIAL_BATCH])})
        for i in range(0, len(ctx.tuples), SERIAL_BATCH)
    ]
    async with core_server(ctx, 1) as core:
        start = time.perf_counter()
        for body in bodies:
            await core.post(body)
        seconds = time.perf_counter() - start
    stored = await _count_metrics(ctx.dsn)
    assert core.accepted == stored == len(ctx.tuples), f"serial: accepted {core.accepted}, stored {stored}"
    return PathResult(
        f"POST, 1 client x {SERIAL_BATCH:,} serial",
        seconds,
        f"one connection, next batch after the answer; target >= {SERIAL_TARGET} of the ceiling",
        target=SERIAL_TARGET,
    )


def _single_metric_bodies(client: int, n: int) -> list[bytes]:
    now = datetime.now(UTC)
    return [
        orjson.dumps(
            {
                "metrics": [
                    {
                        "time": (now - timedelta(seconds=n - i)).isoformat(),
                        "device_id": f"bench-latency-{client:02d}",
                        "metric_type": "power",
                        "value": float(i),
                    }
                ]
            }
        )
        for i in range(n)
    ]


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds (nearest rank)."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return pick(0.50), pick(0.99)


async def latency_path(ctx: BenchContext) -> PathResult:
    """Answer time of a one-metric POST: first on an idle core (one client, one request at a time), then
    with LATENCY_CLIENTS clients posting single metrics concurrently."""
    # One more body per client: the first request registers the device and is not timed.
    idle_bodies = _single_metric_bodies(0, ctx.latency_requests + 1)
    busy_bodies = [_single_metric_bodies(c + 1, ctx.latency_requests + 1) for c in range(LATENCY_CLIENTS)]
    async with core_server(ctx, LATENCY_CLIENTS) as core:
        await core.post(idle_bodies[0])  # the first request registers the device: not timed
        idle = [await core.post(body) for body in idle_bodies[1:]]

        async def client(bodies: list[bytes]) -> list[float]:
            return [await core.post(body) for body in bodies]

        for bodies in busy_bodies:  # register each client's device before timing
            await core.post(bodies[0])
        busy_runs = await asyncio.gather(*(client(bodies[1:]) for bodies in busy_bodies))
    busy = [s for run in busy_runs for s in run]
    idle_p50, idle_p99 = _percentiles(idle)
    busy_p50, busy_p99 = _percentiles(busy)
    return PathResult(
        "POST of one metric, latency",
        None,
        f"idle: p50 {idle_p50:.1f} ms, p99 {idle_p99:.1f} ms (target p50 <= {IDLE_P50_TARGET_MS} ms); "
        f"{LATENCY_CLIENTS} clients: p50 {busy_p50:.1f} ms, p99 {busy_p99:.1f} ms "
        f"(target p99 <= {BUSY_P99_TARGET_MS} ms); {ctx.latency_requests} timed requests per client"
        + (" BELOW TARGET" if idle_p50 > IDLE_P50_TARGET_MS or busy_p99 > BUSY_P99_TARGET_MS else ""),
    )


async def _wait_until_serving(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(120):
        try:
            async with session.get(f"{url}/health/live") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("aetherlens serve did not start within 60 s")


async def run(args: argparse.Namespace) -> int:
    name, dsn = await create_scratch_database("ingest")
    try:
        conn = await asyncpg.connect(dsn)
        capabilities = await probe(conn)
        await apply_migrations(conn, capabilities)
        await conn.close()
        settings = Settings(writer=WriterSettings(batch_size=args.writer_batch))
        baseline = rss_mb()
        ctx = BenchContext(
            dsn,
            args.rows,
            args.producers,
            args.batch,
            settings,
            latency_requests=args.latency_requests,
            tuples=make_tuples(args.rows),
        )
        print(
            f"ingest benchmark: {args.rows:,} metrics ({DEVICES} devices x {len(TYPES)} types), "
            f"{args.producers} producers x {args.batch:,}-metric batches, writer batch_size "
            f"{args.writer_batch:,}; PostgreSQL {capabilities.pg_version}, "
            f"timescaledb={'on' if capabilities.timescaledb else 'off'}, {os.cpu_count()} cores",
            file=sys.stderr,
        )
        results: list[PathResult] = []
        ceilings: list[PathResult] = []
        order: list[PathFn] = [ceiling_path, *PATHS.values(), ceiling_path]
        for fn in order:
            result = await fn(ctx)
            (ceilings if fn is ceiling_path else results).append(result)
            rate = result.rate(args.rows)
            print(f"  {result.name}: {f'{rate:,.0f}/s' if rate else 'n/a'}", file=sys.stderr)
        ceiling_rate = sum(r.rate(args.rows) or 0 for r in ceilings) / len(ceilings)
        print()
        print(f"{'path':36} {'metrics/s':>12} {'ratio':>7}  note")
        spread = ", ".join(f"{r.rate(args.rows):,.0f}" for r in ceilings)
        print(f"{'binary COPY ceiling (mean)':36} {ceiling_rate:12,.0f} {1.0:7.2f}  runs: {spread}/s")
        for r in results:
            rate = r.rate(args.rows)
            if rate is None:
                print(f"{r.name:36} {'n/a':>12} {'n/a':>7}  {r.note}")
                continue
            growth = f"; RSS +{r.rss_growth_mb:.0f} MB while ingesting" if r.rss_growth_mb is not None else ""
            ratio = rate / ceiling_rate
            verdict = "" if ratio >= r.target else f" BELOW TARGET {r.target}"
            print(f"{r.name:36} {rate:12,.0f} {ratio:7.2f}  {r.note}{growth}{verdict}")
        print(
            f"\nprocess RSS: {baseline:.0f} MB before generating input (imports, pool code), "
            f"{rss_mb():.0f} MB now, peak {peak_rss_mb():.0f} MB (the peak includes the prebuilt input rows)"
        )
        print(
            "targets: ratio >= 0.5 of the COPY ceiling for Collector.submit() and POST /api/v1/metrics, "
            f">= {SERIAL_TARGET} for one serial client of {SERIAL_BATCH:,}-metric batches; one-metric POST "
            f"p50 <= {IDLE_P50_TARGET_MS} ms idle, p99 <= {BUSY_P99_TARGET_MS} ms at {LATENCY_CLIENTS} "
            "clients"
        )
    finally:
        await drop_scratch_database(name)
    return 0


register_path("collector_metric", collector_metric_path)
register_path("collector_dict", collector_dict_path)
register_path("http", http_path)
register_path("http_serial", http_serial_path)
register_path("http_latency", latency_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="metrics per path (default 1,000,000)")
    parser.add_argument("--producers", type=int, default=8, help="concurrent submitters (default 8)")
    parser.add_argument("--batch", type=int, default=10_000, help="metrics per submit() (default 10,000)")
    parser.add_argument(
        "--latency-requests",
        type=int,
        default=200,
        help="timed one-metric POSTs per client in the latency row (default 200)",
    )
    parser.add_argument(
        "--writer-batch",
        type=int,
        default=WriterSettings().batch_size,
        help="writer.batch_size (default: product's)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
