"""Cost engine throughput against a plain ``SELECT sum()`` over the same rows, in the same run.

Generates DEVICES one-minute ``energy`` counters over DAYS (server-side generate_series) in a scratch
database on the machine's server, then times, each against its ceiling:

1. ``CostJob.run_once``, the first pass over the whole range (stored slots and demand windows from raw
   readings, every cycle priced and allocated per device, cost rollups) — target <= 10x;
2. ``service.bill`` for the whole range (site = sum of devices; TOU + tiers + 15-minute demand + fixed),
   priced from the stored slots — target <= 0.2x; checked to the cent against the same bill priced from
   raw readings alone (timed too: that is what a bill cost before the stored slots);
3. ``service.comparison`` of 5 stored tariffs over the range — target <= 1x;
4. ``service.summary`` (month-to-date + projection) for the last month of the range.

Ceilings: ``SELECT sum(value)`` over the range's rows (1-3) and over the month's rows (4).

    .venv/bin/python bench/costs.py [--devices 50] [--days 365]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg

from aetherlens.config import Settings
from aetherlens.costs import service, store
from aetherlens.costs.engine import TariffVersion, compute_bills
from aetherlens.costs.job import CostJob
from aetherlens.costs.stored import priced_energy
from aetherlens.db.capabilities import probe
from aetherlens.db.migrations import apply_migrations
from scratch import create_scratch_database, drop_scratch_database

START = datetime(2025, 1, 1, tzinfo=UTC)
TARIFF = {
    "name": "bench TOU",
    "timezone": "UTC",
    "effective_from": "2024-01-01",
    "periods": {
        "peak": {"tiers": [{"up_to": 500, "price": "0.30"}, {"price": "0.40"}]},
        "off": {"tiers": [{"up_to": 500, "price": "0.10"}, {"price": "0.15"}]},
    },
    "schedule": [
        {"period": "peak", "hours": "16-21", "days": ["weekday"]},
        {"period": "off", "hours": "21-16", "days": ["weekday"]},
        {"period": "off", "days": ["weekend"]},
    ],
    "fixed": {"per_month": "10"},
    "demand": {"charges": [{"name": "facility", "price": "5"}]},
}
LOAD_SQL = """
INSERT INTO metrics (time, device_id, metric_type, value, unit)
SELECT $1::timestamptz + make_interval(mins => i), 'dev' || d, 'energy', i * 0.01 * (1 + d % 5), 'kWh'
FROM generate_series(1, $3) AS d, generate_series(0, $2) AS i
"""
SUM_SQL = "SELECT sum(value) FROM metrics WHERE time >= $1 AND time < $2"


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def _raw_priced_total(
    conn: asyncpg.Connection, versions: list[TariffVersion], start: datetime, end: datetime
) -> Decimal:
    energy = await priced_energy(conn, versions, start, end, None, raw_only=True)
    bills = compute_bills(
        versions, energy.slots, energy.slot_minutes, start, end, demand_windows=energy.demand_windows
    )
    return sum((b.total for b in bills), Decimal(0))


async def _timed(label: str, coro: object) -> tuple[float, object]:
    began = time.perf_counter()
    result = await coro  # type: ignore[misc]
    return time.perf_counter() - began, result


async def main(devices: int, days: int) -> None:
    name, dsn = await create_scratch_database("costs")
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, await probe(conn))
        minutes = days * 24 * 60
        began = time.perf_counter()
        await conn.execute("DROP INDEX IF EXISTS metrics_series_time_idx")
        await conn.execute(LOAD_SQL, START, minutes, devices)
        await conn.execute(
            "CREATE INDEX metrics_series_time_idx ON metrics (device_id, metric_type, time DESC)"
        )
        # As after any bulk load (and as the rollup job does): statistics, visibility map, BRIN ranges.
        await conn.execute("VACUUM ANALYZE metrics")
        await conn.execute("SELECT brin_summarize_new_values('metrics_time_brin')")
        rows = (minutes + 1) * devices
        print(
            f"loaded {rows:,} rows ({devices} devices x {days} days of 1-minute counters) "
            f"in {time.perf_counter() - began:.1f} s"
        )
        end = START + timedelta(days=days)
        tariff_id = await service.create_tariff(conn, TARIFF, active=True)

        ceiling, _ = await _timed("sum", conn.fetchval(SUM_SQL, START, end))
        ratios: dict[str, float] = {}
        job = CostJob()
        took, result = await _timed("job", job.run_once(conn, now=end))
        ratios["job"] = took / ceiling
        print(
            f"CostJob.run_once (first pass):   {took:8.2f} s   ceiling SELECT sum(): {ceiling:6.2f} s"
            f"   ratio {took / ceiling:6.2f}x (target <= 10)   ({getattr(result, 'rows', 0):,} cost rows)"
        )
        took, bills = await _timed("bill", service.bill(conn, tariff_id, START, end))
        assert isinstance(bills, list)
        ratios["bill"] = took / ceiling
        total = sum(Decimal(repr(b["total"])) for b in bills)
        print(
            f"bill, {len(bills)} cycles:            {took:8.2f} s   ceiling SELECT sum(): {ceiling:6.2f} s"
            f"   ratio {took / ceiling:6.2f}x (target <= 0.2)   (site total {total:,.2f})"
        )
        versions = await store.versions_of(conn, tariff_id)
        took, raw_total = await _timed("raw", _raw_priced_total(conn, versions, START, end))
        assert isinstance(raw_total, Decimal)
        same = _cents(raw_total) == _cents(total)
        print(
            f"bill from raw readings alone:    {took:8.2f} s   ratio {took / ceiling:6.2f}x   "
            f"total {raw_total:,.2f}: {'equal to the cent' if same else 'DIFFERENT'}"
        )
        assert same, f"stored-slot bill {total} != raw-priced bill {raw_total}"
        for k in range(4):
            variant = {**TARIFF, "name": f"bench variant {k}"}
            variant["fixed"] = {"per_month": str(5 + k)}
            variant["periods"] = {
                "peak": {"tiers": [{"up_to": 400 + 50 * k, "price": f"0.{25 + k}"}, {"price": "0.45"}]},
                "off": {"price": f"0.{9 + k}"},
            }
            await service.create_tariff(conn, variant, active=False)
        took, ranking = await _timed("comparison", service.comparison(conn, START, end))
        assert isinstance(ranking, list) and len(ranking) == 5
        ratios["comparison"] = took / ceiling
        print(
            f"comparison of {len(ranking)} tariffs:        {took:8.2f} s   ceiling SELECT sum(): "
            f"{ceiling:6.2f} s"
            f"   ratio {took / ceiling:6.2f}x (target <= 1)"
        )
        now = end - timedelta(days=10)
        month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
        month_ceiling, _ = await _timed("sum", conn.fetchval(SUM_SQL, month_start, now))
        settings = Settings(site={"timezone": "UTC", "currency": "USD"})
        took, summary = await _timed("summary", service.summary(conn, settings, now=now))
        assert isinstance(summary, dict)
        print(
            f"summary (month-to-date, projection): {took:4.2f} s   ceiling SELECT sum(): "
            f"{month_ceiling:5.2f} s"
            f"   ratio {took / month_ceiling:5.1f}x   (mtd {summary['month_to_date']:,.2f}, "
            f"projected {summary['projected_month']:,.2f})"
        )
        met = ratios["bill"] <= 0.2 and ratios["comparison"] <= 1 and ratios["job"] <= 10
        print(
            f"targets {'met' if met else 'NOT met'}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        )
    finally:
        await conn.close()
        await drop_scratch_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.days))
