"""The cost engine's service layer: what the CLI and the HTTP API call, so both give the same numbers.

Every function takes an asyncpg connection (or pool) and returns the contract's JSON shapes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg

from aetherlens.config import Settings
from aetherlens.costs import store
from aetherlens.costs.energy import DeviceEnergy, load_carbon_series, load_energy
from aetherlens.costs.engine import (
    ZERO,
    CycleBill,
    TariffVersion,
    compute_bills,
    cycle_bounds,
    local_days,
    slot_minutes_for,
)
from aetherlens.costs.hourly import PEAK_WINDOWS, site_hours
from aetherlens.costs.tariff import Tariff, parse_tariff
from aetherlens.costs.urdb import pick_rate, urdb_to_tariff
from aetherlens.db.rollups import refresh_cost_rollups
from aetherlens.errors import NotFoundError, ValidationError

type Conn = asyncpg.Connection | asyncpg.Pool
type TimeLike = dt.datetime | dt.date | str


def to_instant(value: TimeLike, zone: dt.tzinfo, what: str) -> dt.datetime:
    """A date (local midnight), a datetime (naive = local) or an ISO string → a UTC instant."""
    if isinstance(value, str):
        try:
            value = (
                dt.datetime.fromisoformat(value)
                if "T" in value or " " in value
                else dt.date.fromisoformat(value)
            )
        except ValueError:
            raise ValidationError(f"{what}: '{value}' is not an ISO date or datetime") from None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    # Billing cycles around a range reach a month either side: keep them inside datetime's years.
    if not 2 <= value.year <= 9998:
        raise ValidationError(f"{what}: '{value.date()}' must lie between the years 2 and 9998")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.UTC)


def _range(start: TimeLike, end: TimeLike, zone: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    a, b = to_instant(start, zone, "from"), to_instant(end, zone, "to")
    if b <= a:
        raise ValidationError("to must be after from", details={"from": a.isoformat(), "to": b.isoformat()})
    return a, b


async def _versions(conn: Conn, tariff: str | Tariff | list[TariffVersion]) -> list[TariffVersion]:
    if isinstance(tariff, Tariff):
        return [TariffVersion(tariff, None)]
    if isinstance(tariff, list):
        return tariff
    async with _acquire(conn) as c:
        return await store.versions_of(c, tariff)


class _acquire:
    """Use a connection as it is, or borrow one from a pool."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._held: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        if isinstance(self.conn, asyncpg.Pool):
            self._held = await self.conn.acquire()
            return self._held
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None and isinstance(self.conn, asyncpg.Pool):
            await self.conn.release(self._held)


def site_devices(meter_device: str | None) -> set[str] | None:
    """Which devices make up the site: the meter alone when set, else all of them."""
    return {meter_device} if meter_device else None


async def price(
    conn: Conn,
    versions: list[TariffVersion],
    start: dt.datetime,
    end: dt.datetime,
    *,
    device_id: str | None = None,
    meter_device: str | None = None,
    energy: DeviceEnergy | None = None,
) -> tuple[list[CycleBill], DeviceEnergy]:
    """Bills of the site (or of one device, standalone) for ``[start, end)``, plus the energy read."""
    minutes = slot_minutes_for(v.tariff for v in versions)
    async with _acquire(conn) as c:
        # Finer slots serve a coarser need; coarser ones would blur netting or demand: read again.
        if energy is None or minutes % energy.slot_minutes:
            energy = await load_energy(c, start, end, minutes, devices=[device_id] if device_id else None)
        carbon = await load_carbon_series(c, versions, start, end)
    chosen = {device_id} if device_id else site_devices(meter_device)
    slots = energy.slots(chosen)
    gaps = [g for g in energy.gaps if chosen is None or g["device_id"] in chosen]
    bills = compute_bills(versions, slots, energy.slot_minutes, start, end, carbon_series=carbon, gaps=gaps)
    return bills, energy


