"""Bills from metered readings in a real PostgreSQL: counters, resets, power integration, gaps, URDB."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest

from aetherlens.costs import service
from aetherlens.errors import ConflictError, NotFoundError, ValidationError

from .data import counter, write
from .helpers import D, cents, tariff, utc

FIXTURE = Path(__file__).parent / "fixtures" / "urdb_tou.json"
FLAT = tariff(periods={"flat": {"price": "0.20"}})


async def test_counter_deltas_and_reset(conn: asyncpg.Connection) -> None:
    t0 = utc(2026, 3, 2)
    readings = [0.0, 1.0, 2.0, 3.0, 0.5, 1.5]  # the counter restarts between 03:00 and 04:00
    await write(conn, [(t0 + dt.timedelta(hours=i), "fridge", "energy", v) for i, v in enumerate(readings)])
    (b,) = await service.bill(conn, FLAT, "2026-03-01", "2026-04-01")
    assert b["kwh"] == pytest.approx(4.5)  # 1 + 1 + 1 + 0.5 (energy since the reset) + 1
    assert cents(b["total"]) == D("0.90")


async def test_interval_priced_in_the_period_where_it_starts(conn: asyncpg.Connection) -> None:
    t = tariff(
        periods={"a": {"price": "0.10"}, "b": {"price": "1.00"}},
        schedule=[{"period": "a", "hours": "0-12"}, {"period": "b", "hours": "12-24"}],
    )
    # One interval 11:30 → 12:30 (3 kWh): starts in period a.
    await write(
        conn, [(utc(2026, 3, 2, 11, 30), "m", "energy", 10.0), (utc(2026, 3, 2, 12, 30), "m", "energy", 13.0)]
    )
    (b,) = await service.bill(conn, t, "2026-03-01", "2026-04-01")
    assert cents(b["energy"]) == D("0.30")
    assert b["breakdown"]["energy_by_period"]["a"]["kwh"] == 3


async def test_power_integration_and_reported_gap(conn: asyncpg.Connection) -> None:
    rows = []
    for minute in range(61):  # 1 kW from 00:00 to 01:00
        rows.append((utc(2026, 3, 2) + dt.timedelta(minutes=minute), "heater", "power", 1000.0))
    for minute in range(61):  # nothing reported 01:00-03:00, then 1 kW until 04:00
        rows.append((utc(2026, 3, 2, 3) + dt.timedelta(minutes=minute), "heater", "power", 1000.0))
    await write(conn, rows)
    (b,) = await service.bill(conn, tariff(periods={"flat": {"price": "0.25"}}), "2026-03-01", "2026-04-01")
    assert b["kwh"] == pytest.approx(2.0)  # the two hours of the gap are not invented
    assert cents(b["total"]) == D("0.50")
    assert b["gaps"] == [
        {
            "device_id": "heater",
            "metric_type": "power",
            "start": "2026-03-02T01:00:00+00:00",
            "end": "2026-03-02T03:00:00+00:00",
            "kwh": None,
        }
    ]


async def test_power_sign_change_split_into_import_and_export(conn: asyncpg.Connection) -> None:
    # 2 kW import falling linearly to 2 kW export from 10:00 to 10:30 (zero at 10:15), then 2 kW export.
    step = dt.timedelta(seconds=450)
    values = [2000.0, 1000.0, 0.0, -1000.0, -2000.0, -2000.0, -2000.0, -2000.0, -2000.0]
    await write(conn, [(utc(2026, 3, 2, 10) + step * i, "inv", "power", v) for i, v in enumerate(values)])
    hourly = tariff(periods={"flat": {"price": "0.40"}}, export_price="0.10")
    (b,) = await service.bill(conn, hourly, "2026-03-01", "2026-04-01")
    # In 0.25 kWh (10:00-10:15), out 0.25 + 1 kWh: netted over the hour, 1 kWh is exported.
    assert b["kwh"] == pytest.approx(0.0)
    assert cents(b["export_credit"]) == D("0.10")
    quarter = tariff(periods={"flat": {"price": "0.40"}}, export_price="0.10", export_netting_minutes=15)
    (q,) = await service.bill(conn, quarter, "2026-03-01", "2026-04-01")
    assert q["kwh"] == pytest.approx(0.25)  # netted per 15 minutes the import is billed
    assert cents(q["energy"]) == D("0.10")
    assert q["export_credit"] == pytest.approx(0.125)


async def test_counter_gap_is_reported_and_energy_kept(conn: asyncpg.Connection) -> None:
    await write(conn, [(utc(2026, 3, 2, 0), "m", "energy", 0.0), (utc(2026, 3, 2, 5), "m", "energy", 5.0)])
    (b,) = await service.bill(conn, FLAT, "2026-03-01", "2026-04-01")
    assert cents(b["total"]) == D("1.00")
    assert [(g["device_id"], g["kwh"]) for g in b["gaps"]] == [("m", 5.0)]


async def test_meter_site_and_single_device_bill(conn: asyncpg.Connection) -> None:
    start = utc(2026, 3, 1)
    await write(conn, counter("main", start, 24, 3.0) + counter("tv", start, 24, 1.0))
    site = await service.bill(conn, FLAT, "2026-03-01", "2026-03-02", meter_device="main")
    both = await service.bill(conn, FLAT, "2026-03-01", "2026-03-02")
    tv = await service.bill(conn, FLAT, "2026-03-01", "2026-03-02", "tv")
    assert cents(site[0]["total"]) == D("14.40")  # the meter: 72 kWh
    assert cents(both[0]["total"]) == D("19.20")  # without a meter the site is the sum of devices: 96 kWh
    assert cents(tv[0]["total"]) == D("4.80")


async def test_tariff_crud_and_urdb_import_bill(conn: asyncpg.Connection) -> None:
    tid = await service.create_tariff(
        conn, {"name": "flat", "periods": {"f": {"price": "0.1"}}, "effective_from": "2026-01-01"}
    )
    assert (await service.get_tariff(conn, tid))["active"] is True  # the first tariff becomes active
    with pytest.raises(ConflictError):
        await service.create_tariff(
            conn, {"name": "flat", "periods": {"f": {"price": "0.2"}}, "effective_from": "2026-01-01"}
        )
    updated = await service.update_tariff(
        conn, tid, {"name": "flat", "periods": {"f": {"price": "0.3"}}, "effective_from": "2026-01-01"}
    )
    assert updated["definition"]["periods"]["f"]["price"] == "0.3"
    payload = json.loads(FIXTURE.read_text())
    uid = await service.import_urdb(conn, payload, "America/Los_Angeles", None, "5e1676e95457a3f87673e3b0")
    assert [t["id"] for t in await service.list_tariffs(conn)] == sorted([tid, uid], key=lambda i: i != uid)
    # 1 kW all February (local time), read every hour.
    start = dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC)
    await write(conn, counter("house", start, 672, 1.0))
    (b,) = await service.bill(conn, uid, "2026-02-01", "2026-03-01")
    assert cents(b["total"]) == D("279.80")  # hand-computed in test_tariff_and_urdb
    assert b["peak_kw"] == pytest.approx(1.0)  # hourly readings spread over the 15-minute windows
    assert b["start"] == "2026-02-01T00:00:00-08:00"
    await service.delete_tariff(conn, uid)
    with pytest.raises(NotFoundError):
        await service.get_tariff(conn, uid)
    with pytest.raises(ValidationError, match="to must be after from"):
        await service.bill(conn, tid, "2026-03-01", "2026-02-01")
