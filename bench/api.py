"""REST API latency and throughput for the dashboard reads, each next to a static route of the same app.

Seeds a scratch database (server-side generate_series): 100 devices, 48 h of one-minute power readings
each (288k rows), their latest values, a tariff and 35 days of hourly/daily cost rows. Serves the real
app (``create_app``) from a subprocess on 127.0.0.1 (random port) and measures with aiohttp clients:

* current values of all 100 devices  (GET /api/v1/metrics/current)
* one device's last 24 h, raw         (GET /api/v1/metrics?device_id&metric_type=power&from&to)
* 30-day daily costs for all devices  (GET /api/v1/costs/history?resolution=day&from&to)

Device and window change on every request (random device, window end shifted by whole minutes/days), so
no cache could serve a repeat. Each is measured next to GET /health/live (static answer, same app, same
run): p50/p99 latency with 1 client, requests/s with 16 concurrent clients, and the ratios.

    .venv/bin/python bench/api.py [--requests 400] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from scratch import create_scratch_database, drop_scratch_database

DEVICES = 100
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
RAW_START = NOW - timedelta(hours=48)
COST_DAYS = 35
COST_START = (NOW - timedelta(days=COST_DAYS)).replace(hour=0, minute=0)

SEED_SQL = [
    """INSERT INTO devices (id, name, type, source)
       SELECT 'dev' || d, 'Device ' || d, 'plug', 'bench' FROM generate_series(1, $1) d""",
    # One-minute power for 48 h per device, in time order (as the writer would append it).
    """INSERT INTO metrics (time, device_id, metric_type, value, unit)
       SELECT $2::timestamptz + make_interval(mins => i), 'dev' || d, 'power', 50 + (i * d) % 97, 'W'
       FROM generate_series(0, 48 * 60 - 1) i, generate_series(1, $1) d ORDER BY 1""",
    """INSERT INTO metrics_latest (device_id, metric_type, time, value, unit)
       SELECT device_id, metric_type, max(time), 1, 'W' FROM metrics GROUP BY device_id, metric_type""",
    """INSERT INTO metrics_latest (device_id, metric_type, time, value, unit)
       SELECT 'dev' || d, 'energy', $2::timestamptz, d * 10.5, 'kWh' FROM generate_series(1, $1) d""",
]
COST_SQL = [
    """INSERT INTO cost_hourly (bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count)
       SELECT $2::timestamptz + make_interval(hours => h), 'dev' || d, $3, 0.1 * d, 0.03 * d, 0, false, 1
       FROM generate_series(0, $4 * 24 - 1) h, generate_series(1, $1) d""",
    """INSERT INTO cost_daily (bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count)
       SELECT date_trunc('day', bucket, 'UTC'), device_id, tariff_id, sum(kwh), sum(cost), 0, false, count(*)
       FROM cost_hourly GROUP BY 1, 2, 3""",
]
TARIFF = {
    "name": "bench flat",
    "timezone": "UTC",
    "effective_from": "2020-01-01",
    "periods": {"f": {"price": "0.3"}},
}


async def seed(dsn: str, settings: Any) -> str:
    """Schema, data and an API key with `read`; returns the key."""
    from aetherlens.auth.keys import signing_secret
    from aetherlens.auth.service import AuthService
    from aetherlens.auth.store import CredentialStore
    from aetherlens.costs import service
    from aetherlens.db.capabilities import probe
    from aetherlens.db.migrations import apply_migrations
    from aetherlens.db.pool import create_pool

    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, await probe(conn))
        await conn.execute(SEED_SQL[0], DEVICES)
        await conn.execute(SEED_SQL[1], DEVICES, RAW_START)
        await conn.execute(SEED_SQL[2])
        await conn.execute(SEED_SQL[3], DEVICES, NOW)
        tariff_id = await service.create_tariff(conn, TARIFF)
        await conn.execute(COST_SQL[0], DEVICES, COST_START, tariff_id, COST_DAYS)
        await conn.execute(COST_SQL[1])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    pool = await create_pool(dsn, settings, min_size=1, max_size=2)
    try:
        store = CredentialStore(pool, signing_secret(settings))
        created = await AuthService(pool, store, settings).create_key("bench", ["read"])
    finally:
        await pool.close()
    return created.key


def bench_settings(data_dir: Path) -> Any:
    from aetherlens.config import Settings

    return Settings(
        data_dir=data_dir,
        site={"timezone": "UTC"},
        # The bench is one principal doing thousands of requests a minute: lift its limit.
        api={"rate_limit": {"principal_per_minute": 100_000_000}},
        log={"level": "warning"},
    )


async def serve(dsn: str, data_dir: str) -> None:
    """The server side (run in a subprocess): the real app on a random port, printed to stdout."""
    from aiohttp import web

    from aetherlens.api.app import create_app
    from aetherlens.api.context import ApiContext
    from aetherlens.api.server import ApiRunner
    from aetherlens.db.capabilities import probe
    from aetherlens.db.pool import create_pool
    from aetherlens.obs import configure_logging

    settings = bench_settings(Path(data_dir))
    configure_logging("warning", "json")
    pool = await create_pool(dsn, settings)
    async with pool.acquire() as conn:
        caps = await probe(conn)
    app = create_app(ApiContext(settings=settings, pool=pool, capabilities=caps, version="bench"))
    runner = ApiRunner(app, access_log=None)  # what `serve` runs
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await runner.cleanup()
    await pool.close()


# --- the client side ---------------------------------------------------------------------------------
Target = Callable[[random.Random], tuple[str, dict[str, str]]]


def static_route(_: random.Random) -> tuple[str, dict[str, str]]:
    return "/health/live", {}


def current_values(_: random.Random) -> tuple[str, dict[str, str]]:
    return "/api/v1/metrics/current", {}


def last_24h(rng: random.Random) -> tuple[str, dict[str, str]]:
    end = NOW - timedelta(minutes=rng.randrange(0, 24 * 60))
    return "/api/v1/metrics", {
        "device_id": f"dev{rng.randint(1, DEVICES)}",
        "metric_type": "power",
        "from": (end - timedelta(hours=24)).isoformat(),
        "to": end.isoformat(),
    }


def costs_30d(rng: random.Random) -> tuple[str, dict[str, str]]:
    start = COST_START + timedelta(days=rng.randrange(0, COST_DAYS - 30 + 1))
    return "/api/v1/costs/history", {
        "resolution": "day",
        "from": start.date().isoformat(),
        "to": (start + timedelta(days=30)).date().isoformat(),
    }


async def check(session: aiohttp.ClientSession, base: str, target: Target, headers: dict[str, str]) -> int:
    """The answer must be real data, or the numbers mean nothing."""
    path, params = target(random.Random(1))
    async with session.get(base + path, params=params, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    if target is current_values:
        assert len(body["devices"]) == DEVICES, len(body["devices"])
        return len(body["devices"])
    if target is last_24h:
        assert len(body["points"]) == 24 * 60, len(body["points"])
        return len(body["points"])
    if target is costs_30d:
        assert len(body["points"]) == 30, body
        return len(body["points"])
    return 1


async def latency(
    session: aiohttp.ClientSession, base: str, target: Target, headers: dict[str, str], n: int
) -> list[float]:
    rng = random.Random(7)
    out: list[float] = []
    for _ in range(n):
        path, params = target(rng)
        t = time.perf_counter()
        async with session.get(base + path, params=params, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{path}: {resp.status} {await resp.text()}")
        out.append(time.perf_counter() - t)
    return out


async def throughput(
    base: str, target: Target, headers: dict[str, str], seconds: float, clients: int = 16
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(seed: int) -> None:
            nonlocal done
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                path, params = target(rng)
                async with session.get(base + path, params=params, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{path}: {resp.status}")
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    return done / elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def run(args: argparse.Namespace) -> None:
    name, dsn = await create_scratch_database("api")
    data_dir = tempfile.mkdtemp(prefix="aetherlens-bench-api-")
    proc: asyncio.subprocess.Process | None = None
    try:
        t = time.perf_counter()
        key = await seed(dsn, bench_settings(Path(data_dir)))
        print(
            f"seeded {DEVICES} devices, {DEVICES * 48 * 60:,} raw rows, {COST_DAYS} days of costs "
            f"in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            dsn,
            data_dir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        port = int((await proc.stdout.readline()).decode().strip())
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        targets: list[tuple[str, Target]] = [
            ("current values (100 devices)", current_values),
            ("one device, last 24 h (1440 pts)", last_24h),
            ("30-day daily costs, all devices", costs_30d),
        ]
        rows: list[tuple[str, float, float, float]] = []
        async with aiohttp.ClientSession() as session:
            for _, target in targets:
                await check(session, base, target, headers)
            await latency(session, base, static_route, headers, 50)  # warm up connections and plans
            for label, target in [("static GET /health/live", static_route), *targets]:
                await latency(session, base, target, headers, 30)
                samples = await latency(session, base, target, headers, args.requests)
                rps = await throughput(base, target, headers, args.seconds)
                rows.append((label, pct(samples, 0.5), pct(samples, 0.99), rps))
        static = rows[0]
        print(
            f"\n{'route':36} {'p50 ms':>8} {'p99 ms':>8} {'req/s x16':>10} "
            f"{'p50/static':>11} {'rps/static':>11}"
        )
        for label, p50, p99, rps in rows:
            print(
                f"{label:36} {p50:8.2f} {p99:8.2f} {rps:10.0f} "
                f"{p50 / static[1]:11.2f} {rps / static[3]:11.2f}"
            )
        print(
            f"\n1 client: {args.requests} requests per route; 16 clients: {args.seconds:g} s per route; "
            f"median of p50 across reads: {statistics.median(r[1] for r in rows[1:]):.2f} ms; "
            "target p99 <= 25 ms at 1 client"
        )
    finally:
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
            await proc.wait()
        await drop_scratch_database(name)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(serve(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="sequential requests per route (1 client)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration per route with 16 clients")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
