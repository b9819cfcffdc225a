"""Hourly energy and demand peaks: the cost job's stored form of the readings, kept beyond raw retention.

The job writes them; the job's re-pricing and the dashboard's month-to-date read them, topped up from
raw readings after the job's watermark, so a summary never re-reads a month of minute data.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aetherlens.costs.energy import DeviceEnergy, load_energy
from aetherlens.costs.engine import ZERO, Slot, floor_time

PEAK_WINDOWS = (15, 30, 60)


def _hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


def hourly_peaks(
    site: list[Slot], slot_minutes: int, windows: list[int]
) -> dict[int, dict[dt.datetime, Decimal]]:
    """Per window length: the highest average kW of any window inside each UTC hour."""
    out: dict[int, dict[dt.datetime, Decimal]] = {}
    for window in windows:
        if window % slot_minutes:
            continue  # the slots are coarser than this window: it cannot be measured from them
        sums: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        for s in site:
            sums[floor_time(s.start, window)] += s.demand
        per_hour: dict[dt.datetime, Decimal] = {}
        for t, kwh in sums.items():
            kw = kwh * 60 / window
            hour = _hour(t)
            per_hour[hour] = max(per_hour.get(hour, kw), kw)
        out[window] = per_hour
    return out


@dataclass
class HourlyEnergy:
    """Per device and UTC hour: imported and exported kWh; the site's hourly peaks per window."""

    imports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    exports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    peaks: dict[int, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))

    def add_raw(self, energy: DeviceEnergy, meter_device: str | None, windows: list[int]) -> None:
        for source, target in ((energy.imports, self.imports), (energy.exports, self.exports)):
            for device, slots in source.items():
                series = target[device]
                for t, kwh in slots.items():
                    hour = _hour(t)
                    series[hour] = series.get(hour, ZERO) + kwh
        site = energy.slots({meter_device} if meter_device else None)
        for window, per_hour in hourly_peaks(site, energy.slot_minutes, windows).items():
            self.peaks[window].update(per_hour)

    def site(self, meter_device: str | None) -> list[Slot]:
        """Hourly site slots: the meter alone, or the sum of every device."""
        imp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        exp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        for source, target in ((self.imports, imp), (self.exports, exp)):
            for device, series in source.items():
                if meter_device and device != meter_device:
                    continue
                for t, v in series.items():
                    target[t] += v
        return [Slot(t, imp.get(t, ZERO), exp.get(t, ZERO)) for t in sorted(set(imp) | set(exp))]


async def read_stored(conn: Any, start: dt.datetime, end: dt.datetime, windows: list[int]) -> HourlyEnergy:
    out = HourlyEnergy()
    rows = await conn.fetch(
        "SELECT hour, device_id, import_kwh, export_kwh FROM cost_energy_hourly"
        " WHERE hour >= $1 AND hour < $2",
        start,
        end,
    )
    for r in rows:
        if r["import_kwh"]:
            out.imports[r["device_id"]][r["hour"]] = _dec(r["import_kwh"])
        if r["export_kwh"]:
            out.exports[r["device_id"]][r["hour"]] = _dec(r["export_kwh"])
    peaks = await conn.fetch(
        "SELECT hour, window_minutes, peak_kw FROM cost_demand_peaks"
        " WHERE window_minutes = ANY($1::int[]) AND hour >= $2 AND hour < $3",
        windows,
        start,
        end,
    )
    for r in peaks:
        out.peaks[r["window_minutes"]][r["hour"]] = _dec(r["peak_kw"])
    return out


async def write_stored(conn: Any, hourly: HourlyEnergy, start: dt.datetime, end: dt.datetime) -> None:
    """Replace the stored hours in ``[start, end)`` (idempotent: re-reading raw data never adds twice)."""
    records = []
    for device in set(hourly.imports) | set(hourly.exports):
        imp, exp = hourly.imports.get(device, {}), hourly.exports.get(device, {})
        for hour in set(imp) | set(exp):
            records.append((hour, device, float(imp.get(hour, ZERO)), float(exp.get(hour, ZERO))))
    peaks = [(h, w, float(kw)) for w, per_hour in hourly.peaks.items() for h, kw in per_hour.items()]
    async with conn.transaction():
        await conn.execute("DELETE FROM cost_energy_hourly WHERE hour >= $1 AND hour < $2", start, end)
        await conn.execute("DELETE FROM cost_demand_peaks WHERE hour >= $1 AND hour < $2", start, end)
        await conn.copy_records_to_table(
            "cost_energy_hourly", records=records, columns=["hour", "device_id", "import_kwh", "export_kwh"]
        )
        await conn.copy_records_to_table(
            "cost_demand_peaks", records=peaks, columns=["hour", "window_minutes", "peak_kw"]
        )


async def site_hours(
    conn: Any,
    start: dt.datetime,
    end: dt.datetime,
    windows: list[int],
    meter_device: str | None,
    watermark: dt.datetime | None,
) -> HourlyEnergy:
    """Stored hours before the job's watermark, raw readings from there on (aligned to whole hours)."""
    split = min(max(watermark or start, start), end)
    split = _hour(split)
    hourly = await read_stored(conn, start, split, windows) if split > start else HourlyEnergy()
    if split < end:
        energy = await load_energy(conn, split, end, min(windows))
        hourly.add_raw(energy, meter_device, windows)
    return hourly
