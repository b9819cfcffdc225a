"""CostJob: prices new metered energy under the active tariff into hourly ``cost_calculations`` rows.

Incremental: raw ``metrics`` are read only after the job's watermark; they become hourly energy per
device (``cost_energy_hourly``) and the site's hourly peak window demand (``cost_demand_peaks``), both
kept beyond raw retention. The open billing cycle is then re-priced from those hourly tables (tiers and
demand depend on the whole cycle), and its rows are marked ``estimated`` until the cycle closes. When any
version of the tariff changes, every stored hour is re-priced: from raw data where it is still retained
(re-deriving the hourly tables) and from the hourly tables beyond that.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from aetherlens.costs import store
from aetherlens.costs.allocation import allocate
from aetherlens.costs.energy import load_carbon_series, load_energy
from aetherlens.costs.engine import ZERO, Slot, TariffVersion, compute_bills, cycle_bounds, floor_time
from aetherlens.costs.hourly import PEAK_WINDOWS, HourlyEnergy, read_stored, write_stored
from aetherlens.db.rollups import refresh_cost_rollups

log = logging.getLogger(__name__)
HOUR = dt.timedelta(hours=1)
CHUNK = dt.timedelta(days=28)  # the read-ahead past a chunk (energy.EDGE) stays a small share
OVERLAP = dt.timedelta(hours=2)


@dataclass
class CostJobResult:
    tariff_id: str | None = None
    priced_from: dt.datetime | None = None
    priced_to: dt.datetime | None = None
    rows: int = 0
    repriced: bool = False


class CostJob:
    def __init__(self, *, meter_device: str | None = None, capabilities: Any = None) -> None:
        self.meter_device = meter_device
        self.capabilities = capabilities

    async def run_once(
        self, pool: asyncpg.Pool | asyncpg.Connection, *, now: dt.datetime | None = None
    ) -> CostJobResult:
        if isinstance(pool, asyncpg.Pool):
            async with pool.acquire() as conn:
                return await self._run(conn, now)
        return await self._run(pool, now)

    async def _run(self, conn: asyncpg.Connection, now: dt.datetime | None) -> CostJobResult:
        end = floor_time(now or dt.datetime.now(dt.UTC), 60)
        tariff_id = await store.active_tariff_id(conn)
        if tariff_id is None:
            return CostJobResult()
        versions = await store.versions_of(conn, tariff_id)
        signature = store.versions_signature(versions)
        state = await conn.fetchrow(
            "SELECT watermark, versions_sig FROM cost_job_state WHERE tariff_id = $1", tariff_id
        )
        repriced = state is None or state["versions_sig"] != signature
        if repriced:
            raw_from = await conn.fetchval(
                "SELECT min(time) FROM metrics WHERE metric_type IN ('energy', 'energy_exported', 'power')"
            )
            stored_from = await conn.fetchval("SELECT min(hour) FROM cost_energy_hourly")
            if raw_from is None and stored_from is None:
                return CostJobResult(tariff_id)
            raw_from = floor_time(raw_from, 60) if raw_from else end
            price_from = min(x for x in (raw_from, stored_from) if x is not None)
        else:
            # Re-read a little before the watermark: a reading that arrived late closes an interval
            # that started before it (hours are replaced, never added to, so this is idempotent).
            raw_from = state["watermark"] - OVERLAP
            price_from = cycle_bounds(versions[0].tariff, raw_from)[0]
            for v in versions:
                if v.effective_from is None or v.effective_from <= raw_from:
                    price_from = cycle_bounds(v.tariff, raw_from)[0]
        if state is not None and state["watermark"] >= end and not repriced:
            return CostJobResult(tariff_id, priced_from=end, priced_to=end)
        windows = sorted({*PEAK_WINDOWS, *(v.tariff.demand.window_minutes for v in versions)})
        cursor = raw_from
        while cursor < end:
            chunk_end = min(cursor + CHUNK, end)
            hourly = HourlyEnergy()
            hourly.add_raw(
                await load_energy(conn, cursor, chunk_end, min(windows)), self.meter_device, windows
            )
            await write_stored(conn, hourly, cursor, chunk_end)
            cursor = chunk_end
        rows = await self._price(conn, tariff_id, versions, price_from, end)
        await conn.execute(
            "INSERT INTO cost_job_state (tariff_id, watermark, versions_sig) VALUES ($1, $2, $3)"
            " ON CONFLICT (tariff_id) DO UPDATE SET watermark = $2, versions_sig = $3, updated_at = now()",
            tariff_id,
            end,
            signature,
        )
        hours = sorted({r[0] for r in rows})
        if hours:
            await refresh_cost_rollups(conn, self.capabilities, hours)
        log.info("priced %d cost rows for tariff %s from %s to %s", len(rows), tariff_id, price_from, end)
        return CostJobResult(tariff_id, price_from, end, len(rows), repriced)

    async def _price(
        self,
        conn: asyncpg.Connection,
        tariff_id: str,
        versions: list[TariffVersion],
        start: dt.datetime,
        end: dt.datetime,
    ) -> list[tuple[Any, ...]]:
        window = versions[-1].tariff.demand.window_minutes
        stored = await read_stored(conn, start, end, [window])
        imports, exports = stored.imports, stored.exports
        peaks = stored.peaks.get(window, {})
        meter = self.meter_device
        site_imp: dict[dt.datetime, Decimal] | None = None
        site_exp: dict[dt.datetime, Decimal] | None = None
        if meter:
            site_imp, site_exp = imports.pop(meter, {}), exports.pop(meter, {})
            sources_imp: dict[dt.datetime, Decimal] = site_imp
            sources_exp: dict[dt.datetime, Decimal] = site_exp
        else:
            sources_imp = defaultdict(lambda: ZERO)
            sources_exp = defaultdict(lambda: ZERO)
            for table, target in ((imports, sources_imp), (exports, sources_exp)):
                for series in table.values():
                    for t, v in series.items():
                        target[t] += v
        times = sorted(set(sources_imp) | set(sources_exp))
        slots = [Slot(t, sources_imp.get(t, ZERO), sources_exp.get(t, ZERO)) for t in times]
        carbon = await load_carbon_series(conn, versions, start, end)
        bills = compute_bills(versions, slots, 60, start, end, hourly_peaks=peaks, carbon_series=carbon)
        records: list[tuple[Any, ...]] = []
        for cycle in bills:
            estimated = cycle.cycle_end is None or cycle.cycle_end > end
            for row in allocate(
                cycle, imports, exports, site_import=site_imp, site_export=site_exp, estimated=estimated
            ):
                records.append(
                    (
                        row.hour,
                        row.device_id,
                        tariff_id,
                        float(row.kwh),
                        float(row.cost),
                        row.period,
                        float(row.carbon_kg),
                        row.estimated,
                    )
                )
        merged: dict[tuple[dt.datetime, str], tuple[Any, ...]] = {}
        for rec in records:  # the no-energy fixed-charge row can share an hour with an unmetered row
            key = (rec[0], rec[1])
            if key in merged:
                old = merged[key]
                rec = (*old[:3], old[3] + rec[3], old[4] + rec[4], old[5] or rec[5], old[6] + rec[6], rec[7])
            merged[key] = rec
        async with conn.transaction():
            await conn.execute(
                "DELETE FROM cost_calculations WHERE tariff_id = $1 AND time >= $2 AND time < $3",
                tariff_id,
                start,
                end,
            )
            await conn.copy_records_to_table(
                "cost_calculations",
                records=list(merged.values()),
                columns=["time", "device_id", "tariff_id", "kwh", "cost", "period", "carbon_kg", "estimated"],
            )
        return list(merged.values())
