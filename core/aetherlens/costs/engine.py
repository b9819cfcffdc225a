"""The bill engine: prices metered energy per billing cycle exactly the way the utility does.

Pure: no database. Input is a series of fixed-length *slots* (UTC) carrying the imported/exported kWh of
the intervals that start in them (CONTRACT: energy is priced in the period in which its interval starts)
and the energy used for demand (spread over each interval's real duration). The conventions, all from
CONTRACT.md "Bills":

- export is netted per ``export_netting_minutes`` (default 1 h): net import is priced, net export credited;
- tiers apply to the cycle's total kWh; with TOU, each period's energy is split across tiers in proportion
  to its share of the cycle (OpenEI/NREL), which also splits a tier boundary crossed mid-interval;
- demand = highest average kW over the demand window, per cycle (flat) and per demand period (TOU);
- fixed monthly charges (and the minimum bill) are whole for whole cycles, prorated by days otherwise;
  a tariff version change inside a cycle prorates each version's fixed, minimum and demand charges by
  its share of the cycle's days;
- ``total = energy + fixed + demand + minimum - export_credit`` (the minimum top-up compares against the
  charges before export credit).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from math import gcd
from typing import Any

from aetherlens.costs.tariff import Tariff, Tier
from aetherlens.timebuckets import floor_time, hour_floor, local_days, monthly_cycle_bounds, zone_slot_minutes

ZERO = Decimal(0)


@dataclass(frozen=True)
class Slot:
    start: dt.datetime  # UTC, aligned to the slot length
    import_kwh: Decimal = ZERO
    export_kwh: Decimal = ZERO
    demand_kwh: Decimal | None = None  # None = same as import_kwh

    @property
    def demand(self) -> Decimal:
        return self.import_kwh if self.demand_kwh is None else self.demand_kwh


@dataclass(frozen=True)
class TariffVersion:
    tariff: Tariff
    effective_from: dt.datetime | None = None  # UTC; None = since ever
    version_id: int | None = None


@dataclass
class SlotPrice:
    """What one slot costs at the site, for allocation to devices and the hourly cost rows."""

    start: dt.datetime
    period: str
    net_import_kwh: Decimal
    net_export_kwh: Decimal
    energy_cost: Decimal
    export_credit: Decimal
    carbon_kg: Decimal


@dataclass
class CycleBill:
    start: dt.datetime  # UTC, clipped to the range
    end: dt.datetime
    currency: str
    kwh: Decimal = ZERO
    peak_kw: Decimal = ZERO
    energy: Decimal = ZERO
    fixed: Decimal = ZERO
    demand: Decimal = ZERO
    minimum: Decimal = ZERO
    export_credit: Decimal = ZERO
    carbon_kg: Decimal = ZERO
    whole_cycle: bool = True
    cycle_end: dt.datetime | None = None  # the unclipped end: charges are final once time passes it
    zone: str = "UTC"
    energy_by_period: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    energy_by_tier: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    demand_by_period: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    slots: list[SlotPrice] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    # Fixed charges per tariff-version sub-span (start, end, amount, zone): what accrue_fixed spreads.
    fixed_spans: list[tuple[dt.datetime, dt.datetime, Decimal, str]] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.energy + self.fixed + self.demand + self.minimum - self.export_credit

    def to_json(self) -> dict[str, Any]:
        """The contract's bill object: JSON numbers, unrounded; times ISO 8601 in the tariff's zone."""
        zone = _zone(self.zone)

        def nums(table: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, float]]:
            return {k: {f: float(v) for f, v in row.items()} for k, row in table.items()}

        return {
            "start": self.start.astimezone(zone).isoformat(),
            "end": self.end.astimezone(zone).isoformat(),
            "currency": self.currency,
            "kwh": float(self.kwh),
            "peak_kw": float(self.peak_kw),
            "energy": float(self.energy),
            "fixed": float(self.fixed),
            "demand": float(self.demand),
            "minimum": float(self.minimum),
            "export_credit": float(self.export_credit),
            "total": float(self.total),
            "breakdown": {
                "energy_by_period": nums(self.energy_by_period),
                "energy_by_tier": nums(self.energy_by_tier),
                "demand_by_period": nums(self.demand_by_period),
            },
            "gaps": [{k: v for k, v in g.items() if k != "start_utc"} for g in self.gaps],
        }


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def tier_widths(total: Decimal, tiers: Sequence[Tier]) -> list[Decimal]:
    """How much of ``total`` falls in each tier (cumulative thresholds)."""
    widths: list[Decimal] = []
    low = ZERO
    for tier in tiers:
        high = tier.up_to
        width = max(total - low, ZERO) if high is None else min(max(total - low, ZERO), high - low)
        widths.append(width)
        if high is not None:
            low = high
    return widths


def tiered_charge(amount: Decimal, tiers: Sequence[Tier]) -> Decimal:
    return sum((w * t.price for w, t in zip(tier_widths(amount, tiers), tiers, strict=True)), ZERO)


def cycle_bounds(tariff: Tariff, t: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The billing cycle (UTC) containing ``t``: from local midnight of the cycle day, a month long."""
    return monthly_cycle_bounds(t, tariff.billing_cycle_day, tariff.zone)


