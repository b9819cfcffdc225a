"""Alert-engine benchmark: ingest rate through ``Collector.submit()`` → writer → PostgreSQL with 100 alert
rules active, next to the same ingest with no rules, measured in the same run.

    .venv/bin/python bench/alerts.py [--rows N] [--producers 8] [--batch 10000] [--rounds 2]

Uses its own temporary database on the machine's server (created and dropped), migrated with the
product's migrations. The engine runs as the core runs it: the writer's listener hands every committed
batch to the series evaluator, the schedule passes every second. The 100 rules: 80 ``threshold`` rules
(one per device on its power, a fifth of them crossing their threshold during the run, so transitions
are stored and published) and 20 scheduled ones (``no_data``, ``energy``, ``budget``). The two setups
alternate (none, rules, none, rules, ...) because the machine is shared and drifts; the report prints
each rate, the ratio of the means (target ≥ 0.9) and how long the engine needed after the last commit
to finish evaluating (its lag).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from aetherlens.alerts.engine import AlertEngine
from aetherlens.api.stream import StreamHub
from aetherlens.collect import Collector
from aetherlens.config import Settings
from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.pool import create_pool
from aetherlens.db.queries import alerts as q
from aetherlens.db.writer import Writer
from aetherlens.models import Metric
from aetherlens.runtime import cost_source
from scratch import create_scratch_database, drop_scratch_database

DEVICES = 100
SERIES_RULES = 80
TARGET = 0.9


@dataclass
class Run:
    rules: bool
    seconds: float
    lag: float = 0.0
    transitions: int = 0


def make_metrics(n: int) -> list[Metric]:
    """100 devices x (power, energy) at one-minute steps ending now; power ramps so that devices
    0..15 cross their threshold (1000 W) during the run."""
    per_step = DEVICES * 2
    steps = -(-n // per_step)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=steps)
    out: list[Metric] = []
    for step in range(steps):
        t = start + timedelta(minutes=step)
        for d in range(DEVICES):
            device = f"bench-dev-{d:03d}"
            ramp = 1200.0 * step / steps if d < 16 else 0.0
            out.append(Metric(t, device, "power", 100.0 + d + ramp, "W"))
            out.append(Metric(t, device, "energy", step * 0.05 + d, "kWh"))
            if len(out) == n:
                return out
    return out


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE metrics, metrics_latest, ingest_batches, rollup_pending, cost_pending")
    await conn.execute("TRUNCATE alert_events CASCADE")
    await conn.execute("UPDATE alerts SET state = '{}'")
    await conn.execute("CHECKPOINT")


async def create_rules(conn: asyncpg.Connection) -> None:
    for d in range(DEVICES):
        await conn.execute(
            "INSERT INTO devices (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", f"bench-dev-{d:03d}"
        )
    for d in range(SERIES_RULES):
        await q.create_alert(
            conn,
            q.AlertFields(
                name=f"power {d}",
                device_id=f"bench-dev-{d:03d}",
                metric_type="power",
                condition={"type": "threshold", "op": ">", "value": 1000, "for_seconds": 120},
            ),
        )
    scheduled: list[dict[str, Any]] = [
        {"type": "no_data", "for_seconds": 600},
        {"type": "energy", "window": "day", "op": ">", "value": 1000},
        {"type": "budget", "scope": "site", "period": "cycle", "amount": 100, "projected": True},
    ]
    for i in range(DEVICES - SERIES_RULES):
        condition = scheduled[i % len(scheduled)]
        device = None if condition["type"] == "budget" else f"bench-dev-{SERIES_RULES + i:03d}"
        await q.create_alert(
            conn, q.AlertFields(name=f"scheduled {i}", device_id=device, condition=condition)
        )


async def one_run(
    dsn: str, settings: Settings, metrics: list[Metric], args: argparse.Namespace, rules: bool
) -> Run:
    conn = await asyncpg.connect(dsn)
    await reset(conn)
    await conn.execute("UPDATE alerts SET enabled = $1", rules)
    pool = await create_pool(dsn, settings, min_size=1, max_size=4)
    hub = StreamHub()
    engine = AlertEngine(
        pool, settings, publish=lambda d: hub.publish("alerts", d), costs=cost_source(settings)
    )
    with tempfile.TemporaryDirectory(prefix="aetherlens-bench-alerts-") as spool:
        writer = Writer(pool, settings.writer, Path(spool))
        await writer.start()
        collector = Collector(writer, pool, settings)
        await collector.start()
        await engine.start()
        writer.add_listener(engine.on_written)
        batches = [metrics[i : i + args.batch] for i in range(0, len(metrics), args.batch)]
        queue: asyncio.Queue[list[Metric]] = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)

        async def producer() -> None:
            while not queue.empty():
                result = await collector.submit(queue.get_nowait(), source="bench")
                assert not result.rejected, result.rejected[:3]

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(args.producers)))
        seconds = time.perf_counter() - start
        # The listener runs just after each commit; polling costs nothing measured (the clock stopped).
        while engine.rows_seen < len(metrics):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await engine.drain()
        lag = time.perf_counter() - start - seconds
        await writer.close()
        await engine.stop()
    stored = await conn.fetchval("SELECT count(*) FROM metrics")
    transitions = await conn.fetchval("SELECT count(*) FROM alert_transitions")
    await conn.close()
    await pool.close()
    assert stored == len(metrics), f"stored {stored} of {len(metrics)}"
    if rules:
        assert transitions > 0, "no rule fired: the bench would not exercise transitions"
    return Run(rules, seconds, lag, transitions)


async def run(args: argparse.Namespace) -> int:
    name, dsn = await create_scratch_database("alerts")
    try:
        conn = await asyncpg.connect(dsn)
        capabilities = await probe(conn)
        await apply_migrations(conn, capabilities)
        await create_rules(conn)
        await conn.close()
        settings = Settings(
            site={"timezone": "UTC"}, alerts={"evaluation_interval": 1}, log={"format": "text"}
        )
        metrics = make_metrics(args.rows)
        print(
            f"alerts benchmark: {args.rows:,} metrics ({DEVICES} devices x 2 types), "
            f"{args.producers} producers x {args.batch:,}-metric batches; {SERIES_RULES} threshold + "
            f"{DEVICES - SERIES_RULES} scheduled rules; PostgreSQL {capabilities.pg_version}, "
            f"{os.cpu_count()} cores",
            file=sys.stderr,
        )
        runs: list[Run] = []
        for _ in range(args.rounds):
            for rules in (False, True):
                r = await one_run(dsn, settings, metrics, args, rules)
                runs.append(r)
                print(
                    f"  {'100 rules' if rules else 'no rules'}: {args.rows / r.seconds:,.0f}/s"
                    + (
                        f", evaluation done {r.lag:.2f} s after the last commit, {r.transitions} transitions"
                        if rules
                        else ""
                    ),
                    file=sys.stderr,
                )
    finally:
        await drop_scratch_database(name)

    def mean_rate(with_rules: bool) -> float:
        chosen = [args.rows / r.seconds for r in runs if r.rules is with_rules]
        return sum(chosen) / len(chosen)

    none, active = mean_rate(False), mean_rate(True)
    ratio = active / none
    lag = max(r.lag for r in runs if r.rules)
    print()
    print(f"{'setup':24} {'metrics/s':>12} {'ratio':>7}")
    print(f"{'no rules (mean)':24} {none:12,.0f} {1.0:7.2f}")
    print(
        f"{'100 rules (mean)':24} {active:12,.0f} {ratio:7.2f}  target >= {TARGET}; "
        f"evaluation lag <= {lag:.2f} s"
    )
    ok = ratio >= TARGET
    print("PASS" if ok else f"FAIL: ratio {ratio:.2f} below {TARGET}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000, help="metrics per run (default 400,000)")
    parser.add_argument("--producers", type=int, default=8, help="concurrent submitters (default 8)")
    parser.add_argument("--batch", type=int, default=10_000, help="metrics per submit() (default 10,000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs of runs (default 2)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
