"""Stored energy: the cost job's form of the readings, kept beyond raw retention and priced from.

Per device and slot (``slot_minutes``: 60, or 30/15 where a tariff's zone has half- or quarter-hour
offsets) the imported and exported kWh; per demand window length the site's average kW of every window;
the gaps met on the way. Derived from raw readings by exactly the reader a raw bill uses
(``energy.load_energy``), so a bill priced from stored slots equals the raw-priced bill.

``priced_energy`` is what bills, comparisons and the month to date read: stored slots for the hours
that are derived and untouched since, raw readings for the rest (range edges that cut an hour, the
not-yet-derived tail, hours a late write touched).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from math import gcd
from typing import Any

import asyncpg

from aetherlens.costs.energy import EDGE, DeviceEnergy, gap_record, load_energy
from aetherlens.costs.engine import ZERO, Slot, TariffVersion, slot_minutes_for
from aetherlens.costs.tariff import Tariff
from aetherlens.db.queries import costs as q
from aetherlens.timebuckets import HOUR, ceil_time, floor_time, hour_floor

PEAK_WINDOWS = (15, 30, 60)


def stored_windows(tariffs: Iterable[Tariff]) -> list[int]:
    return sorted({*PEAK_WINDOWS, *(t.demand.window_minutes for t in tariffs)})


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


@dataclass
class StoredEnergy:
    """Per device and slot: imported and exported kWh; the site's demand windows; gaps."""

    slot_minutes: int
    imports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    exports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    windows: dict[int, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    gaps: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_raw(
        cls, energy: DeviceEnergy, slot_minutes: int, meter_device: str | None, windows: Sequence[int]
    ) -> StoredEnergy:
        out = cls(slot_minutes, gaps=list(energy.gaps))
        for source, target in ((energy.imports, out.imports), (energy.exports, out.exports)):
            for device, slots in source.items():
                series = target[device]
                for t, kwh in slots.items():
                    key = floor_time(t, slot_minutes)
                    series[key] = series.get(key, ZERO) + kwh
        site = energy.slots({meter_device} if meter_device else None)
        for window in windows:
            if window % energy.slot_minutes:
                continue  # coarser slots than this window: it cannot be measured from them
            sums: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
            for s in site:
                sums[floor_time(s.start, window)] += s.demand
            hours = Decimal(window) / Decimal(60)
            out.windows[window] = {t: kwh / hours for t, kwh in sums.items()}
        return out

    def site_slots(self, meter_device: str | None) -> list[Slot]:
        """Site slots without demand of their own (demand comes from the stored windows)."""
        imp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        exp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        for source, target in ((self.imports, imp), (self.exports, exp)):
            for device, series in source.items():
                if meter_device and device != meter_device:
                    continue
                for t, v in series.items():
                    target[t] += v
        return [Slot(t, imp.get(t, ZERO), exp.get(t, ZERO), ZERO) for t in sorted(set(imp) | set(exp))]


async def derive(
    conn: asyncpg.Connection,
    start: dt.datetime,
    end: dt.datetime,
    slot_minutes: int,
    windows: Sequence[int],
    meter_device: str | None,
) -> dict[str, str]:
    """Re-derive the stored slots, windows and gaps of ``[start, end)`` (whole hours) from raw readings;
    returns the devices whose readings could not be computed (left out, with the reason)."""
    raw_minutes = gcd(slot_minutes, *windows)
    energy = await load_energy(conn, start, end, raw_minutes)
    stored = StoredEnergy.from_raw(energy, slot_minutes, meter_device, windows)
    slots = [
        (t, device, stored.imports.get(device, {}).get(t, ZERO), stored.exports.get(device, {}).get(t, ZERO))
        for device in set(stored.imports) | set(stored.exports)
        for t in set(stored.imports.get(device, {})) | set(stored.exports.get(device, {}))
    ]
    window_rows = [
        (t, window, kw) for window, per in stored.windows.items() for t, kw in per.items() if start <= t < end
    ]
    gaps = [
        (
            g["device_id"],
            g["metric_type"],
            g["start_utc"],
            dt.datetime.fromisoformat(g["end"]),
            None if g["kwh"] is None else _dec(g["kwh"]),
        )
        for g in stored.gaps
    ]
    await q.replace_energy(conn, start, end, slots, window_rows, gaps, meter_device)
    return energy.failed


async def read_devices(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime, slot_minutes: int
) -> StoredEnergy:
    """Stored slots per device in ``[start, end)`` (for allocation)."""
    out = StoredEnergy(slot_minutes)
    for r in await q.device_slots(conn, start, end):
        if r["import_kwh"]:
            out.imports[r["device_id"]][r["slot"]] = r["import_kwh"]
        if r["export_kwh"]:
            out.exports[r["device_id"]][r["slot"]] = r["export_kwh"]
    return out


async def affected_from(conn: asyncpg.Connection, hour: dt.datetime) -> dt.datetime:
    """How far back a write into ``hour`` reaches: the hour of the earliest previous reading."""
    previous = await q.earliest_previous_reading(conn, hour, EDGE)
    return hour_floor(previous) if previous is not None and previous < hour else hour


def merge(ranges: Iterable[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


async def stale_ranges(
    conn: asyncpg.Connection, marks: Sequence[q.Mark], derived_to: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The hours whose stored slots a pending write made stale (each run reaches back to its series'
    previous readings)."""
    runs = merge((b, b + HOUR) for b, _ in marks if b < derived_to)
    return merge([(await affected_from(conn, a), b) for a, b in runs])


@dataclass
class PricedEnergy:
    slots: list[Slot]
    slot_minutes: int
    demand_windows: dict[int, dict[dt.datetime, Decimal]]
    gaps: list[dict[str, Any]]
    stored: list[tuple[dt.datetime, dt.datetime]]  # the ranges read from stored slots
    # Per device (only when asked for): kWh by slot start, raw and stored slots alike.
    imports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    exports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))

    def add_devices(self, source: str, rows: Iterable[tuple[str, dt.datetime, Decimal]]) -> None:
        table = self.imports if source == "import" else self.exports
        for device, t, kwh in rows:
            table[device][t] = table[device].get(t, ZERO) + kwh


def _subtract(
    span: tuple[dt.datetime, dt.datetime], holes: Sequence[tuple[dt.datetime, dt.datetime]]
) -> list[tuple[dt.datetime, dt.datetime]]:
    out, cursor = [], span[0]
    for a, b in merge(holes):
        if b <= cursor or a >= span[1]:
            continue
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < span[1]:
        out.append((cursor, span[1]))
    return out


async def priced_energy(
    conn: asyncpg.Connection,
    versions: Sequence[TariffVersion],
    start: dt.datetime,
    end: dt.datetime,
    meter_device: str | None,
    *,
    raw_only: bool = False,
    per_device: bool = False,
) -> PricedEnergy:
    """The site's slots for ``[start, end)``: stored where they are exact, raw readings elsewhere."""
    tariffs = [v.tariff for v in versions]
    raw_minutes = slot_minutes_for(tariffs)
    state = None if raw_only else await q.energy_state(conn)
    stored: list[tuple[dt.datetime, dt.datetime]] = []
    windows_needed = {t.demand.window_minutes for t in tariffs}
    if (
        state is not None
        and all(t.export_netting_minutes % state["slot_minutes"] == 0 for t in tariffs)
        and windows_needed <= set(_signature_part(state["signature"], "windows"))
        and _signature_part(state["signature"], "meter") == ([meter_device] if meter_device else [])
    ):
        interior = (ceil_time(start, 60), min(floor_time(end, 60), hour_floor(state["derived_to"])))
        if interior[0] < interior[1]:
            stale = await stale_ranges(conn, await q.pending_marks(conn), state["derived_to"])
            stored = _subtract(interior, stale)
    raw = _subtract((start, end), stored)
    out = PricedEnergy([], raw_minutes, {}, [], stored)
    slots, gaps = out.slots, out.gaps
    site = {meter_device} if meter_device else None
    for a, b in raw:
        energy = await load_energy(conn, a, b, raw_minutes)
        slots.extend(energy.slots(site))
        gaps.extend(energy.gaps if site is None else [g for g in energy.gaps if g["device_id"] in site])
        if per_device:
            for source, table in (("import", energy.imports), ("export", energy.exports)):
                out.add_devices(source, ((d, t, v) for d, m in table.items() for t, v in m.items()))
    windows: dict[int, dict[dt.datetime, Decimal]] = defaultdict(dict)
    for a, b in stored:
        for r in await q.site_slots(conn, a, b):
            slots.append(Slot(r["slot"], r["import_kwh"], r["export_kwh"], ZERO))
        if per_device:
            rows = await q.device_slots(conn, a, b)
            out.add_devices("import", ((r["device_id"], r["slot"], r["import_kwh"]) for r in rows))
            out.add_devices("export", ((r["device_id"], r["slot"], r["export_kwh"]) for r in rows))
        for r in await q.demand_windows(conn, a, b, sorted(windows_needed)):
            windows[r["window_minutes"]][r["start"]] = r["kw"]
        for r in await q.energy_gaps(conn, a, b, meter_device):
            gaps.append(gap_record(r["device_id"], r["t0"], r["t1"], r["metric_type"], r["kwh"]))
    gaps.sort(key=lambda g: (g["start_utc"], g["device_id"]))
    out.demand_windows = dict(windows)
    return out


def energy_signature(slot_minutes: int, windows: Sequence[int], meter_device: str | None) -> str:
    """What stored slots depend on; a change re-derives them."""
    return f"slot={slot_minutes};windows={','.join(map(str, windows))};meter={meter_device or ''}"


def _signature_part(signature: str, key: str) -> list[Any]:
    part = dict(p.split("=", 1) for p in signature.split(";")).get(key, "")
    values = [v for v in part.split(",") if v]
    return [int(v) for v in values] if key == "windows" else values
