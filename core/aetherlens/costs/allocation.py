"""Allocate a site bill to devices, hour by hour, so per-device costs add up to the bill.

Per UTC hour: the site's energy cost plus its share of the cycle's fixed, demand and minimum charges
(spread over the cycle's hours by net imported energy) goes to devices pro-rata by their imported kWh;
what the meter saw beyond the devices' sum goes to ``unmetered``. Export credit goes to the devices that
exported, pro-rata (to ``unmetered`` when the meter exported more than the devices report).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from aetherlens.costs.engine import ZERO, CycleBill

UNMETERED = "unmetered"


@dataclass(frozen=True)
class CostRow:
    hour: dt.datetime
    device_id: str
    kwh: Decimal
    cost: Decimal
    period: str | None
    carbon_kg: Decimal
    estimated: bool


def allocate(
    cycle: CycleBill,
    device_import: Mapping[str, Mapping[dt.datetime, Decimal]],
    device_export: Mapping[str, Mapping[dt.datetime, Decimal]],
    *,
    site_import: Mapping[dt.datetime, Decimal] | None = None,
    site_export: Mapping[dt.datetime, Decimal] | None = None,
    estimated: bool = False,
) -> list[CostRow]:
    """Rows whose costs sum (exactly, in Decimal) to ``cycle.total``.

    ``site_import``/``site_export``: the meter's hourly kWh when the site is a meter; None = the site is
    the sum of the devices.
    """
    hours: dict[dt.datetime, dict[str, Decimal]] = defaultdict(
        lambda: {"net": ZERO, "energy": ZERO, "credit": ZERO, "carbon": ZERO}
    )
    periods: dict[dt.datetime, str] = {}
    for s in cycle.slots:
        hour = s.start.replace(minute=0, second=0, microsecond=0)
        row = hours[hour]
        row["net"] += s.net_import_kwh
        row["energy"] += s.energy_cost
        row["credit"] += s.export_credit
        row["carbon"] += s.carbon_kg
        periods.setdefault(hour, s.period)
    extra = cycle.fixed + cycle.demand + cycle.minimum
    total_net = sum((h["net"] for h in hours.values()), ZERO)
    rows: list[CostRow] = []
    if extra and not total_net:
        # Charges without energy (a vacation month): booked to the site remainder at the cycle start.
        rows.append(
            CostRow(
                cycle.start.replace(minute=0, second=0, microsecond=0),
                UNMETERED,
                ZERO,
                extra,
                None,
                ZERO,
                estimated,
            )
        )
    for hour in sorted(hours):
        h = hours[hour]
        charge = h["energy"] + (extra * h["net"] / total_net if total_net else ZERO)
        imports = {d: m.get(hour, ZERO) for d, m in device_import.items() if m.get(hour, ZERO)}
        exports = {d: m.get(hour, ZERO) for d, m in device_export.items() if m.get(hour, ZERO)}
        dev_in = sum(imports.values(), ZERO)
        dev_out = sum(exports.values(), ZERO)
        meter_in = site_import.get(hour, ZERO) if site_import is not None else dev_in
        meter_out = site_export.get(hour, ZERO) if site_export is not None else dev_out
        base_in = max(meter_in, dev_in)
        base_out = max(meter_out, dev_out)
        shares: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])  # kwh, cost, carbon
        for device, kwh in imports.items():
            shares[device][0] += kwh
            shares[device][1] += charge * kwh / base_in
            shares[device][2] += h["carbon"] * kwh / base_in
        if base_in > dev_in or (charge and not base_in):
            rest = (base_in - dev_in) / base_in if base_in else Decimal(1)
            shares[UNMETERED][0] += base_in - dev_in
            shares[UNMETERED][1] += charge * rest
            shares[UNMETERED][2] += h["carbon"] * rest
        for device, kwh in exports.items():
            shares[device][1] -= h["credit"] * kwh / base_out
        if h["credit"] and base_out > dev_out:
            shares[UNMETERED][1] -= h["credit"] * (base_out - dev_out) / base_out
        elif h["credit"] and not base_out:
            shares[UNMETERED][1] -= h["credit"]
        for device, (kwh, cost, carbon) in sorted(shares.items()):
            rows.append(CostRow(hour, device, kwh, cost, periods.get(hour), carbon, estimated))
    return rows
