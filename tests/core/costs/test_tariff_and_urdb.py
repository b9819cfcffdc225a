"""Tariff validation (errors name the field) and the URDB import mapping (no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aetherlens.costs.files import read_document, tariff_from_document
from aetherlens.costs.tariff import load_tariff_yaml, load_yaml, parse_tariff
from aetherlens.costs.urdb import pick_rate, urdb_to_tariff
from aetherlens.errors import TariffError

from .helpers import TOU_NY, D, bill, cents, local, steady

FIXTURE = Path(__file__).parent / "fixtures" / "urdb_tou.json"


def _rejects(data: dict[str, Any], *fragments: str) -> None:
    with pytest.raises(TariffError) as info:
        parse_tariff(data)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


def test_validation_names_the_field() -> None:
    base = {"name": "x", "periods": {"flat": {"price": "0.1"}}}
    _rejects({**base, "currency": "XYZ"}, "currency", "unknown currency 'XYZ'")
    _rejects({**base, "timezone": "Mars/Olympus"}, "timezone", "unknown time zone")
    _rejects({**base, "holidays": "ZZ"}, "holidays", "unknown holiday calendar")
    _rejects(
        {**base, "periods": {"flat": {"tiers": [{"up_to": 500, "price": 1}, {"up_to": 100, "price": 2}]}}},
        "periods.flat",
        "tiers out of order",
    )
    _rejects(
        {**base, "periods": {"flat": {"tiers": [{"price": 1}, {"up_to": 100, "price": 2}]}}},
        "periods.flat",
        "only the last tier may be open-ended",
    )
    overlapping = {**TOU_NY, "schedule": [*TOU_NY["schedule"], {"period": "peak", "hours": "20-22"}]}
    _rejects(overlapping, "schedule", "overlapping periods", "weekday 20:00")
    uncovered = {**TOU_NY, "schedule": TOU_NY["schedule"][:2]}
    _rejects(uncovered, "schedule", "schedule hours not covered", "weekend 00:00")
    _rejects({**TOU_NY, "schedule": []}, "schedule", "several periods need a schedule")
    _rejects({**base, "schedule": [{"period": "nope"}]}, "schedule[0].period", "unknown period 'nope'")
    _rejects({**base, "seasons": {"s": {"months": [1, 2]}}}, "seasons", "do not cover")
    _rejects(
        {**base, "seasons": {"a": {"months": list(range(1, 13))}, "b": {"months": [3]}}}, "seasons", "overlap"
    )
    _rejects({**base, "bogus": 1}, "unknown field 'bogus'")
    _rejects({**base, "schedule": [{"period": "flat", "hours": "25-3"}]}, "schedule.0.hours")
    _rejects({**base, "demand": {"window_minutes": 7}}, "demand.window_minutes", "must divide 60")
    _rejects({**base, "billing_cycle_day": 31}, "billing_cycle_day")


def test_yaml_round_trip() -> None:
    text = """
name: Example TOU
currency: EUR
timezone: Europe/Berlin
billing_cycle_day: 1
periods:
  day: {price: 0.32}
  night: {price: 0.24, carbon_kg_per_kwh: 0.2}
schedule:
  - {period: day, hours: "6-22"}
  - {period: night, hours: "22-6"}
fixed: {per_month: 12.5}
"""
    tariff = load_tariff_yaml(text)
    assert tariff.periods["day"].price == D("0.32")
    again = parse_tariff(tariff.to_json())
    assert again == tariff
    with pytest.raises(TariffError, match="not valid YAML"):
        load_tariff_yaml("name: [unclosed")


def test_period_names_yaml_1_1_would_read_as_booleans_stay_names(tmp_path: Path) -> None:
    # "on"/"off"/"yes"/"no" are booleans in YAML 1.1; a tariff's "off" period must stay "off".
    text = """
name: On/off
currency: EUR
periods:
  on: {price: 0.30}
  off: {price: 0.10}
  no: {price: 0.05}
schedule:
  - {period: on, hours: "7-22", days: [weekday]}
  - {period: off, hours: "22-7", days: [weekday]}
  - {period: no, days: [weekend]}
