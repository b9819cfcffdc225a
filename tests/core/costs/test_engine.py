"""Hand-computed bills, to the cent, for each tariff feature (pure engine, no database)."""

from __future__ import annotations

import datetime as dt

from aetherlens.costs.engine import Slot, TariffVersion
from aetherlens.costs.tariff import parse_tariff

from .helpers import TOU_NY, D, bill, cents, local, steady, tariff, utc


def test_flat_rate() -> None:
    t = tariff(periods={"flat": {"price": "0.15"}})
    (b,) = bill(t, steady(utc(2026, 2, 2), utc(2026, 2, 3), "2"), utc(2026, 2, 2), utc(2026, 2, 3))
    assert b.kwh == 48
    assert cents(b.energy) == D("7.20")
    assert cents(b.total) == D("7.20")


def test_time_of_use_weekday_and_weekend() -> None:
    # Mon 2 Feb .. Mon 9 Feb 2026 (no DST): 5 weekdays x 5 peak hours = 25 kWh at 0.30, 143 kWh at 0.10.
    t = parse_tariff(TOU_NY)
    start, end = local(2026, 2, 2), local(2026, 2, 9)
    (b,) = bill(t, steady(start, end, "1"), start, end)
    assert b.energy_by_period["peak"]["kwh"] == 25
    assert b.energy_by_period["off_peak"]["kwh"] == 143
    assert cents(b.energy) == D("21.80")
    doc = b.to_json()
    assert doc["breakdown"]["energy_by_period"]["peak"]["cost"] == 7.5
    assert doc["start"] == "2026-02-02T00:00:00-05:00"


def test_holiday_billed_as_weekend_or_by_its_own_rule() -> None:
    # Friday 3 July 2026 is Independence Day (observed) in the US.
    start, end = local(2026, 7, 3), local(2026, 7, 4)
    slots = steady(start, end, "1")
    (plain,) = bill(parse_tariff(TOU_NY), slots, start, end)
    assert cents(plain.energy) == D("3.40")  # 5 x 0.30 + 19 x 0.10: no holiday calendar
    (hol,) = bill(parse_tariff({**TOU_NY, "holidays": "US"}), slots, start, end)
    assert cents(hol.energy) == D("2.40")  # all 24 h off-peak, like a weekend
    own = {
        **TOU_NY,
        "holidays": "US",
        "periods": {**TOU_NY["periods"], "holiday": {"price": "0.05"}},
        "schedule": [*TOU_NY["schedule"], {"period": "holiday", "days": ["holiday"]}],
    }
    (rule,) = bill(parse_tariff(own), slots, start, end)
    assert cents(rule.energy) == D("1.20")
    # A subdivision calendar: 31 March (César Chávez Day) is a holiday in California only.
    start2, end2 = local(2026, 3, 31), local(2026, 4, 1)
    (ca,) = bill(parse_tariff({**TOU_NY, "holidays": "US-CA"}), steady(start2, end2, "1"), start2, end2)
    assert cents(ca.energy) == D("2.40")


def test_seasons_by_month_and_by_date_range() -> None:
    by_month = tariff(
        seasons={"summer": {"months": [6, 7, 8, 9]}, "winter": {"months": [1, 2, 3, 4, 5, 10, 11, 12]}},
        periods={"s": {"price": "0.20"}, "w": {"price": "0.10"}},
        schedule=[{"period": "s", "seasons": ["summer"]}, {"period": "w", "seasons": ["winter"]}],
    )
    (july,) = bill(by_month, steady(utc(2026, 7, 1), utc(2026, 7, 2), "1"), utc(2026, 7, 1), utc(2026, 7, 2))
    (jan,) = bill(by_month, steady(utc(2026, 1, 5), utc(2026, 1, 6), "1"), utc(2026, 1, 5), utc(2026, 1, 6))
    assert cents(july.energy) == D("4.80")
    assert cents(jan.energy) == D("2.40")
    by_range = tariff(
        seasons={"high": {"from": "06-15", "to": "09-14"}, "low": {"from": "09-15", "to": "06-14"}},
        periods={"h": {"price": "0.50"}, "l": {"price": "0.25"}},
        schedule=[{"period": "h", "seasons": ["high"]}, {"period": "l", "seasons": ["low"]}],
    )
    # 14 and 15 June: one day in each season.
    (b,) = bill(by_range, steady(utc(2026, 6, 14), utc(2026, 6, 16), "1"), utc(2026, 6, 14), utc(2026, 6, 16))
    assert b.energy_by_period["l"]["kwh"] == 24 and b.energy_by_period["h"]["kwh"] == 24
    assert cents(b.energy) == D("18.00")


