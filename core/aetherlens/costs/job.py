"""CostJob: keeps the stored energy and the active tariff's cost rows exact, however late data arrives.

Each run:

1. **Stored energy.** The writer marks every hour a write touches in ``cost_pending`` (in the data's
   transaction). The job re-derives from raw readings exactly the hours that are stale — the marked
   hours, reaching back to each series' previous reading (a late reading closes the interval that
   started there) — and the tail since its last run. When what stored slots depend on changes (slot
   length, demand windows, the site meter), everything still in raw retention is derived again, in
   chunks, with progress in the log and in ``/health``.
2. **Cost rows.** Every billing cycle that holds a re-derived hour, and the open cycle (its fixed
   charges accrue with time), is priced again from the stored slots (tiers and demand depend on the
   whole cycle), allocated to devices per slot and written to ``cost_calculations``; its rows are
   ``estimated`` until the cycle closes. ``cost_hourly`` (UTC hours) and ``cost_daily`` (the tariff's
   local days) are rebuilt over exactly those cycles. A change of any tariff version re-prices every
   stored hour.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import Counter

from aetherlens.costs import store
from aetherlens.costs.allocation import allocate
from aetherlens.costs.energy import load_carbon_series
from aetherlens.costs.engine import (
    TariffVersion,
    VersionSet,
    compute_bills,
    cycle_bounds,
    energy_slot_minutes,
)
from aetherlens.costs.stored import (
    affected_from,
    derive,
    energy_signature,
    merge,
    read_devices,
    stale_ranges,
    stored_windows,
)
from aetherlens.db.connection import connection
from aetherlens.db.queries import costs as q
from aetherlens.timebuckets import HOUR, ceil_time, floor_time, hour_floor, local_day_start

log = logging.getLogger(__name__)
CHUNK = dt.timedelta(days=28)  # the read-ahead past a chunk (energy.EDGE) stays a small share
PRICE_CHUNK_CYCLES = 3  # cycles priced and written per transaction on a full re-price


@dataclass
class CostJobResult:
    tariff_id: str | None = None
    priced_from: dt.datetime | None = None
    priced_to: dt.datetime | None = None
    rows: int = 0
    repriced: bool = False
    derived: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)


@dataclass
class Progress:
    """A long derivation's progress, for the log and /health."""

    phase: str = "idle"
    done_until: dt.datetime | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    started_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.phase == "idle" or self.start is None or self.end is None:
            return {"phase": "idle"}
        span = (self.end - self.start).total_seconds() or 1.0
        done = ((self.done_until or self.start) - self.start).total_seconds()
        return {
            "phase": self.phase,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "done_until": (self.done_until or self.start).isoformat(),
            "percent": round(100 * done / span, 1),
            "elapsed_s": round(time.monotonic() - (self.started_at or time.monotonic()), 1),
        }


SERIES_FAILED = Counter(
    "aetherlens_cost_series_failed_total",
    "Cost-job derivations that left a device out because its readings could not be computed",
)