"""
    tariff = load_tariff_yaml(text)
    assert list(tariff.periods) == ["on", "off", "no"]
    assert tariff.periods["off"].price == D("0.10")
    path = tmp_path / "onoff.yaml"
    path.write_text(text, encoding="utf-8")
    from_file, source = tariff_from_document(read_document(path), timezone="UTC")
    assert (source, list(from_file.periods)) == ("yaml", ["on", "off", "no"])
    # true/false stay booleans, so a boolean field still reads as one.
    assert load_yaml("a: true\nb: False\nc: off") == {"a": True, "b": False, "c": "off"}


def test_urdb_picks_by_label_and_maps_every_field() -> None:
    payload = json.loads(FIXTURE.read_text())
    with pytest.raises(TariffError, match="pick one with --label"):
        pick_rate(payload, None)
    with pytest.raises(TariffError, match="no rate with label 'nope'"):
        pick_rate(payload, "nope")
    rate = pick_rate(payload, "5e1676e95457a3f87673e3b0")
    tariff = urdb_to_tariff(rate, timezone="America/Los_Angeles", holidays="US")
    assert tariff.effective_from_utc is not None and tariff.effective_from_utc.year == 2024
    assert tariff.periods["period_0"].tier_list[0].price == D("0.32")  # rate + adj
    assert tariff.periods["period_0"].tier_list[0].up_to == D(300)
    assert tariff.periods["period_0"].export_price == D("0.05")  # sell
    assert tariff.fixed.per_month == D(10)
    assert tariff.minimum.per_day == D("0.32855")
    assert tariff.demand.window_minutes == 15
    assert [c.name for c in tariff.demand.charges] == ["flat_demand_0", "demand_period_1"]
    assert tariff.source and tariff.source["label"] == "5e1676e95457a3f87673e3b0"
    # A single rate object and a bare list are accepted too.
    assert pick_rate(rate, None)["label"] == rate["label"]
    assert pick_rate([rate], None)["label"] == rate["label"]


def test_urdb_rate_bills_to_the_cent() -> None:
    rate = pick_rate(json.loads(FIXTURE.read_text()), "5e1676e95457a3f87673e3b0")
    tariff = urdb_to_tariff(rate, timezone="America/Los_Angeles", holidays=None)
    zone = tariff.zone
    start, end = local(2026, 2, 1, zone=zone), local(2026, 3, 1, zone=zone)
    slots = steady(start, end, "0.25", minutes=15)  # 1 kW all month: 672 kWh
    (b,) = bill(tariff, slots, start, end, minutes=15)
    # 20 weekdays x 5 peak hours = 100 kWh peak, 572 off-peak; tiers 300 / 372 of 672 split each period.
    assert b.energy_by_period["period_1"]["kwh"] == 100
    assert cents(b.energy) == D("254.80")
    assert cents(b.fixed) == D("10.00")
    assert cents(b.demand) == D("15.00")  # flat 1 kW x 5 + on-peak 1 kW x 10
    assert b.minimum == 0  # 28 x 0.32855 = 9.20 is not binding
    assert cents(b.total) == D("279.80")
    # With the US holiday calendar, Presidents' Day (16 Feb) has no peak hours: 5 kWh move off-peak.
    holiday = urdb_to_tariff(rate, timezone="America/Los_Angeles", holidays="US")
    (h,) = bill(holiday, slots, start, end, minutes=15)
    assert cents(h.energy) == D("254.30")


def test_urdb_rejects_what_it_cannot_bill() -> None:
    rate = pick_rate(json.loads(FIXTURE.read_text()), "5e1676e95457a3f87673e3b0")
    with pytest.raises(TariffError, match="energyweekdayschedule"):
        urdb_to_tariff({**rate, "energyweekdayschedule": [[0] * 24] * 11}, timezone="UTC")
    with pytest.raises(TariffError, match=r"energyratestructure\[0\]\[0\].unit"):
        bad = [[{"rate": 0.1, "unit": "kWh daily"}], rate["energyratestructure"][1]]
        urdb_to_tariff({**rate, "energyratestructure": bad}, timezone="UTC")
    with pytest.raises(TariffError, match="energyratestructure is missing"):
        urdb_to_tariff({"label": "x"}, timezone="UTC")
    with pytest.raises(TariffError, match="fixedchargeunits"):
        urdb_to_tariff({**rate, "fixedchargeunits": "$/fortnight"}, timezone="UTC")