def test_tier_boundary_crossed_mid_interval_is_split() -> None:
    t = tariff(periods={"flat": {"tiers": [{"up_to": 100, "price": "0.10"}, {"price": "0.20"}]}})
    slots = [Slot(utc(2026, 2, 2, h), D(40)) for h in range(3)]  # the third interval crosses 100 kWh
    (b,) = bill(t, slots, utc(2026, 2, 1), utc(2026, 3, 1))
    assert cents(b.energy) == D("14.00")  # 100 x 0.10 + 20 x 0.20
    assert b.energy_by_tier["tier_1"]["kwh"] == 100
    assert b.energy_by_tier["tier_2"]["kwh"] == 20
    # The hourly slot prices add up to the bill: the crossing interval is charged at both rates.
    assert cents(sum(s.energy_cost for s in b.slots)) == D("14.00")


def test_tiers_with_time_of_use_split_in_proportion() -> None:
    t = tariff(
        periods={
            "peak": {"tiers": [{"up_to": 100, "price": "0.30"}, {"price": "0.40"}]},
            "off": {"tiers": [{"up_to": 100, "price": "0.10"}, {"price": "0.15"}]},
        },
        schedule=[{"period": "peak", "hours": "16-21"}, {"period": "off", "hours": "21-16"}],
    )
    slots = [Slot(utc(2026, 2, 2, 17), D(30)), Slot(utc(2026, 2, 2, 3), D(90))]
    (b,) = bill(t, slots, utc(2026, 2, 1), utc(2026, 3, 1))
    # peak: 30x100/120x0.30 + 30x20/120x0.40 = 9.50; off: 90x100/120x0.10 + 90x20/120x0.15 = 9.75
    assert cents(b.energy_by_period["peak"]["cost"]) == D("9.50")
    assert cents(b.energy_by_period["off"]["cost"]) == D("9.75")
    assert cents(b.energy) == D("19.25")


def test_fixed_charges_daily_monthly_and_proration() -> None:
    t = tariff(fixed={"per_day": "0.50", "per_month": "12"})
    (whole,) = bill(t, [], utc(2026, 3, 1), utc(2026, 4, 1))
    assert cents(whole.fixed) == D("27.50")  # 31 x 0.50 + 12
    (clipped,) = bill(t, [], utc(2026, 3, 1), utc(2026, 3, 11))
    assert cents(clipped.fixed) == D("8.87")  # 10 x 0.50 + 12 x 10/31
    mid = tariff(fixed={"per_month": "12"}, billing_cycle_day=15)
    bills = bill(mid, [], utc(2026, 3, 1), utc(2026, 4, 30))
    assert [(b.start, b.end) for b in bills] == [
        (utc(2026, 3, 1), utc(2026, 3, 15)),
        (utc(2026, 3, 15), utc(2026, 4, 15)),
        (utc(2026, 4, 15), utc(2026, 4, 30)),
    ]
    assert [cents(b.fixed) for b in bills] == [D("6.00"), D("12.00"), D("6.00")]  # 14/28, whole, 15/30


def test_minimum_bill_tops_up_only_when_binding() -> None:
    t = tariff(fixed={"per_month": "5"}, minimum={"per_month": "20"})
    (low,) = bill(t, [Slot(utc(2026, 3, 2), D(10))], utc(2026, 3, 1), utc(2026, 4, 1))
    assert cents(low.minimum) == D("14.00")  # 20 - (1.00 energy + 5 fixed)
    assert cents(low.total) == D("20.00")
    (high,) = bill(t, [Slot(utc(2026, 3, 2), D(500))], utc(2026, 3, 1), utc(2026, 4, 1))
    assert high.minimum == 0
    assert cents(high.total) == D("55.00")


