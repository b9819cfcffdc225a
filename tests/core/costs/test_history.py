"""Exact cost history: late data priced, numeric money that adds up over any range, local days,
fixed charges accrued by one rule, zones with half- and quarter-hour offsets."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from aetherlens.config import Settings, WriterSettings
from aetherlens.costs import service, store
from aetherlens.costs.engine import compute_bills
from aetherlens.costs.job import CostJob
from aetherlens.costs.stored import priced_energy
from aetherlens.db.writer import Writer

from .data import counter, write
from .helpers import D, cents, utc

FLAT_UTC: dict[str, Any] = {
    "name": "flat",
    "timezone": "UTC",
    "effective_from": "2026-01-01",
    "periods": {"flat": {"price": "0.10"}},
}
# Time of use with tiers, demand and fixed charges, in a zone with DST.
RICH_NY: dict[str, Any] = {
    "name": "rich",
    "timezone": "America/New_York",
    "effective_from": "2026-01-01",
    "periods": {
        "peak": {"tiers": [{"up_to": 300, "price": "0.31"}, {"price": "0.41"}]},
        "off": {"tiers": [{"up_to": 300, "price": "0.11"}, {"price": "0.17"}]},
    },
    "schedule": [
        {"period": "peak", "hours": "16-21", "days": ["weekday"]},
        {"period": "off", "hours": "21-16", "days": ["weekday"]},
        {"period": "off", "days": ["weekend"]},
    ],
    "fixed": {"per_month": "9.5", "per_day": "0.13"},
    "demand": {"charges": [{"name": "facility", "price": "3.7"}]},
}
FAST = WriterSettings(batch_size=1000, flush_interval=0.05, retry_initial=0.05, retry_max=0.2)


def _rows(readings: list[tuple[dt.datetime, str, str, float]]) -> list[tuple[Any, ...]]:
    return [(t, d, m, v, "kWh", None) for t, d, m, v in readings]


async def test_late_data_reaches_every_cost_table(cost_dsn: str, tmp_path: Path) -> None:
    """Readings stored 8 hours in the past after the job ran (a spool replay, a backfill) are priced:
    the writer marks their hours, the job re-derives exactly those (and the interval a late reading
    closes, which starts an hour earlier), and the rows, rollups and routes all show them."""
    conn = await asyncpg.connect(cost_dsn)
    try:
        await service.create_tariff(conn, FLAT_UTC)
        job = CostJob()
        async with Writer(cost_dsn, FAST, tmp_path / "spool") as writer:
            await writer.submit(_rows(counter("a", utc(2026, 4, 1), 48, 1.0)))
            # c read once at 10:00 on the 2nd; its next reading arrives late (below).
            await writer.submit(_rows([(utc(2026, 4, 2, 10), "c", "energy", 100.0)]))
            await job.run_once(conn, now=utc(2026, 4, 3))
            before = await service.device_costs(conn, "2026-04-02", "2026-04-03", now=utc(2026, 4, 3))
            assert {d["device_id"] for d in before} == {"a"}
            # Eight hours late: b's readings from 14:00 to 16:00, and c's closing reading at 11:00.
            await writer.submit(_rows(counter("b", utc(2026, 4, 2, 14), 2, 2.0)))
            await writer.submit(_rows([(utc(2026, 4, 2, 11), "c", "energy", 105.0)]))
        assert await conn.fetchval("SELECT count(*) FROM cost_pending") == 4  # 11, 14, 15 and 16 h
        await job.run_once(conn, now=utc(2026, 4, 3, 0, 10))
        assert await conn.fetchval("SELECT count(*) FROM cost_pending") == 0
        rows = {
            (r["device_id"], r["time"]): r["cost"]
            for r in await conn.fetch("SELECT device_id, time, cost FROM cost_calculations")
        }
        assert rows[("b", utc(2026, 4, 2, 14))] == D("0.2") and rows[("b", utc(2026, 4, 2, 15))] == D("0.2")
        assert rows[("c", utc(2026, 4, 2, 10))] == D("0.5")  # the interval the late reading closed
        hourly = await service.history(conn, "c", "2026-04-02", "2026-04-03", "hour")
        assert [(p["time"], p["cost"]) for p in hourly["points"]] == [("2026-04-02T10:00:00+00:00", 0.5)]
        daily = await service.history(conn, None, "2026-04-02", "2026-04-03", "day")
        assert cents(daily["points"][0]["cost"]) == D("3.30")  # a: 24 x 0.10, b: 0.40, c: 0.50
        devices = {
            d["device_id"]: d["cost"]
            for d in await service.device_costs(conn, "2026-04-02", "2026-04-03", now=utc(2026, 4, 3))
        }
        assert devices == pytest.approx({"a": 2.4, "b": 0.4, "c": 0.5})
    finally:
        await conn.close()


async def test_money_is_numeric_and_devices_add_up_to_the_bill_over_random_ranges(
    conn: asyncpg.Connection,
) -> None:
    for table in ("cost_calculations", "cost_hourly", "cost_daily", "cost_energy_slots"):
        types = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1"
            " AND column_name IN ('kwh', 'cost', 'carbon_kg', 'import_kwh', 'export_kwh')",
            table,
        )
        assert types and {r["data_type"] for r in types} == {"numeric"}, table
    tid = await service.create_tariff(conn, RICH_NY)
    start, steps = utc(2026, 2, 20), 45 * 96  # 45 days of 15-minute readings, across 8 March (DST)
    rng = random.Random(8)
    plugs = {"tv": [], "pc": []}  # type: dict[str, list[tuple[dt.datetime, str, str, float]]]
    meter: list[tuple[dt.datetime, str, str, float]] = []
    totals = {"tv": 0.0, "pc": 0.0, "main": 0.0}
    for i in range(steps + 1):
        t = start + dt.timedelta(minutes=15 * i)
        for device in plugs:
            plugs[device].append((t, device, "energy", totals[device]))
        meter.append((t, "main", "energy", totals["main"]))
        tv, pc = rng.uniform(0, 0.3), rng.uniform(0, 0.6)
        totals["tv"] += tv
        totals["pc"] += pc
        totals["main"] += tv + pc + rng.uniform(0, 0.2)
    await write(conn, meter + plugs["tv"] + plugs["pc"])
    now = start + dt.timedelta(days=45)  # March is a closed cycle, April open
    await CostJob(meter_device="main").run_once(conn, now=now)
    versions = await store.versions_of(conn, tid)
    zone = ZoneInfo("America/New_York")
    for _ in range(30):
        a = start + dt.timedelta(minutes=rng.randrange(0, 44 * 24 * 60))
        b = a + dt.timedelta(minutes=rng.randrange(1, 20 * 24 * 60))
        b = min(b, now)
        la, lb = a.astimezone(zone).replace(tzinfo=None), b.astimezone(zone).replace(tzinfo=None)
        fa, fb = la.isoformat(timespec="minutes"), lb.isoformat(timespec="minutes")
        items = await service.device_costs(conn, fa, fb, meter_device="main", now=now)
        bills = await service.bill(conn, tid, fa, fb, meter_device="main")
        site = sum((Decimal(repr(x["total"])) for x in bills), Decimal(0))
        assert {i["device_id"] for i in items} <= {"tv", "pc", "unmetered"}
        assert cents(sum((Decimal(repr(i["cost"])) for i in items), Decimal(0))) == cents(site), (fa, fb)
        # Stored slots with raw edges price like raw readings alone, to the cent.
        ua, ub = a.replace(second=0, microsecond=0), b.replace(second=0, microsecond=0)
        raw = await priced_energy(conn, versions, ua, ub, "main", raw_only=True)
        raw_bills = compute_bills(versions, raw.slots, raw.slot_minutes, ua, ub, gaps=raw.gaps)
        assert cents(sum((x.total for x in raw_bills), Decimal(0))) == cents(site), (fa, fb)
    # The history of a closed cycle adds up to its bill.
    march = await service.history(conn, None, "2026-03-01", "2026-04-01", "day")
    (march_bill,) = await service.bill(conn, tid, "2026-03-01", "2026-04-01", meter_device="main")
    assert cents(sum((Decimal(repr(p["cost"])) for p in march["points"]), Decimal(0))) == cents(
        march_bill["total"]
    )


async def test_days_are_the_tariffs_local_days_and_today_is_the_histories_point(
    conn: asyncpg.Connection,
) -> None:
    tid = await service.create_tariff(conn, {**RICH_NY, "demand": {"charges": []}})
    # 1 kWh per hour from 6 March until now (New York springs forward on the 8th).
    await write(conn, counter("d", utc(2026, 3, 6), 3 * 24 + 17, 1.0))
    now = utc(2026, 3, 9, 17, 20)  # 13:20 EDT on the 9th
    await CostJob().run_once(conn, now=now)
    days = await service.history(conn, None, "2026-03-07", "2026-03-10", "day")
    assert [p["time"] for p in days["points"]] == [
        "2026-03-07T00:00:00-05:00",
        "2026-03-08T00:00:00-05:00",
        "2026-03-09T00:00:00-04:00",
    ]
    assert [p["kwh"] for p in days["points"]][:2] == [24.0, 23.0]  # the DST day has 23 hours
    hours = await service.history(conn, None, "2026-03-08", "2026-03-09", "hour")
    assert len(hours["points"]) == 23
    assert cents(sum(Decimal(repr(p["cost"])) for p in hours["points"])) == cents(days["points"][1]["cost"])
    settings = Settings(site={"timezone": "America/New_York", "currency": "USD"})
    summary = await service.summary(conn, settings, now=now)
    assert cents(summary["today"]) == cents(days["points"][2]["cost"])
    assert days["points"][2]["kwh"] == pytest.approx(13.0)  # 00:00-13:00 local, hourly readings
    del tid


async def test_on_the_first_of_the_month_today_is_not_more_than_month_to_date(
    conn: asyncpg.Connection,
) -> None:
    await service.create_tariff(conn, {**FLAT_UTC, "fixed": {"per_month": "10"}})
    await write(conn, counter("d", utc(2026, 4, 1), 6, 0.5))
    now = utc(2026, 4, 1, 6)
    await CostJob().run_once(conn, now=now)
    summary = await service.summary(conn, Settings(site={"timezone": "UTC"}), now=now)
    # 3 kWh x 0.10 and a quarter of a day of the month's 10 (30 days): accrued to now, in both.
    expected = D("0.3") + D(10) / 30 / 4
    assert cents(summary["month_to_date"]) == cents(expected)
    assert cents(summary["today"]) == cents(expected)
    day = await service.history(conn, None, "2026-04-01", "2026-04-02", "day")
    assert cents(day["points"][0]["cost"]) == cents(summary["today"])
    # Projected: energy scaled to the cycle, the fixed charge whole.
    assert cents(summary["projected_month"]) == cents(D("0.3") * 30 * 4 + 10)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Asia/Kolkata", "2026-06-10", 24),  # +05:30
        ("Asia/Kathmandu", "2026-06-10", 24),  # +05:45
        ("Australia/Adelaide", "2026-10-04", 23),  # +09:30 -> +10:30 at 02:00
        ("Australia/Adelaide", "2026-10-05", 24),
    ],
)
async def test_half_and_quarter_hour_zones_bill_whole_local_days_in_the_right_periods(
    conn: asyncpg.Connection, zone: str, day: str, hours: int
) -> None:
    tariff = {
        "name": f"tou {zone}",
        "timezone": zone,
        "effective_from": "2026-01-01",
        "periods": {"peak": {"price": "0.50"}, "off": {"price": "0.10"}},
        "schedule": [
            {"period": "peak", "hours": "16-21"},
            {"period": "off", "hours": "21-16"},
        ],
    }
    tid = await service.create_tariff(conn, tariff)
    local_day = dt.date.fromisoformat(day)
    start = dt.datetime.combine(local_day, dt.time(), tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    first = start - dt.timedelta(hours=6)
    # A constant 1 kW load read every 5 minutes, from 6 hours before the day to 6 hours after.
    steps = (hours + 12) * 12
    await write(conn, counter("x", first, steps, 1 / 12, minutes=5))
    nxt = (local_day + dt.timedelta(days=1)).isoformat()
    (one,) = await service.bill(conn, tid, day, nxt, device_id="x")
    assert one["kwh"] == pytest.approx(hours)
    assert one["breakdown"]["energy_by_period"]["peak"]["kwh"] == pytest.approx(5.0)  # 16:00-21:00 local
    assert cents(one["total"]) == cents(D("0.50") * 5 + D("0.10") * (hours - 5))
    # The site bill from the cost job's stored slots, and the history's day, say the same.
    end = first + dt.timedelta(minutes=5 * steps)
    await CostJob().run_once(conn, now=end)
    assert await conn.fetchval("SELECT slot_minutes FROM cost_energy_state") == (15 if "Kath" in zone else 30)
    (site,) = await service.bill(conn, tid, day, nxt)
    assert cents(site["total"]) == cents(one["total"])
    points = (await service.history(conn, None, day, nxt, "day"))["points"]
    assert [p["time"][:10] for p in points] == [day]
    assert cents(points[0]["cost"]) == cents(one["total"])


async def test_one_unpriceable_series_fails_alone(conn: asyncpg.Connection) -> None:
    """Two subnormal power readings (stored before ingest refused them) make PostgreSQL's float
    arithmetic underflow when they are integrated; that device is left out and named, every other one
    is priced, and the summary, bill and comparison still answer."""
    tid = await service.create_tariff(conn, FLAT_UTC)
    await write(conn, counter("good", utc(2026, 4, 1), 24, 1.0))
    await write(
        conn, [(utc(2026, 4, 1, 1), "bad", "power", 5e-324), (utc(2026, 4, 1, 1, 5), "bad", "power", 5e-324)]
    )
    with pytest.raises(asyncpg.DataError):  # what every cost run met before
        await conn.fetch(
            "SELECT (value + lag(value) OVER (ORDER BY time)) / 2 * (5 / 3600.0 / 1000.0)"
            " FROM metrics WHERE device_id = 'bad'"
        )
    job = CostJob()
    await job.run_once(conn, now=utc(2026, 4, 2))
    status = job.status()
    assert status["status"] == "degraded"
    assert [f["device_id"] for f in status["failed_series"]] == ["bad"]
    assert "underflow" in status["failed_series"][0]["reason"]
    costs = await service.device_costs(conn, "2026-04-01", "2026-04-02", now=utc(2026, 4, 2))
    assert [(d["device_id"], d["cost"]) for d in costs] == [("good", pytest.approx(2.4))]
    (bill,) = await service.bill(conn, tid, "2026-04-01", "2026-04-02")
    assert bill["total"] == pytest.approx(2.4)
    summary = await service.summary(conn, Settings(site={"timezone": "UTC"}), now=utc(2026, 4, 1, 12))
    assert summary["month_to_date"] == pytest.approx(1.2)
    assert [r["total"] for r in await service.comparison(conn, "2026-04-01", "2026-04-02")] == [
        pytest.approx(2.4)
    ]
