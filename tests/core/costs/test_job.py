"""The cost job: hourly rows that add up to the site bill, incremental runs, re-pricing, dashboards."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from aetherlens.config import Settings
from aetherlens.costs import service
from aetherlens.costs.job import CostJob

from .data import counter, write
from .helpers import D, cents, utc

NOW = utc(2026, 4, 5, 12)  # the data ends here; the April cycle is open

TARIFF: dict[str, Any] = {
    "name": "tiered",
    "timezone": "UTC",
    "effective_from": "2026-01-01",
    "periods": {"flat": {"tiers": [{"up_to": 1000, "price": "0.10"}, {"price": "0.20"}]}},
    "fixed": {"per_month": "9", "per_day": "0.1"},
    "demand": {"charges": [{"name": "facility", "price": "4"}]},
}


def _sum(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(repr(r["cost"])) for r in rows), Decimal(0))


async def _setup(conn: asyncpg.Connection, until: dt.datetime) -> str:
    tid = await service.create_tariff(conn, TARIFF)
    start = utc(2026, 3, 1)
    hours = int((until - start).total_seconds() // 3600)
    # A meter (3 kWh/h) and two plugs (1 and 0.5 kWh/h): 1.5 kWh/h is nobody's.
    await write(
        conn,
        counter("main", start, hours, 3.0)
        + counter("tv", start, hours, 1.0)
        + counter("pc", start, hours, 0.5),
    )
    return tid


async def test_device_costs_add_up_to_the_site_bill(conn: asyncpg.Connection) -> None:
    tid = await _setup(conn, utc(2026, 4, 5, 12))
    job = CostJob(meter_device="main")
    result = await job.run_once(conn, now=utc(2026, 4, 5, 12, 30))
    assert result.rows > 0 and result.repriced
    (march,) = await service.bill(conn, tid, "2026-03-01", "2026-04-01", meter_device="main")
    # 2232 kWh: 1000 x 0.10 + 1232 x 0.20 = 346.40; fixed 9 + 3.10; demand 3 kW x 4 = 12.
    assert cents(march["total"]) == D("370.50")
    devices = await service.device_costs(conn, "2026-03-01", "2026-04-01", meter_device="main", now=NOW)
    assert {d["device_id"] for d in devices} == {"tv", "pc", "unmetered"}
    assert cents(_sum(devices)) == cents(march["total"])
    by_id = {d["device_id"]: d for d in devices}
    assert by_id["tv"]["kwh"] == pytest.approx(744.0)
    assert cents(by_id["tv"]["cost"]) == cents(
        Decimal(repr(march["total"])) / 3
    )  # a third of the meter's kWh
    assert not any(d["estimated"] for d in devices)  # March is closed
    april = await service.device_costs(conn, "2026-04-01", "2026-05-01", meter_device="main", now=NOW)
    (april_bill,) = await service.bill(conn, tid, "2026-04-01", "2026-04-05T12:00", meter_device="main")
    assert cents(_sum(april)) == cents(april_bill["total"])
    assert all(d["estimated"] for d in april)  # the April cycle is still open


async def test_incremental_runs_and_repricing(conn: asyncpg.Connection) -> None:
    tid = await _setup(conn, utc(2026, 4, 5, 12))
    job = CostJob(meter_device="main")
    await job.run_once(conn, now=utc(2026, 4, 5, 12))
    before = await conn.fetch(
        "SELECT * FROM cost_calculations WHERE time < '2026-04-01' ORDER BY time, device_id"
    )
    # More readings arrive; only they are read (the closed March rows stay as they were).
    more = 60
    start = utc(2026, 4, 5, 12)
    await write(
        conn,
        [r for r in counter("main", start, more, 3.0, first=3.0 * 836) if r[0] > start]
        + [r for r in counter("tv", start, more, 1.0, first=836.0) if r[0] > start]
        + [r for r in counter("pc", start, more, 0.5, first=418.0) if r[0] > start],
    )
    second = await job.run_once(conn, now=utc(2026, 4, 8))
    assert not second.repriced and second.priced_from == utc(2026, 4, 1)
    after = await conn.fetch(
        "SELECT * FROM cost_calculations WHERE time < '2026-04-01' ORDER BY time, device_id"
    )
    assert [(r["time"], r["device_id"], r["cost"]) for r in before] == [
        (r["time"], r["device_id"], r["cost"]) for r in after
    ]
    (april,) = await service.bill(conn, tid, "2026-04-01", "2026-04-08", meter_device="main")
    assert cents(
        _sum(
            await service.device_costs(
                conn, "2026-04-01", "2026-04-08", meter_device="main", now=utc(2026, 4, 8)
            )
        )
    ) == cents(april["total"])
    # A new tariff version from 16 March: the job notices and re-prices history from raw data.
    await service.create_tariff(
        conn, {**TARIFF, "effective_from": "2026-03-16", "periods": {"flat": {"price": "0.30"}}}
    )
    third = await job.run_once(conn, now=utc(2026, 4, 8))
    assert third.repriced
    (march,) = await service.bill(conn, tid, "2026-03-01", "2026-04-01", meter_device="main")
    # 15 days x 72 kWh = 1080 kWh at tiered rates (tiers on the cycle's 2232 kWh, in proportion),
    # 1152 kWh at 0.30.
    expected_energy = D(1080) * (D(1000) / D(2232) * D("0.10") + D(1232) / D(2232) * D("0.20")) + D(1152) * D(
        "0.30"
    )
    assert cents(march["energy"]) == cents(expected_energy)
    march_costs = await service.device_costs(conn, "2026-03-01", "2026-04-01", meter_device="main", now=NOW)
    assert cents(_sum(march_costs)) == cents(march["total"])
    # Beyond raw retention: March's raw rows are gone; another version re-prices March from the hourly
    # energy and stored demand peaks, to the same cents as a bill from raw data would.
    await service.create_tariff(
        conn,
        {
            **TARIFF,
            "effective_from": "2026-03-20",
            "periods": {"flat": {"price": "0.05"}},
            "demand": {"charges": [{"name": "facility", "price": "7"}]},
        },
    )
    (expected,) = await service.bill(conn, tid, "2026-03-01", "2026-04-01", meter_device="main")
    await conn.execute("DELETE FROM metrics WHERE time < '2026-04-01'")
    fourth = await job.run_once(conn, now=utc(2026, 4, 8))
    assert fourth.repriced
    march_costs = await service.device_costs(conn, "2026-03-01", "2026-04-01", meter_device="main", now=NOW)
    assert cents(_sum(march_costs)) == cents(expected["total"])
    assert expected["demand"] > 0


async def test_summary_projection_comparison_history(conn: asyncpg.Connection) -> None:
    tid = await _setup(conn, utc(2026, 4, 8))
    settings = Settings(site={"timezone": "UTC", "currency": "USD", "meter_device": "main"})
    now = utc(2026, 4, 7, 12)
    (mtd,) = await service.bill(conn, tid, "2026-04-01", "2026-04-07T12:00", meter_device="main")
    # Before any job run the summary reads raw readings; after one, stored hours up to the job's
    # watermark and raw readings after it. All three give the bill's numbers.
    raw_only = await service.summary(conn, settings, now=now)
    await CostJob(meter_device="main").run_once(conn, now=utc(2026, 4, 6, 3))
    mixed = await service.summary(conn, settings, now=now)
    await CostJob(meter_device="main").run_once(conn, now=utc(2026, 4, 8))
    summary = await service.summary(conn, settings, now=now)
    assert summary == mixed == raw_only
    assert summary["month_to_date"] == pytest.approx(mtd["total"])
    # 6.5 days of 30: energy scaled x30/6.5, fixed whole (9 + 30 x 0.1), demand as peaked so far.
    expected = Decimal(repr(mtd["energy"])) * 30 / D("6.5") + D(12) + Decimal(repr(mtd["demand"]))
    assert cents(summary["projected_month"]) == cents(expected)
    assert summary["current_period"] == "flat"
    assert summary["current_price"] == pytest.approx(0.10)  # 468 kWh so far: still in the first tier
    assert summary["currency"] == "USD"
    # today: 12 h x 3 kWh x 0.10, half a day of fixed charges accrued (0.10 + 9/30) / 2, and today's
    # share of the demand charge so far (3 kW x 4, by energy: 36 of 468 kWh).
    assert cents(summary["today"]) == cents(D("3.60") + D("0.20") + D(12) * 36 / 468)
    assert summary["today"] <= summary["month_to_date"]
    assert summary["carbon_today_kg"] == 0
    cheap = await service.create_tariff(conn, {"name": "cheap", "periods": {"f": {"price": "0.01"}}})
    ranking = await service.comparison(conn, "2026-03-01", "2026-04-01", meter_device="main")
    assert [r["tariff_id"] for r in ranking] == [cheap, tid]
    assert ranking[0]["total"] == pytest.approx(2232 * 0.01)
    last_cycle = await service.comparison(conn, meter_device="main", now=utc(2026, 4, 7))
    assert last_cycle == ranking  # no range = the last complete billing cycle (March)
    days = await service.history(conn, "tv", "2026-03-01", "2026-04-01", "day")
    assert len(days["points"]) == 31
    tv = next(
        d
        for d in await service.device_costs(conn, "2026-03-01", "2026-04-01", meter_device="main", now=NOW)
        if d["device_id"] == "tv"
    )
    assert sum(p["cost"] for p in days["points"]) == pytest.approx(tv["cost"])
    hours = await service.history(conn, None, "2026-03-02", "2026-03-03", "hour")
    assert len(hours["points"]) == 24


async def test_carbon_from_a_metric_series(conn: asyncpg.Connection) -> None:
    await service.create_tariff(
        conn,
        {
            "name": "carbon",
            "timezone": "UTC",
            "periods": {"flat": {"price": "0.10"}},
            "carbon_kg_per_kwh": "0.3",
            "carbon_metric": {"device_id": "grid", "metric_type": "carbon_intensity"},
        },
    )
    await write(conn, counter("d", utc(2026, 3, 2), 24, 1.0))
    # 400 g/kWh for the first 12 hours, 100 g/kWh after; 23:00 has no value (the tariff's 0.3 applies).
    series = [
        (utc(2026, 3, 2, h, m), "grid", "carbon_intensity", 400.0 if h < 12 else 100.0, "g/kWh")
        for h in range(23)
        for m in (0, 30)
    ]
    await conn.copy_records_to_table(
        "metrics", records=series, columns=["time", "device_id", "metric_type", "value", "unit"]
    )
    await CostJob().run_once(conn, now=utc(2026, 3, 3))
    (d,) = await service.device_costs(conn, "2026-03-02", "2026-03-03", now=utc(2026, 3, 3))
    assert d["carbon_kg"] == pytest.approx(12 * 0.4 + 11 * 0.1 + 0.3)
    settings = Settings(site={"timezone": "UTC", "currency": "USD"})
    summary = await service.summary(conn, settings, now=utc(2026, 3, 2, 23, 59))
    assert summary["carbon_today_kg"] == pytest.approx(12 * 0.4 + 11 * 0.1 + 0.3)


async def test_deleting_a_tariff_removes_its_costs_from_the_rollups(conn: asyncpg.Connection) -> None:
    tid = await _setup(conn, utc(2026, 4, 5, 12))
    await CostJob(meter_device="main").run_once(conn, now=utc(2026, 4, 5, 12, 30))
    counts = "SELECT (SELECT count(*) FROM {0} WHERE tariff_id = $1)"
    for table in ("cost_calculations", "cost_hourly", "cost_daily"):
        assert await conn.fetchval(counts.format(table), tid) > 0, table
    await service.delete_tariff(conn, tid)
    for table in ("cost_calculations", "cost_hourly", "cost_daily"):
        assert await conn.fetchval(counts.format(table), tid) == 0, table