def test_flat_demand_on_highest_window_average() -> None:
    t = tariff(demand={"window_minutes": 15, "charges": [{"name": "facility", "price": "8"}]})
    start = utc(2026, 3, 2)
    slots = [Slot(start + dt.timedelta(minutes=5 * i), D("0.05")) for i in range(288)]  # 0.6 kW all day
    # 10:00-10:15 holds 1.0 + 0.5 + 0 kWh: 1.5 kWh in a quarter hour = 6 kW (the 5-minute max is 12 kW).
    burst = {
        utc(2026, 3, 2, 10, 0): D("1.0"),
        utc(2026, 3, 2, 10, 5): D("0.5"),
        utc(2026, 3, 2, 10, 10): D(0),
    }
    slots = [Slot(s.start, burst.get(s.start, s.import_kwh)) for s in slots]
    (b,) = bill(t, slots, utc(2026, 3, 1), utc(2026, 4, 1), minutes=5)
    assert b.peak_kw == 6
    assert cents(b.demand) == D("48.00")
    assert b.demand_by_period["facility"]["kw"] == 6


def test_time_of_use_demand_per_period() -> None:
    t = tariff(
        demand={
            "charges": [
                {"name": "facility", "price": "5"},
                {"name": "on_peak", "price": "12", "schedule": [{"hours": "16-21", "days": ["weekday"]}]},
            ]
        }
    )
    slots = [
        Slot(utc(2026, 3, 2, 3), D("2.5")),
        Slot(utc(2026, 3, 2, 17), D("1.5")),
    ]  # 10 kW at 3:00, 6 at 17:00
    (b,) = bill(t, slots, utc(2026, 3, 1), utc(2026, 4, 1), minutes=15)
    assert b.demand_by_period["facility"]["kw"] == 10
    assert b.demand_by_period["on_peak"]["kw"] == 6
    assert cents(b.demand) == D("122.00")  # 10 x 5 + 6 x 12


def test_demand_months_apply_by_cycle() -> None:
    t = tariff(demand={"charges": [{"name": "summer", "price": "10", "months": [6, 7, 8]}]})
    slots = [Slot(utc(2026, 3, 2, 3), D(1)), Slot(utc(2026, 7, 2, 3), D(1))]
    march, _, _, _, july = bill(t, slots, utc(2026, 3, 1), utc(2026, 8, 1), minutes=60)[:5]
    assert march.demand == 0
    assert cents(july.demand) == D("10.00")


def test_export_netted_per_hour_and_credited() -> None:
    t = tariff(periods={"flat": {"price": "0.20"}}, export_price="0.05")
    slots = [
        Slot(utc(2026, 3, 2, 10, 0), D(2), D(0)),
        Slot(utc(2026, 3, 2, 10, 30), D(1), D(1)),  # hour 10: import 3, export 1 → 2 kWh net import
        Slot(utc(2026, 3, 2, 12, 0), D(1), D(4)),  # hour 12: 3 kWh net export
    ]
    (b,) = bill(t, slots, utc(2026, 3, 1), utc(2026, 4, 1), minutes=30)
    assert b.kwh == 2
    assert cents(b.energy) == D("0.40")
    assert cents(b.export_credit) == D("0.15")
    assert cents(b.total) == D("0.25")
    # Netting per 30 minutes instead: 10:00 imports 2, 10:30 nets to 0, 12:00 still exports 3.
    (half,) = bill(
        tariff(periods={"flat": {"price": "0.20"}}, export_price="0.05", export_netting_minutes=30),
        slots,
        utc(2026, 3, 1),
        utc(2026, 4, 1),
        minutes=30,
    )
    assert half.kwh == 2 and cents(half.export_credit) == D("0.15")
    (per_period,) = bill(
        tariff(periods={"flat": {"price": "0.20", "export_price": "0.08"}}, export_price="0.05"),
        slots,
        utc(2026, 3, 1),
        utc(2026, 4, 1),
        minutes=30,
    )
    assert cents(per_period.export_credit) == D("0.24")


def test_carbon_per_period_and_from_series() -> None:
    t = tariff(
        periods={"peak": {"price": "0.3", "carbon_kg_per_kwh": "0.5"}, "off": {"price": "0.1"}},
        schedule=[{"period": "peak", "hours": "16-21"}, {"period": "off", "hours": "21-16"}],
        carbon_kg_per_kwh="0.2",
    )
    slots = [Slot(utc(2026, 3, 2, 17), D(2)), Slot(utc(2026, 3, 2, 3), D(10))]
    (b,) = bill(t, slots, utc(2026, 3, 1), utc(2026, 4, 1))
    assert b.carbon_kg == D("3.0")  # 2 x 0.5 + 10 x 0.2
    (s,) = bill(t, slots, utc(2026, 3, 1), utc(2026, 4, 1), carbon_series={utc(2026, 3, 2, 3): D("0.05")})
    assert s.carbon_kg == D("1.5")  # 2 x 0.5 (no series value) + 10 x 0.05