async def bill(
    conn: Conn,
    tariff: str | Tariff,
    start: TimeLike,
    end: TimeLike,
    device_id: str | None = None,
    *,
    meter_device: str | None = None,
) -> list[dict[str, Any]]:
    """The contract's bill JSON: one object per billing cycle inside ``[start, end)``."""
    versions = await _versions(conn, tariff)
    a, b = _range(start, end, versions[0].tariff.zone)
    bills, _ = await price(conn, versions, a, b, device_id=device_id, meter_device=meter_device)
    return [x.to_json() for x in bills]


# --- tariffs ---------------------------------------------------------------------------------------
async def list_tariffs(conn: Conn) -> list[dict[str, Any]]:
    async with _acquire(conn) as c:
        rows = await c.fetch(
            "SELECT id, name, effective_from, currency, timezone, source, definition::text AS definition,"
            " active, created_at, updated_at FROM rate_schedules ORDER BY name, effective_from"
        )
    return [store.row_to_json(r) for r in rows]


async def get_tariff(conn: Conn, tariff_id: str) -> dict[str, Any]:
    async with _acquire(conn) as c:
        return store.row_to_json(await store.fetch_row(c, tariff_id))


async def create_tariff(
    conn: Conn, definition: dict[str, Any] | Tariff, *, active: bool | None = None
) -> str:
    tariff = definition if isinstance(definition, Tariff) else parse_tariff(definition)
    async with _acquire(conn) as c:
        return await store.insert_tariff(c, tariff, source="yaml", active=active)


async def update_tariff(conn: Conn, tariff_id: str, definition: dict[str, Any]) -> dict[str, Any]:
    tariff = parse_tariff(definition)
    async with _acquire(conn) as c:
        row = await store.fetch_row(c, tariff_id)
        effective = tariff.effective_from_utc or row["effective_from"]
        await c.execute(
            "UPDATE rate_schedules SET name = $2, effective_from = $3, currency = $4, timezone = $5,"
            " definition = $6::text::jsonb, updated_at = now() WHERE id = $1",
            tariff_id,
            tariff.name,
            effective,
            tariff.currency,
            tariff.timezone,
            _dumps(tariff),
        )
        return store.row_to_json(await store.fetch_row(c, tariff_id))


def _dumps(tariff: Tariff) -> str:
    import orjson

    return orjson.dumps(tariff.to_json()).decode()


async def delete_tariff(conn: Conn, tariff_id: str) -> None:
    async with _acquire(conn) as c:
        async with c.transaction():
            deleted = await c.fetchval("DELETE FROM rate_schedules WHERE id = $1 RETURNING id", tariff_id)
            if deleted is None:
                raise NotFoundError(f"no tariff with id '{tariff_id}'", details={"tariff_id": tariff_id})
            hours = await c.fetch(
                "DELETE FROM cost_calculations WHERE tariff_id = $1 RETURNING time", tariff_id
            )
            await c.execute("DELETE FROM cost_job_state WHERE tariff_id = $1", tariff_id)
        # The rollups must forget the deleted hours too (after the commit: TimescaleDB refreshes its
        # continuous aggregates outside transactions).
        await refresh_cost_rollups(c, None, {r["time"] for r in hours})


async def activate_tariff(conn: Conn, tariff_id: str) -> None:
    async with _acquire(conn) as c, c.transaction():
        await store.fetch_row(c, tariff_id)
        await c.execute("UPDATE rate_schedules SET active = (id = $1) WHERE active OR id = $1", tariff_id)


async def import_urdb(
    conn: Conn,
    payload: Any,
    timezone: str,
    holidays: str | None,
    label: str | None = None,
    *,
    name: str | None = None,
) -> str:
    tariff = urdb_to_tariff(pick_rate(payload, label), timezone=timezone, holidays=holidays, name=name)
    async with _acquire(conn) as c:
        return await store.insert_tariff(c, tariff, source="urdb")


# --- dashboards -------------------------------------------------------------------------------------
async def _active(conn: Conn) -> tuple[str, list[TariffVersion]] | None:
    async with _acquire(conn) as c:
        tariff_id = await store.active_tariff_id(c)
        if tariff_id is None:
            return None
        return tariff_id, await store.versions_of(c, tariff_id)