class VersionSet:
    """A tariff's versions by effective_from; the earliest also prices anything before it."""

    def __init__(self, versions: Iterable[TariffVersion]) -> None:
        self.versions = sorted(
            versions, key=lambda v: v.effective_from or dt.datetime.min.replace(tzinfo=dt.UTC)
        )
        if not self.versions:
            raise ValueError("no tariff version")

    def at(self, t: dt.datetime) -> int:
        index = 0
        for i, version in enumerate(self.versions):
            if version.effective_from is None or version.effective_from <= t:
                index = i
        return index

    def changes_between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        return sorted(
            v.effective_from
            for v in self.versions
            if v.effective_from is not None and start < v.effective_from < end
        )


class PeriodCache:
    """period_at is called for every slot; a cache per (version, local hour) keeps a year of slots fast.

    Periods change on local hours, so the key is the slot floored to the grid on which the zone's local
    hours start (``zone_slot_minutes``): a UTC hour in Asia/Kolkata holds two local half hours, which
    may lie in different periods.
    """

    def __init__(self, versions: VersionSet) -> None:
        self.versions = versions
        self._grid = [zone_slot_minutes(v.tariff.timezone) for v in versions.versions]
        self._cache: dict[tuple[int, dt.datetime], str] = {}

    def period(self, vidx: int, t: dt.datetime) -> str:
        key = (vidx, floor_time(t, self._grid[vidx]))
        found = self._cache.get(key)
        if found is None:
            tariff = self.versions.versions[vidx].tariff
            found = self._cache[key] = tariff.period_at(key[1].astimezone(tariff.zone))
        return found


def energy_slot_minutes(tariffs: Iterable[Tariff]) -> int:
    """Slot length for energy alone: netting intervals and the zone's local hours fall on its grid."""
    minutes = 60
    for tariff in tariffs:
        minutes = gcd(minutes, tariff.export_netting_minutes, zone_slot_minutes(tariff.timezone))
    return minutes


def slot_minutes_for(tariffs: Iterable[Tariff]) -> int:
    """Slot length the raw data must be binned in so netting, demand windows and periods are exact."""
    tariffs = list(tariffs)
    minutes = energy_slot_minutes(tariffs)
    for tariff in tariffs:
        if tariff.demand.charges:
            minutes = gcd(minutes, tariff.demand.window_minutes)
    return minutes


def compute_bills(
    versions: Sequence[TariffVersion],
    slots: Iterable[Slot],
    slot_minutes: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    carbon_series: Mapping[dt.datetime, Decimal] | None = None,
    demand_windows: Mapping[int, Mapping[dt.datetime, Decimal]] | None = None,
    gaps: Sequence[dict[str, Any]] = (),
) -> list[CycleBill]:
    """One bill per billing cycle inside ``[start, end)`` (UTC instants), cycles clipped to the range.

    A slot starting before ``start`` holds only the intervals that start inside the range (the readers
    cut there), so it counts: a range may begin mid-slot. ``carbon_series`` maps UTC hours to kg/kWh
    (overrides the tariff's per-period intensity); ``demand_windows`` maps a window length to the
    average kW of each window (by its start) measured where the slots carry no demand of their own
    (the cost job's stored windows, for hours priced from its stored slots).
    """
    vs = VersionSet(versions)
    periods = PeriodCache(vs)
    by_cycle: dict[dt.datetime, list[Slot]] = defaultdict(list)
    cycles: list[tuple[dt.datetime, dt.datetime, dt.datetime, dt.datetime]] = []
    cursor = start
    while cursor < end:
        tariff = vs.versions[vs.at(cursor)].tariff
        cs, ce = cycle_bounds(tariff, cursor)
        cycles.append((max(cs, start), min(ce, end), cs, ce))
        cursor = ce
    first_slot = floor_time(start, slot_minutes)
    for slot in sorted(slots, key=lambda s: s.start):
        if not first_slot <= slot.start < end:
            continue
        at = max(slot.start, start)
        for c_start, c_end, _, _ in cycles:
            if c_start <= at < c_end:
                by_cycle[c_start].append(slot)
                break
    bills = []
    for c_start, c_end, full_start, full_end in cycles:
        bill = _price_cycle(
            vs,
            periods,
            by_cycle.get(c_start, []),
            slot_minutes,
            c_start,
            c_end,
            full_start,
            full_end,
            carbon_series,
            demand_windows,
        )
        bill.gaps = [g for g in gaps if c_start <= g["start_utc"] < c_end]
        bills.append(bill)
    return bills