class CostJob:
    def __init__(self, *, meter_device: str | None = None, capabilities: Any = None) -> None:
        self.meter_device = meter_device
        self.capabilities = capabilities  # kept for callers; the cost tables are the same on every path
        self.progress = Progress()
        self.failed_series: dict[str, str] = {}  # device -> reason, from the last run

    def status(self) -> dict[str, Any]:
        """For /health: a long derivation's progress, and the devices the last run had to leave out."""
        failed = [{"device_id": d, "reason": r} for d, r in sorted(self.failed_series.items())]
        state = "degraded" if failed else "ok"
        return {"status": state, "progress": self.progress.as_dict(), "failed_series": failed}

    async def run_once(
        self, pool: asyncpg.Pool | asyncpg.Connection, *, now: dt.datetime | None = None
    ) -> CostJobResult:
        async with connection(pool) as conn:
            return await self._run(conn, now)

    async def _run(self, conn: asyncpg.Connection, now: dt.datetime | None) -> CostJobResult:
        end = floor_time(now or dt.datetime.now(dt.UTC), 1)
        all_tariffs = await store.all_tariffs(conn)
        slot_minutes = energy_slot_minutes(all_tariffs)
        windows = stored_windows(all_tariffs)
        derived = await self._derive(conn, end, slot_minutes, windows)
        tariff_id = await store.active_tariff_id(conn)
        if tariff_id is None:
            return CostJobResult(derived=derived)
        versions = await store.versions_of(conn, tariff_id)
        stored_sig = energy_signature(slot_minutes, windows, self.meter_device)
        signature = f"{store.versions_signature(versions)}|{stored_sig}"
        state = await q.job_state(conn, tariff_id)
        repriced = state is None or state["versions_sig"] != signature
        if state is None or repriced:
            first = await q.first_stored_slot(conn)
            spans = [(first, end)] if first is not None and first < end else []
        else:
            # The re-derived hours' cycles, and the open cycle: its fixed charges accrue with time.
            spans = [*derived, (max(end - dt.timedelta(microseconds=1), state["watermark"]), end)]
        cycles = _cycles(versions, spans, end)
        rows = 0
        for a, b in _chunks(cycles, PRICE_CHUNK_CYCLES if repriced else len(cycles) or 1):
            rows += await self._price(conn, tariff_id, versions, a, b, slot_minutes, end)
        await q.set_job_state(conn, tariff_id, end, signature)
        priced_from = cycles[0][0] if cycles else end
        log.info("priced %d cost rows for tariff %s from %s to %s", rows, tariff_id, priced_from, end)
        return CostJobResult(tariff_id, priced_from, end, rows, repriced, derived)

    async def _derive(
        self, conn: asyncpg.Connection, end: dt.datetime, slot_minutes: int, windows: list[int]
    ) -> list[tuple[dt.datetime, dt.datetime]]:
        """Bring the stored slots up to ``end``; returns the ranges re-derived."""
        signature = energy_signature(slot_minutes, windows, self.meter_device)
        state = await q.energy_state(conn)
        marks = await q.pending_marks(conn)  # read before deriving: consumed only once derived
        if state is None or state["signature"] != signature:
            first = await q.first_energy_reading(conn)
            ranges = [(hour_floor(first), end)] if first is not None and first < end else []
            full = True
        else:
            tail_from = await _tail_from(conn, state["derived_to"])
            spans = [*await stale_ranges(conn, marks, state["derived_to"]), (tail_from, end)]
            ranges = merge(r for r in spans if r[0] < r[1])
            full = False
        if full and ranges:
            self.progress = Progress("deriving", None, ranges[0][0], end, time.monotonic())
        failed: dict[str, str] = {}
        for a, b in ranges:
            cursor = a
            while cursor < b:
                upto = min(cursor + CHUNK, b)
                failed.update(
                    await derive(conn, cursor, ceil_time(upto, 60), slot_minutes, windows, self.meter_device)
                )
                cursor = upto
                if full:
                    self.progress.done_until = cursor
                    log.info(
                        "cost job: stored energy derived up to %s (%s %%)",
                        cursor,
                        self.progress.as_dict()["percent"],
                    )
        if failed:
            SERIES_FAILED.inc(len(failed))
            log.error("cost job left out %s: their readings cannot be computed", ", ".join(sorted(failed)))
        self.failed_series = failed
        await q.consume_marks(conn, marks)
        derived_to = end if full or state is None else max(end, state["derived_to"])
        await q.set_energy_state(conn, signature, slot_minutes, derived_to)
        self.progress = Progress()
        return ranges

    async def _price(
        self,
        conn: asyncpg.Connection,
        tariff_id: str,
        versions: list[TariffVersion],
        start: dt.datetime,
        stop: dt.datetime,
        slot_minutes: int,
        now: dt.datetime,
    ) -> int:
        """Price ``[start, stop)`` (whole cycles, the last one possibly open) into cost rows."""
        stored = await read_devices(conn, start, stop, slot_minutes)
        demand: dict[int, dict[dt.datetime, Any]] = {}
        for w in {v.tariff.demand.window_minutes for v in versions}:
            demand[w] = {r["start"]: r["kw"] for r in await q.demand_windows(conn, start, stop, [w])}
        meter = self.meter_device
        slots = stored.site_slots(meter)
        site_imp = site_exp = None
        if meter:  # the meter is the site; the devices share its bill
            site_imp, site_exp = stored.imports.pop(meter, {}), stored.exports.pop(meter, {})
        carbon = await load_carbon_series(conn, versions, start, stop)
        bills = compute_bills(
            versions, slots, slot_minutes, start, stop, demand_windows=demand, carbon_series=carbon
        )
        records: list[tuple[Any, ...]] = []
        for cycle in bills:
            estimated = cycle.cycle_end is None or cycle.cycle_end > now
            for row in allocate(
                cycle,
                stored.imports,
                stored.exports,
                slot_minutes,
                site_import=site_imp,
                site_export=site_exp,
                estimated=estimated,
            ):
                records.append(
                    (
                        row.slot,
                        row.device_id,
                        tariff_id,
                        row.kwh,
                        row.cost,
                        row.period,
                        row.carbon_kg,
                        row.estimated,
                    )
                )
        await q.replace_costs(conn, tariff_id, start, stop, records)
        zone = versions[-1].tariff.zone
        hours = [(hour_floor(start), ceil_time(stop, 60))]
        days = [(local_day_start(start, zone), _next_local_midnight(stop, zone))]
        await q.refresh_cost_rollups(conn, tariff_id, hours, days, versions[-1].tariff.timezone)
        return len(records)


def _next_local_midnight(t: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    start = local_day_start(t, zone)
    if start == t:
        return t
    local = start.astimezone(zone).date() + dt.timedelta(days=1)
    return dt.datetime.combine(local, dt.time(), tzinfo=zone).astimezone(dt.UTC)


async def _tail_from(conn: asyncpg.Connection, derived_to: dt.datetime) -> dt.datetime:
    """The tail since the last derivation starts at its hour, reaching back to the previous readings
    (an interval open at the last run is closed by a reading that came after it)."""
    return await affected_from(conn, hour_floor(derived_to))


def _cycles(
    versions: Sequence[TariffVersion], spans: Sequence[tuple[dt.datetime, dt.datetime]], end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The billing cycles (clipped to ``end``) that hold any of ``spans``, in order, merged when adjacent."""
    in_force = VersionSet(versions)
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in merge(spans):
        cursor = a
        while cursor < min(b, end):
            cs, ce = cycle_bounds(in_force.versions[in_force.at(cursor)].tariff, cursor)
            if not out or out[-1][1] <= cs:
                out.append((cs, min(ce, end)))
            cursor = ce
    return out


def _chunks(
    cycles: list[tuple[dt.datetime, dt.datetime]], size: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Adjacent cycles grouped ``size`` at a time into one pricing range each."""
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for i, (a, b) in enumerate(cycles):
        if out and i % size and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


__all__ = ["HOUR", "CostJob", "CostJobResult", "Progress"]