async def summary(conn: Conn, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Today, month (billing cycle) to date, projected cycle total, the price and period in force now."""
    now = now or dt.datetime.now(dt.UTC)
    empty: dict[str, Any] = {
        "currency": settings.site.currency,
        "today": None,
        "month_to_date": None,
        "projected_month": None,
        "current_price": None,
        "current_period": None,
        "carbon_today_kg": None,
    }
    found = await _active(conn)
    if found is None:
        return empty
    tariff_id, versions = found
    current = versions[-1].tariff
    for v in versions:
        if v.effective_from is None or v.effective_from <= now:
            current = v.tariff
    cycle_start, cycle_end = cycle_bounds(current, now)
    bills = await _month_to_date(conn, tariff_id, versions, cycle_start, now, settings.site.meter_device)
    if not bills:
        return empty
    mtd = bills[-1]
    zone = current.zone
    local_now = now.astimezone(zone)
    midnight = dt.datetime.combine(local_now.date(), dt.time(), tzinfo=zone).astimezone(dt.UTC)
    today_slots = [s for s in mtd.slots if s.start >= midnight]
    cycle_days = local_days(cycle_start, cycle_end, zone)
    today = sum((s.energy_cost - s.export_credit for s in today_slots), ZERO)
    today += current.fixed.per_day + current.fixed.per_month / cycle_days
    period = current.period_at(local_now)
    tiers = current.periods[period].tier_list
    return {
        "currency": current.currency,
        "today": float(today),
        "month_to_date": float(mtd.total),
        "projected_month": float(projection(mtd, current, cycle_start, cycle_end, now)),
        "current_price": float(_marginal_price(mtd.kwh, tiers)),
        "current_period": period,
        "carbon_today_kg": float(sum((s.carbon_kg for s in today_slots), ZERO)),
    }


async def _month_to_date(
    conn: Conn,
    tariff_id: str,
    versions: list[TariffVersion],
    start: dt.datetime,
    now: dt.datetime,
    meter_device: str | None,
) -> list[CycleBill]:
    """The open cycle so far: from the cost job's hourly tables up to its watermark, raw readings after.

    Without a job run for this tariff yet, everything comes from raw readings.
    """
    async with _acquire(conn) as c:
        watermark = await c.fetchval("SELECT watermark FROM cost_job_state WHERE tariff_id = $1", tariff_id)
        if watermark is None:
            bills, _ = await price(c, versions, start, now, meter_device=meter_device)
            return bills
        window = versions[-1].tariff.demand.window_minutes
        windows = sorted({*PEAK_WINDOWS, window})
        hourly = await site_hours(c, start, now, windows, meter_device, watermark)
        carbon = await load_carbon_series(c, versions, start, now)
    return compute_bills(
        versions,
        hourly.site(meter_device),
        60,
        start,
        now,
        hourly_peaks=hourly.peaks.get(window),
        carbon_series=carbon,
    )


def _marginal_price(kwh: Decimal, tiers: list[Any]) -> Decimal:
    """The price of the next kWh: the first tier the cycle's energy has not filled yet."""
    for tier in tiers:
        if tier.up_to is None or kwh < tier.up_to:
            price: Decimal = tier.price
            return price
    last: Decimal = tiers[-1].price
    return last


def projection(
    mtd: CycleBill, tariff: Tariff, cycle_start: dt.datetime, cycle_end: dt.datetime, now: dt.datetime
) -> Decimal:
    """Energy and export so far scaled to the whole cycle; fixed charges whole; demand as peaked so far."""
    elapsed = Decimal((now - cycle_start).total_seconds())
    whole = Decimal((cycle_end - cycle_start).total_seconds())
    if elapsed <= 0:
        return ZERO
    scale = whole / elapsed
    energy = mtd.energy * scale
    credit = mtd.export_credit * scale
    days = local_days(cycle_start, cycle_end, tariff.zone)
    fixed = tariff.fixed.per_day * days + tariff.fixed.per_month
    minimum_due = tariff.minimum.per_day * days + tariff.minimum.per_month
    charges = energy + fixed + mtd.demand
    return charges + max(minimum_due - charges, ZERO) - credit


async def comparison(
    conn: Conn,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    meter_device: str | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Every stored tariff priced on the same metered energy; cheapest first.

    Without a range: the last complete billing cycle of the active tariff (or the last calendar month).
    """
    async with _acquire(conn) as c:
        names = await store.all_tariff_names(c)
        all_versions = {tid: await store.versions_of(c, tid) for tid, _ in names}
    if not names:
        return []
    found = await _active(conn)
    reference = found[1][-1].tariff if found else all_versions[names[0][0]][-1].tariff
    if start is None or end is None:
        this_start, _ = cycle_bounds(reference, now or dt.datetime.now(dt.UTC))
        a, b = cycle_bounds(reference, this_start - dt.timedelta(seconds=1))
    else:
        a, b = _range(start, end, reference.zone)
    minutes = slot_minutes_for(v.tariff for vs in all_versions.values() for v in vs)
    async with _acquire(conn) as c:
        energy = await load_energy(c, a, b, minutes)
    out: list[dict[str, Any]] = []
    for tariff_id, name in names:
        bills, _ = await price(conn, all_versions[tariff_id], a, b, meter_device=meter_device, energy=energy)
        out.append(
            {
                "tariff_id": tariff_id,
                "name": name,
                "total": float(sum((x.total for x in bills), ZERO)),
                "currency": all_versions[tariff_id][-1].tariff.currency,
            }
        )
    out.sort(key=lambda r: r["total"])
    return out


async def device_costs(
    conn: Conn, start: TimeLike, end: TimeLike, *, tariff_id: str | None = None
) -> list[dict[str, Any]]:
    """Per-device cost from the cost job's hourly rows (allocations of the site bill)."""
    async with _acquire(conn) as c:
        tariff_id = tariff_id or await store.active_tariff_id(c)
        if tariff_id is None:
            return []
        zone = (await store.versions_of(c, tariff_id))[-1].tariff.zone
        a, b = _range(start, end, zone)
        rows = await c.fetch(
            "SELECT device_id, sum(kwh) AS kwh, sum(cost) AS cost, sum(carbon_kg) AS carbon_kg,"
            " bool_or(estimated) AS estimated FROM cost_calculations"
            " WHERE tariff_id = $1 AND time >= $2 AND time < $3 GROUP BY device_id ORDER BY device_id",
            tariff_id,
            a,
            b,
        )
    return [
        {
            "device_id": r["device_id"],
            "kwh": r["kwh"],
            "cost": r["cost"],
            "carbon_kg": r["carbon_kg"] or 0.0,
            "estimated": bool(r["estimated"]),
        }
        for r in rows
    ]


async def history(
    conn: Conn,
    device_id: str | None,
    start: TimeLike,
    end: TimeLike,
    resolution: str = "hour",
    *,
    tariff_id: str | None = None,
) -> dict[str, Any]:
    """Cost over time from cost_hourly / cost_daily (one device, or all summed when device_id is None)."""
    if resolution not in ("hour", "day"):
        raise ValidationError(f"resolution must be hour or day, not '{resolution}'")
    table = "cost_hourly" if resolution == "hour" else "cost_daily"
    async with _acquire(conn) as c:
        tariff_id = tariff_id or await store.active_tariff_id(c)
        if tariff_id is None:
            return {"points": []}
        zone = (await store.versions_of(c, tariff_id))[-1].tariff.zone
        a, b = _range(start, end, zone)
        rows = await c.fetch(
            f"SELECT bucket, sum(kwh) AS kwh, sum(cost) AS cost, sum(carbon_kg) AS carbon_kg FROM {table}"
            " WHERE tariff_id = $1 AND bucket >= $2 AND bucket < $3"
            " AND ($4::text IS NULL OR device_id = $4) GROUP BY bucket ORDER BY bucket",
            tariff_id,
            a,
            b,
            device_id,
        )
    return {
        "points": [
            {
                "time": r["bucket"].astimezone(zone).isoformat(),
                "kwh": r["kwh"],
                "cost": r["cost"],
                "carbon_kg": r["carbon_kg"] or 0.0,
            }
            for r in rows
        ]
    }