def accrue_fixed(bill: CycleBill, grid_minutes: int) -> dict[dt.datetime, Decimal]:
    """The bill's fixed charges accrued per slot of the grid, by local wall-clock time.

    Every "so far" figure (today, month to date, history) uses this one rule: a fixed charge accrues
    evenly over the local days of its span. The slots of each span add up exactly to its amount (the
    last slot takes the remainder), so the accruals sum to ``bill.fixed``.
    """
    out: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
    step = dt.timedelta(minutes=grid_minutes)
    for span_start, span_end, amount, zone_name in bill.fixed_spans:
        if not amount:
            continue
        zone = _zone(zone_name)
        span_days = local_days(span_start, span_end, zone)
        cursor, given = floor_time(span_start, grid_minutes), ZERO
        last = floor_time(span_end - dt.timedelta(microseconds=1), grid_minutes)
        while cursor < last:
            piece_start, piece_end = max(cursor, span_start), min(cursor + step, span_end)
            part = amount * local_days(piece_start, piece_end, zone) / span_days if span_days else ZERO
            out[cursor] += part
            given += part
            cursor += step
        out[last] += amount - given
    return dict(out)


def _price_cycle(
    vs: VersionSet,
    periods: PeriodCache,
    slots: list[Slot],
    slot_minutes: int,
    start: dt.datetime,
    end: dt.datetime,
    full_start: dt.datetime,
    full_end: dt.datetime,
    carbon_series: Mapping[dt.datetime, Decimal] | None,
    demand_windows: Mapping[int, Mapping[dt.datetime, Decimal]] | None,
) -> CycleBill:
    first = vs.versions[vs.at(start)].tariff
    bill = CycleBill(
        start=start,
        end=end,
        currency=first.currency,
        zone=first.timezone,
        cycle_end=full_end,
        whole_cycle=(start == full_start and end == full_end),
    )
    # 1. Netting per interval, then each slot's net import in the period where it starts.
    buckets: dict[tuple[int, dt.datetime], list[Slot]] = defaultdict(list)
    for slot in slots:
        vidx = vs.at(slot.start)
        netting = vs.versions[vidx].tariff.export_netting_minutes
        buckets[(vidx, floor_time(slot.start, max(netting, slot_minutes)))].append(slot)
    prices: list[tuple[int, SlotPrice]] = []
    period_kwh: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    for (vidx, _), members in sorted(buckets.items(), key=lambda kv: kv[0][1]):
        tariff = vs.versions[vidx].tariff
        imported = sum((s.import_kwh for s in members), ZERO)
        exported = sum((s.export_kwh for s in members), ZERO)
        net_import, net_export = max(imported - exported, ZERO), max(exported - imported, ZERO)
        for i, slot in enumerate(members):
            period = periods.period(vidx, slot.start)
            share = net_import * slot.import_kwh / imported if imported else ZERO
            credit_kwh = net_export if i == 0 else ZERO
            credit = credit_kwh * tariff.export_price_of(period)
            hour = hour_floor(slot.start)
            intensity = carbon_series.get(hour) if carbon_series is not None else None
            if intensity is None:
                intensity = tariff.carbon_of(period)
            carbon = share * intensity if intensity is not None else ZERO
            prices.append((vidx, SlotPrice(slot.start, period, share, credit_kwh, ZERO, credit, carbon)))
            period_kwh[(vidx, period)] += share
    total_kwh = sum(period_kwh.values(), ZERO)
    bill.kwh = total_kwh
    # 2. Tiers on the cycle total; each (version, period) split in proportion to its share.
    effective: dict[tuple[int, str], Decimal] = {}
    for (vidx, period), kwh in period_kwh.items():
        tiers = vs.versions[vidx].tariff.periods[period].tier_list
        widths = tier_widths(total_kwh, tiers)
        cost = ZERO
        for k, (width, tier) in enumerate(zip(widths, tiers, strict=True)):
            part = kwh * width / total_kwh if total_kwh else ZERO
            cost += part * tier.price
            if len(tiers) > 1:
                row = bill.energy_by_tier.setdefault(f"tier_{k + 1}", {"kwh": ZERO, "cost": ZERO})
                row["kwh"] += part
                row["cost"] += part * tier.price
        effective[(vidx, period)] = cost / kwh if kwh else ZERO
        row = bill.energy_by_period.setdefault(period, {"kwh": ZERO, "cost": ZERO})
        row["kwh"] += kwh
        row["cost"] += cost
        bill.energy += cost
    for vidx, price in prices:
        price.energy_cost = price.net_import_kwh * effective.get((vidx, price.period), ZERO)
        bill.export_credit += price.export_credit
        bill.carbon_kg += price.carbon_kg
        bill.slots.append(price)
    # 3. Fixed, minimum and demand per version sub-span of the cycle.
    cuts = [start, *vs.changes_between(start, end), end]
    multi_version = len(cuts) > 2
    minimum_due = ZERO
    for sub_start, sub_end in pairwise(cuts):
        tariff = vs.versions[vs.at(sub_start)].tariff
        zone = tariff.zone
        cycle_days = local_days(full_start, full_end, zone)
        days = local_days(sub_start, sub_end, zone)
        month_share = Decimal(1) if (sub_start, sub_end) == (full_start, full_end) else days / cycle_days
        fixed = tariff.fixed.per_day * days + tariff.fixed.per_month * month_share
        bill.fixed += fixed
        bill.fixed_spans.append((sub_start, sub_end, fixed, tariff.timezone))
        minimum_due += tariff.minimum.per_day * days + tariff.minimum.per_month * month_share
        demand_share = days / cycle_days if multi_version else Decimal(1)
        _demand(
            bill,
            tariff,
            [s for s in slots if sub_start <= max(s.start, start) < sub_end],
            slot_minutes,
            full_start,
            demand_share,
            demand_windows,
            (sub_start, sub_end),
        )
    charges = bill.energy + bill.fixed + bill.demand
    bill.minimum = max(minimum_due - charges, ZERO)
    return bill


