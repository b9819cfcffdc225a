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
from aetherlens.costs.allocation import allocate, slot_charges
from aetherlens.costs.energy import load_carbon_series, load_energy
from aetherlens.costs.engine import (
    ZERO,
    CycleBill,
    TariffVersion,
    VersionSet,
    compute_bills,
    cycle_bounds,
    energy_slot_minutes,
    slot_minutes_for,
)
from aetherlens.costs.stored import PricedEnergy, priced_energy
from aetherlens.costs.tariff import Tariff, parse_tariff
from aetherlens.costs.urdb import pick_rate, urdb_to_tariff
from aetherlens.db.connection import connection
from aetherlens.db.queries import costs as cost_rows
from aetherlens.errors import NotFoundError, ValidationError
from aetherlens.timebuckets import floor_time, local_day_start, local_days

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
    async with connection(conn) as c:
        return await store.versions_of(c, tariff)


async def price(
    conn: Conn,
    versions: list[TariffVersion],
    start: dt.datetime,
    end: dt.datetime,
    *,
    device_id: str | None = None,
    meter_device: str | None = None,
    energy: PricedEnergy | None = None,
) -> list[CycleBill]:
    """Bills of the site (or of one device, standalone) for ``[start, end)``.

    The site is priced from the cost job's stored slots where they are exact and from raw readings
    elsewhere (``stored.priced_energy``, or ``energy`` read for these versions already); a single
    device's bill reads its raw readings.
    """
    async with connection(conn) as c:
        carbon = await load_carbon_series(c, versions, start, end)
        if device_id is None:
            energy = energy or await priced_energy(c, versions, start, end, meter_device)
            return compute_bills(
                versions,
                energy.slots,
                energy.slot_minutes,
                start,
                end,
                carbon_series=carbon,
                demand_windows=energy.demand_windows,
                gaps=energy.gaps,
            )
        minutes = slot_minutes_for(v.tariff for v in versions)
        raw = await load_energy(c, start, end, minutes, devices=[device_id])
    gaps = [g for g in raw.gaps if g["device_id"] == device_id]
    return compute_bills(
        versions, raw.slots({device_id}), minutes, start, end, carbon_series=carbon, gaps=gaps
    )


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
    bills = await price(conn, versions, a, b, device_id=device_id, meter_device=meter_device)
    return [x.to_json() for x in bills]


# --- tariffs ---------------------------------------------------------------------------------------
async def list_tariffs(conn: Conn) -> list[dict[str, Any]]:
    async with connection(conn) as c:
        rows = await store.list_rows(c)
    return [store.row_to_json(r) for r in rows]


async def get_tariff(conn: Conn, tariff_id: str) -> dict[str, Any]:
    async with connection(conn) as c:
        return store.row_to_json(await store.fetch_row(c, tariff_id))


async def create_tariff(
    conn: Conn, definition: dict[str, Any] | Tariff, *, active: bool | None = None
) -> str:
    tariff = definition if isinstance(definition, Tariff) else parse_tariff(definition)
    async with connection(conn) as c:
        return await store.insert_tariff(c, tariff, source="yaml", active=active)


async def update_tariff(conn: Conn, tariff_id: str, definition: dict[str, Any]) -> dict[str, Any]:
    tariff = parse_tariff(definition)
    async with connection(conn) as c:
        row = await store.fetch_row(c, tariff_id)
        await store.update_tariff(c, tariff_id, tariff, tariff.effective_from_utc or row["effective_from"])
        return store.row_to_json(await store.fetch_row(c, tariff_id))


async def delete_tariff(conn: Conn, tariff_id: str) -> None:
    async with connection(conn) as c, c.transaction():
        if not await store.delete_tariff(c, tariff_id):
            raise NotFoundError(f"no tariff with id '{tariff_id}'", details={"tariff_id": tariff_id})
        # Its costs and their rollups go with it (the cost tables' owner does the deleting).
        await cost_rows.delete_tariff_costs(c, tariff_id)


async def activate_tariff(conn: Conn, tariff_id: str) -> None:
    async with connection(conn) as c, c.transaction():
        await store.fetch_row(c, tariff_id)
        await store.activate(c, tariff_id)


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
    async with connection(conn) as c:
        return await store.insert_tariff(c, tariff, source="urdb")


# --- dashboards -------------------------------------------------------------------------------------
async def _active(conn: Conn) -> tuple[str, list[TariffVersion]] | None:
    async with connection(conn) as c:
        tariff_id = await store.active_tariff_id(c)
        if tariff_id is None:
            return None
        return tariff_id, await store.versions_of(c, tariff_id)


