"""Metered energy per slot, computed inside PostgreSQL from the raw ``metrics`` rows.

- Cumulative counters (``energy``, ``energy_exported``): energy of an interval = counter at its end -
  counter at its start; a drop is a counter reset, after which the new reading is the energy since the
  reset. The interval is booked in the slot where it starts (CONTRACT "Bills").
- Devices that report only ``power`` (W, negative = export): trapezoidal integration between samples,
  split exactly at a zero crossing into import and export; a step longer than the gap cap is not
  integrated but reported as a gap (energy is never invented).
- Intervals longer than a slot are returned separately so demand can spread them over their real
  duration (and long counter intervals are reported as gaps: their energy is measured, its timing is not).

The year-of-minute-data path never moves raw rows to Python: deltas and slot sums are window functions
and GROUP BYs on the server.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from aetherlens.costs.engine import ZERO, Slot, TariffVersion
from aetherlens.timebuckets import floor_time

log = logging.getLogger(__name__)

WORK_MEM = "64MB"  # a constant, never user input
# Readings this far past the range close its last interval. None are needed before it: an interval
# that starts before the range is not the range's (it is priced where it starts).
EDGE = dt.timedelta(days=2)

# One pass over the readings: slot sums (kind 's') and the intervals longer than a slot (kind 'l'),
# which demand spreads over their real duration and which may be gaps. The CTE is computed once.
_COUNTER_SQL = """
WITH r AS (
    SELECT device_id, metric_type, time, value,
           lag(time) OVER w AS t0, lag(value) OVER w AS v0
    FROM metrics
    WHERE metric_type = ANY($1::text[]) AND time >= $2::timestamptz
      AND time < $3::timestamptz + $4::interval
      AND ($5::text[] IS NULL OR device_id = ANY($5::text[]))
    WINDOW w AS (PARTITION BY device_id COLLATE "C", metric_type COLLATE "C" ORDER BY time)
), d AS MATERIALIZED (
    SELECT device_id, metric_type, t0, time AS t1,
           CASE WHEN value >= v0 THEN value - v0 ELSE value END AS kwh,
           (value < v0) AS reset
    FROM r WHERE t0 >= $2::timestamptz AND t0 < $3::timestamptz
)
SELECT 's' AS kind, device_id, metric_type,
       date_bin($6::interval, t0, TIMESTAMPTZ '2000-01-01 00:00+00') AS slot, NULL::timestamptz AS t1,
       sum(kwh) AS kwh, count(*) FILTER (WHERE reset) AS resets
FROM d GROUP BY 2, 3, 4
UNION ALL
SELECT 'l', device_id, metric_type, t0, t1, kwh, 0 FROM d
WHERE metric_type = 'energy' AND t1 - t0 > $6::interval
"""

_POWER_SQL = """
WITH r AS (
    SELECT device_id, time, value AS p1,
           lag(time) OVER w AS t0, lag(value) OVER w AS p0
    FROM metrics
    WHERE metric_type = 'power' AND time >= $1::timestamptz
      AND time < $2::timestamptz + $3::interval
      AND device_id <> ALL($4::text[])
      AND ($5::text[] IS NULL OR device_id = ANY($5::text[]))
    WINDOW w AS (PARTITION BY device_id COLLATE "C" ORDER BY time)
), s AS (
    SELECT device_id, t0, time AS t1, p0, p1,
           extract(epoch FROM time - t0) / 3600.0 / 1000.0 AS h
    FROM r WHERE t0 >= $1::timestamptz AND t0 < $2::timestamptz
)
SELECT device_id, date_bin($6::interval, t0, TIMESTAMPTZ '2000-01-01 00:00+00') AS slot,
       sum(CASE WHEN p0 >= 0 AND p1 >= 0 THEN (p0 + p1) / 2 * h
                WHEN p0 <= 0 AND p1 <= 0 THEN 0
                ELSE greatest(p0, p1) ^ 2 / (2 * abs(p1 - p0)) * h END) AS imp,
       sum(CASE WHEN p0 <= 0 AND p1 <= 0 THEN -(p0 + p1) / 2 * h
                WHEN p0 >= 0 AND p1 >= 0 THEN 0
                ELSE least(p0, p1) ^ 2 / (2 * abs(p1 - p0)) * h END) AS exp