def test_dst_spring_forward_day_has_23_billed_hours() -> None:
    t = parse_tariff(
        {
            **TOU_NY,
            "fixed": {"per_day": "1"},
            "schedule": [{"period": "peak", "hours": "16-21"}, {"period": "off_peak", "hours": "21-16"}],
        }
    )
    start, end = local(2026, 3, 8), local(2026, 3, 9)  # Sunday 8 March 2026: clocks jump 2:00 → 3:00
    slots = steady(start, end, "1")
    assert len(slots) == 23
    (b,) = bill(t, slots, start, end)
    assert b.kwh == 23
    assert cents(b.energy) == D("3.30")  # 5 x 0.30 + 18 x 0.10
    assert cents(b.fixed) == D("1.00")  # one calendar day, whatever its length


def test_dst_fall_back_day_has_25_billed_hours() -> None:
    t = parse_tariff(
        {
            **TOU_NY,
            "fixed": {"per_day": "1"},
            "schedule": [{"period": "peak", "hours": "16-21"}, {"period": "off_peak", "hours": "21-16"}],
        }
    )
    start, end = local(2026, 11, 1), local(2026, 11, 2)  # Sunday 1 November 2026: 1:00-2:00 twice
    slots = steady(start, end, "1")
    assert len(slots) == 25
    (b,) = bill(t, slots, start, end)
    assert cents(b.energy) == D("3.50")  # 5 x 0.30 + 20 x 0.10
    assert cents(b.fixed) == D("1.00")
    # Peak is 16:00-21:00 local = 21:00-02:00 UTC after the change (EST), not 20:00 (EDT).
    peak_starts = sorted(s.start for s in b.slots if s.period == "peak")
    assert peak_starts[0] == dt.datetime(2026, 11, 1, 21, tzinfo=dt.UTC)


def test_tariff_change_mid_cycle() -> None:
    old = tariff(periods={"flat": {"price": "0.10"}}, fixed={"per_month": "10"})
    new = tariff(periods={"flat": {"price": "0.20"}}, fixed={"per_month": "20"}, effective_from="2026-03-16")
    versions = [TariffVersion(old, None), TariffVersion(new, new.effective_from_utc)]
    (b,) = bill(versions, steady(utc(2026, 3, 1), utc(2026, 4, 1), "1"), utc(2026, 3, 1), utc(2026, 4, 1))
    assert cents(b.energy) == D("112.80")  # 360 kWh x 0.10 + 384 kWh x 0.20
    assert cents(b.fixed) == D("15.16")  # 10 x 15/31 + 20 x 16/31
    assert cents(b.total) == D("127.96")


def test_bill_json_shape_follows_the_contract() -> None:
    t = tariff(fixed={"per_month": "3"})
    (b,) = bill(t, steady(utc(2026, 3, 1), utc(2026, 3, 2), "1"), utc(2026, 3, 1), utc(2026, 4, 1))
    doc = b.to_json()
    for key in (
        "start",
        "end",
        "currency",
        "kwh",
        "peak_kw",
        "energy",
        "fixed",
        "demand",
        "minimum",
        "export_credit",
        "total",
        "breakdown",
    ):
        assert key in doc
    assert set(doc["breakdown"]) == {"energy_by_period", "energy_by_tier", "demand_by_period"}
    # The engine computes in Decimal: the identity holds exactly there, and the hand-computed values
    # are 24 kWh x 0.10 + the whole month's 3.00 fixed charge.
    assert b.total == b.energy + b.fixed + b.demand + b.minimum - b.export_credit
    assert (b.energy, b.fixed, b.demand, b.minimum, b.export_credit) == (D("2.4"), D("3"), 0, 0, 0)
    assert b.total == D("5.4")
    # The JSON carries each Decimal as the nearest float (a conversion, not a float sum): JSON numbers.
    assert doc["kwh"] == 24.0 and doc["energy"] == 2.4 and doc["fixed"] == 3.0
    assert doc["total"] == float(D("5.4"))
    assert doc["gaps"] == []