def _demand(
    bill: CycleBill,
    tariff: Tariff,
    slots: list[Slot],
    slot_minutes: int,
    cycle_start: dt.datetime,
    share: Decimal,
    demand_windows: Mapping[int, Mapping[dt.datetime, Decimal]] | None,
    span: tuple[dt.datetime, dt.datetime],
) -> None:
    window = max(tariff.demand.window_minutes, slot_minutes)
    windows: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
    for slot in slots:
        windows[floor_time(slot.start, window)] += slot.demand
    hours = Decimal(window) / Decimal(60)
    kw = {t: kwh / hours for t, kwh in windows.items()}
    stored = (demand_windows or {}).get(tariff.demand.window_minutes)
    if stored:
        # Stored windows cover hours whose slots carry no demand (0 above); raw-read hours have none.
        for t, value in stored.items():
            if span[0] <= t < span[1]:
                kw[t] = kw.get(t, ZERO) + value
    if kw:
        bill.peak_kw = max(bill.peak_kw, max(kw.values()))
    cycle_month = cycle_start.astimezone(tariff.zone).month
    local: dict[dt.datetime, dt.datetime] = {}
    for charge in tariff.demand.charges:
        if charge.schedule is None:  # flat: every window counts (a year has 35,000 of 15 minutes)
            applies = charge.months is None or cycle_month in charge.months
            peak = max(kw.values(), default=ZERO) if applies else ZERO
        else:
            local = local or {t: t.astimezone(tariff.zone) for t in kw}
            peak = max(
                (v for t, v in kw.items() if tariff.demand_applies(charge, local[t], cycle_month)),
                default=ZERO,
            )
        cost = tiered_charge(peak, charge.tier_list) * share
        row = bill.demand_by_period.setdefault(charge.name, {"kw": ZERO, "cost": ZERO})
        row["kw"] = max(row["kw"], peak)
        row["cost"] += cost
        bill.demand += cost