FROM s WHERE t1 - t0 <= $7::interval
GROUP BY 1, 2
"""

_POWER_GAPS_SQL = """
WITH r AS (
    SELECT device_id, time, lag(time) OVER w AS t0
    FROM metrics
    WHERE metric_type = 'power' AND time >= $1::timestamptz
      AND time < $2::timestamptz + $3::interval
      AND device_id <> ALL($4::text[])
      AND ($5::text[] IS NULL OR device_id = ANY($5::text[]))
    WINDOW w AS (PARTITION BY device_id COLLATE "C" ORDER BY time)
)
SELECT device_id, t0, time AS t1 FROM r
WHERE t0 >= $1::timestamptz AND t0 < $2::timestamptz AND time - t0 > $6::interval
"""


@dataclass
class DeviceEnergy:
    """Per device and slot: imported, exported and demand kWh; gaps found on the way."""

    slot_minutes: int
    imports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    exports: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    demand_moves: dict[str, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    gaps: list[dict[str, Any]] = field(default_factory=list)
    resets: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Series the server could not compute (e.g. float underflow on subnormal readings): device -> reason.
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: DeviceEnergy) -> None:
        for mine, theirs in (
            (self.imports, other.imports),
            (self.exports, other.exports),
            (self.demand_moves, other.demand_moves),
        ):
            for device, series in theirs.items():
                mine[device].update(series)
        for device, count in other.resets.items():
            self.resets[device] += count
        self.gaps.extend(other.gaps)
        self.failed.update(other.failed)

    @property
    def devices(self) -> set[str]:
        return set(self.imports) | set(self.exports)

    def slots(self, devices: set[str] | None = None) -> list[Slot]:
        """Site slots: the sum over ``devices`` (all when None)."""
        chosen = self.devices if devices is None else devices & self.devices
        imp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        exp: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        dem: dict[dt.datetime, Decimal] = defaultdict(lambda: ZERO)
        for device in chosen:
            for t, v in self.imports.get(device, {}).items():
                imp[t] += v
                dem[t] += v
            for t, v in self.exports.get(device, {}).items():
                exp[t] += v
            for t, v in self.demand_moves.get(device, {}).items():
                dem[t] += v
        times = set(imp) | set(exp) | set(dem)
        return [Slot(t, imp.get(t, ZERO), exp.get(t, ZERO), dem.get(t, ZERO)) for t in sorted(times)]


def _dec(value: Any) -> Decimal:
    # float8 from the server: via repr, so 0.1 stays 0.1 rather than its binary expansion.
    return Decimal(repr(float(value))) if value is not None else ZERO


async def load_energy(
    conn: Any,
    start: dt.datetime,
    end: dt.datetime,
    slot_minutes: int,
    *,
    devices: list[str] | None = None,
    power_gap: dt.timedelta = dt.timedelta(minutes=10),
    counter_gap: dt.timedelta = dt.timedelta(hours=1),
) -> DeviceEnergy:
    """Energy per device and slot for intervals starting in ``[start, end)``.

    One series whose readings the server's arithmetic cannot carry (a value stored before ingest
    refused such values, e.g. two subnormal readings whose difference underflows) fails alone: the
    range is read again device by device, and that device is left out and named in ``failed``.
    """
    args = (start, end, slot_minutes, power_gap, counter_gap)
    try:
        return await _load_in_transaction(conn, *args, devices)
    except asyncpg.DataError:
        if devices is not None and len(devices) == 1:
            raise
    out = DeviceEnergy(slot_minutes)
    for device in devices or await _devices_in(conn, start, end):
        try:
            out.merge(await _load_in_transaction(conn, *args, [device]))
        except asyncpg.DataError as exc:
            log.warning("energy of %s from %s to %s cannot be computed: %s", device, start, end, exc)
            out.failed[device] = str(exc)
    out.gaps.sort(key=lambda g: (g["start_utc"], g["device_id"]))
    return out


async def _load_in_transaction(
    conn: Any,
    start: dt.datetime,
    end: dt.datetime,
    slot_minutes: int,
    power_gap: dt.timedelta,
    counter_gap: dt.timedelta,
    devices: list[str] | None,
) -> DeviceEnergy:
    async with conn.transaction(readonly=True):
        # The window functions sort a device's readings; with the stock 4 MB they spill to disk.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        return await _load(conn, start, end, slot_minutes, devices, power_gap, counter_gap)


async def _devices_in(conn: Any, start: dt.datetime, end: dt.datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT device_id FROM metrics WHERE metric_type = ANY($1::text[])"
        " AND time >= $2 AND time < $3::timestamptz + $4::interval ORDER BY device_id",
        ["energy", "energy_exported", "power"],
        start,
        end,
        EDGE,
    )
    return [r["device_id"] for r in rows]


async def _load(
    conn: Any,
    start: dt.datetime,
    end: dt.datetime,
    slot_minutes: int,
    devices: list[str] | None,
    power_gap: dt.timedelta,
    counter_gap: dt.timedelta,
) -> DeviceEnergy:
    slot = dt.timedelta(minutes=slot_minutes)
    out = DeviceEnergy(slot_minutes)
    rows = await conn.fetch(_COUNTER_SQL, ["energy", "energy_exported"], start, end, EDGE, devices, slot)
    counter_devices: set[str] = set()
    for row in rows:
        if row["kind"] == "l":
            t0, t1, kwh = row["slot"], row["t1"], _dec(row["kwh"])
            _spread_demand(out, row["device_id"], t0, t1, kwh, slot_minutes)
            if t1 - t0 > counter_gap:
                out.gaps.append(gap_record(row["device_id"], t0, t1, "energy", kwh))
            continue
        table = out.imports if row["metric_type"] == "energy" else out.exports
        table[row["device_id"]][row["slot"]] = _dec(row["kwh"])
        if row["metric_type"] == "energy":
            counter_devices.add(row["device_id"])
            out.resets[row["device_id"]] += int(row["resets"])
    excluded = sorted(counter_devices)
    for row in await conn.fetch(_POWER_SQL, start, end, EDGE, excluded, devices, slot, power_gap):
        if row["imp"]:
            out.imports[row["device_id"]][row["slot"]] = _dec(row["imp"])
        if row["exp"]:
            out.exports[row["device_id"]][row["slot"]] = _dec(row["exp"])
    for row in await conn.fetch(_POWER_GAPS_SQL, start, end, EDGE, excluded, devices, power_gap):
        out.gaps.append(gap_record(row["device_id"], row["t0"], row["t1"], "power", None))
    out.gaps.sort(key=lambda g: (g["start_utc"], g["device_id"]))
    return out


def gap_record(
    device: str, t0: dt.datetime, t1: dt.datetime, metric: str, kwh: Decimal | None
) -> dict[str, Any]:
    return {
        "device_id": device,
        "metric_type": metric,
        "start": t0.isoformat(),
        "end": t1.isoformat(),
        "start_utc": t0,
        # A counter's energy across a gap is measured (booked where the interval starts); a power
        # gap's energy is unknown and left out.
        "kwh": float(kwh) if kwh is not None else None,
    }


def _spread_demand(
    out: DeviceEnergy, device: str, t0: dt.datetime, t1: dt.datetime, kwh: Decimal, slot_minutes: int
) -> None:
    """Move a long interval's demand energy from its start slot over the slots it really covers."""
    moves = out.demand_moves[device]
    first = floor_time(t0, slot_minutes)
    moves[first] = moves.get(first, ZERO) - kwh
    total = Decimal((t1 - t0).total_seconds())
    cursor = t0
    step = dt.timedelta(minutes=slot_minutes)
    while cursor < t1:
        bucket = floor_time(cursor, slot_minutes)
        upto = min(bucket + step, t1)
        moves[bucket] = moves.get(bucket, ZERO) + kwh * Decimal((upto - cursor).total_seconds()) / total
        cursor = upto


_CARBON_UNITS = {"g/kWh": Decimal("0.001"), "gCO2/kWh": Decimal("0.001"), "kg/kWh": Decimal(1)}


async def load_carbon_series(
    conn: Any, versions: list[TariffVersion], start: dt.datetime, end: dt.datetime
) -> dict[dt.datetime, Decimal] | None:
    """Hourly grid intensity (kg/kWh) from the metric series a tariff names (g/kWh converted)."""
    metric = next((v.tariff.carbon_metric for v in versions if v.tariff.carbon_metric), None)
    if metric is None:
        return None
    rows = await conn.fetch(
        "SELECT date_trunc('hour', time, 'UTC') AS hour, avg(value) AS value, min(unit) AS unit FROM metrics"
        " WHERE device_id = $1 AND metric_type = $2 AND time >= $3 AND time < $4 GROUP BY 1",
        metric.device_id,
        metric.metric_type,
        start,
        end,
    )
    return {r["hour"]: _dec(r["value"]) * _CARBON_UNITS.get(r["unit"] or "", Decimal(1)) for r in rows}