def _cycle_fields(versions: list[TariffVersion], current: Tariff, now: dt.datetime) -> dict[str, str]:
    """The local day and billing cycles around ``now``, as ISO instants in the tariff's zone.

    The current cycle is the version in force now's, the previous one that of the version in force just
    before it (a new version can move the cycle day); bounds are local midnights of the zone, so a cycle
    across a DST change is an hour shorter or longer.
    """
    in_force = VersionSet(versions)
    cycle_start, cycle_end = cycle_bounds(current, now)
    before = cycle_start - dt.timedelta(microseconds=1)
    previous_start, _ = cycle_bounds(versions[in_force.at(before)].tariff, before)
    zone = current.zone
    return {
        "day_start": local_day_start(now, zone).astimezone(zone).isoformat(),
        "cycle_start": cycle_start.astimezone(zone).isoformat(),
        "cycle_end": cycle_end.astimezone(zone).isoformat(),
        "previous_cycle_start": previous_start.astimezone(zone).isoformat(),
    }


async def summary(conn: Conn, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Today, month (billing cycle) to date, projected cycle total, the price and period in force now,
    and the bounds those figures run over (for a client's ``last_reset``).

    One rule for fixed charges in every "so far" figure: they accrue evenly over local time
    (``engine.accrue_fixed``), so ``today`` is the same number as today's point of the history and
    never exceeds ``month_to_date``; ``projected_month`` counts them whole (accrued to the cycle end).
    """
    now = now or dt.datetime.now(dt.UTC)
    empty: dict[str, Any] = {
        "currency": settings.site.currency,
        "today": None,
        "month_to_date": None,
        "projected_month": None,
        "current_price": None,
        "current_period": None,
        "carbon_today_kg": None,
        "tariff_id": None,
        "day_start": None,
        "cycle_start": None,
        "cycle_end": None,
        "previous_cycle_start": None,
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
    bounds = {"tariff_id": tariff_id, **_cycle_fields(versions, current, now)}
    if now <= cycle_start:
        return {**empty, "currency": current.currency, **bounds}
    bills = await price(conn, versions, cycle_start, now, meter_device=settings.site.meter_device)
    mtd = bills[-1]
    async with connection(conn) as c:
        grid = energy_slot_minutes(await store.all_tariffs(c))
    zone = current.zone
    midnight = local_day_start(now, zone)
    today_slots = [h for t, h in slot_charges(mtd, grid).items() if t >= midnight]
    period = current.period_at(now.astimezone(zone))
    tiers = current.periods[period].tier_list
    return {
        "currency": current.currency,
        "today": float(sum((h.total for h in today_slots), ZERO)),
        "month_to_date": float(mtd.total),
        "projected_month": float(projection(mtd, current, cycle_start, cycle_end, now)),
        "current_price": float(_marginal_price(mtd.kwh, tiers)),
        "current_period": period,
        "carbon_today_kg": float(sum((h.carbon for h in today_slots), ZERO)),
        **bounds,
    }


async def changes(conn: Conn, since: int) -> dict[str, Any]:
    """What changed in the hourly cost history (``history`` at resolution hour) after revision ``since``.

    ``{"revision": <high-water mark>, "changes": [{"device_id": <id> | None (the site), "from": <hour>}]}``:
    per series, the earliest UTC hour whose numbers changed (a re-pricing to identical numbers is no
    change); ``since=0`` lists every series from its first hour. The site is the sum of the devices, so
    it changed from the earliest of theirs. A client stores ``revision`` and asks with it next time.
    """
    if since < 0:
        raise ValidationError(f"since must be a revision (an integer >= 0), not {since}")
    async with connection(conn) as c:
        tariff_id = await store.active_tariff_id(c)
        if tariff_id is None:
            return {"revision": 0, "changes": []}
        revision, first = await cost_rows.history_changes(c, tariff_id, since)
    out: list[dict[str, Any]] = [{"device_id": d, "from": t.astimezone(dt.UTC).isoformat()} for d, t in first]
    if first:
        site = min(t for _, t in first)
        out.insert(0, {"device_id": None, "from": site.astimezone(dt.UTC).isoformat()})
    return {"revision": revision, "changes": out}


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
    async with connection(conn) as c:
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
    out: list[dict[str, Any]] = []
    read: dict[tuple[int, frozenset[int]], PricedEnergy] = {}  # tariffs that need the same slots share
    for tariff_id, name in names:
        versions = all_versions[tariff_id]
        needs = (
            slot_minutes_for(v.tariff for v in versions),
            frozenset(v.tariff.demand.window_minutes for v in versions),
        )
        if needs not in read:
            async with connection(conn) as c:
                read[needs] = await priced_energy(c, versions, a, b, meter_device)
        bills = await price(conn, versions, a, b, meter_device=meter_device, energy=read[needs])
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
    conn: Conn,
    start: TimeLike,
    end: TimeLike,
    *,
    tariff_id: str | None = None,
    meter_device: str | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Each device's share of the site bill for exactly ``[start, end)``: the items add up to that bill.

    The range (clipped to now) is priced as a bill (cycles clipped to it) and allocated slot by slot
    (``allocation.allocate``); ``estimated`` marks devices whose range holds a cycle still open.
    """
    async with connection(conn) as c:
        tariff_id = tariff_id or await store.active_tariff_id(c)
        # The range is checked before anything else, tariff or not.
        versions = await store.versions_of(c, tariff_id) if tariff_id else []
        a, b = _range(start, end, versions[-1].tariff.zone if versions else dt.UTC)
        if not versions:
            return []
        moment = now or dt.datetime.now(dt.UTC)
        b = min(b, floor_time(moment, 1))  # costs so far: a range into the future stops at now
        if b <= a:
            return []
        grid = energy_slot_minutes(await store.all_tariffs(c))
        carbon = await load_carbon_series(c, versions, a, b)
        energy = await priced_energy(c, versions, a, b, meter_device, per_device=True)
    bills = compute_bills(
        versions,
        energy.slots,
        energy.slot_minutes,
        a,
        b,
        carbon_series=carbon,
        demand_windows=energy.demand_windows,
    )
    imports = {d: _on_grid(m, grid, a) for d, m in energy.imports.items()}
    exports = {d: _on_grid(m, grid, a) for d, m in energy.exports.items()}
    site_imp = imports.pop(meter_device, {}) if meter_device else None
    site_exp = exports.pop(meter_device, {}) if meter_device else None
    totals: dict[str, list[Any]] = {}
    for cycle in bills:
        estimated = cycle.cycle_end is None or cycle.cycle_end > moment
        for row in allocate(cycle, imports, exports, grid, site_import=site_imp, site_export=site_exp):
            item = totals.setdefault(row.device_id, [ZERO, ZERO, ZERO, False])
            item[0] += row.kwh
            item[1] += row.cost
            item[2] += row.carbon_kg
            item[3] = item[3] or estimated
    return [
        {
            "device_id": device,
            "kwh": float(kwh),
            "cost": float(cost),
            "carbon_kg": float(carbon_kg),
            "estimated": estimated,
        }
        for device, (kwh, cost, carbon_kg, estimated) in sorted(totals.items())
    ]


def _on_grid(series: dict[dt.datetime, Decimal], grid: int, start: dt.datetime) -> dict[dt.datetime, Decimal]:
    """Slot keys floored to the allocation grid (raw edge slots can be finer)."""
    out: dict[dt.datetime, Decimal] = {}
    for t, v in series.items():
        key = floor_time(max(t, start), grid)
        out[key] = out.get(key, ZERO) + v
    return out


async def history(
    conn: Conn,
    device_id: str | None,
    start: TimeLike,
    end: TimeLike,
    resolution: str = "hour",
    *,
    tariff_id: str | None = None,
) -> dict[str, Any]:
    """Cost over time from the cost job's rows: UTC hours (``hour``) or the tariff's local days (``day``).

    One device, or every device summed when ``device_id`` is None; the points of a billing cycle add up
    to its bill (so far, for the open cycle).
    """
    if resolution not in ("hour", "day"):
        raise ValidationError(f"resolution must be hour or day, not '{resolution}'")
    async with connection(conn) as c:
        tariff_id = tariff_id or await store.active_tariff_id(c)
        zone = (await store.versions_of(c, tariff_id))[-1].tariff.zone if tariff_id else dt.UTC
        a, b = _range(start, end, zone)
        if tariff_id is None:
            return {"points": []}
        rows = await cost_rows.history(c, resolution, tariff_id, a, b, device_id)
    return {
        "points": [
            {
                "time": r["bucket"].astimezone(zone).isoformat(),
                "kwh": float(r["kwh"]),
                "cost": float(r["cost"]),
                "carbon_kg": float(r["carbon_kg"] or 0),
            }
            for r in rows
        ]
    }
