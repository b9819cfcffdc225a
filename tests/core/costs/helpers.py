"""Small builders shared by the cost tests (tariff dicts, slot series, cent rounding)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aetherlens.costs.engine import CycleBill, Slot, TariffVersion, compute_bills
from aetherlens.costs.tariff import Tariff, parse_tariff

D = Decimal
NY = ZoneInfo("America/New_York")


def cents(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def local(y: int, m: int, d: int, h: int = 0, zone: ZoneInfo = NY) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=zone).astimezone(dt.UTC)


def utc(y: int, m: int, d: int, h: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, minute, tzinfo=dt.UTC)


def steady(start: dt.datetime, end: dt.datetime, kwh_per_slot: str, minutes: int = 60) -> list[Slot]:
    out = []
    t = start
    while t < end:
        out.append(Slot(t, D(kwh_per_slot)))
        t += dt.timedelta(minutes=minutes)
    return out


TOU_NY: dict[str, Any] = {
    "name": "TOU test",
    "currency": "USD",
    "timezone": "America/New_York",
    "periods": {"peak": {"price": "0.30"}, "off_peak": {"price": "0.10"}},
    "schedule": [
        {"period": "peak", "hours": "16-21", "days": ["weekday"]},
        {"period": "off_peak", "hours": "21-16", "days": ["weekday"]},
        {"period": "off_peak", "days": ["weekend"]},
    ],
}


def tariff(**fields: Any) -> Tariff:
    base: dict[str, Any] = {
        "name": "t",
        "currency": "USD",
        "timezone": "UTC",
        "periods": {"flat": {"price": "0.10"}},
    }
    base.update(fields)
    return parse_tariff(base)


def bill(
    t: Tariff | list[TariffVersion],
    slots: list[Slot],
    start: dt.datetime,
    end: dt.datetime,
    minutes: int = 60,
    **kw: Any,
) -> list[CycleBill]:
    versions = t if isinstance(t, list) else [TariffVersion(t)]
    return compute_bills(versions, slots, minutes, start, end, **kw)
