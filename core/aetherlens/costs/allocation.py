"""Allocate a site bill to devices, slot by slot, so per-device costs add up to the bill.

The grid is the cost rows' slot length (60 minutes, or 30/15 in zones whose local hours start at half or
quarter hours). Per slot: the site's energy cost, the fixed charges accrued in it (``accrue_fixed``:
evenly over local time, the one rule for every "so far" figure) and its share of the cycle's demand and
minimum charges (spread by net imported energy) go to devices pro-rata by their imported kWh; what the
meter saw beyond the devices' sum, and fixed charges accrued in a slot without energy, go to
``unmetered``. Export credit goes to the devices that exported, pro-rata (to ``unmetered`` when the meter
exported more than the devices report).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from aetherlens.costs.engine import ZERO, CycleBill, accrue_fixed
from aetherlens.timebuckets import floor_time

UNMETERED = "unmetered"


@dataclass(frozen=True)
class CostRow:
    slot: dt.datetime
    device_id: str
    kwh: Decimal
    cost: Decimal
    period: str | None
    carbon_kg: Decimal
    estimated: bool


@dataclass
class SlotCharge:
    """What the site owes for one grid slot, by kind."""

    net: Decimal = ZERO
    energy: Decimal = ZERO
    credit: Decimal = ZERO
    carbon: Decimal = ZERO
    fixed: Decimal = ZERO
    shared: Decimal = ZERO  # demand + minimum, spread by net import
    period: str | None = None

    @property
    def charge(self) -> Decimal:
        """Everything but the export credit (which goes to the exporting devices)."""
        return self.energy + self.fixed + self.shared

    @property
    def total(self) -> Decimal:
        return self.charge - self.credit


def slot_charges(cycle: CycleBill, grid_minutes: int) -> dict[dt.datetime, SlotCharge]:
    """The site's charge per grid slot; the slots' totals add up to ``cycle.total``."""
    slots: dict[dt.datetime, SlotCharge] = defaultdict(SlotCharge)
    for s in cycle.slots:
        row = slots[floor_time(s.start, grid_minutes)]
        row.net += s.net_import_kwh
        row.energy += s.energy_cost
        row.credit += s.export_credit
        row.carbon += s.carbon_kg
        if row.period is None:
            row.period = s.period
    for start, amount in accrue_fixed(cycle, grid_minutes).items():
        slots[start].fixed += amount
    shared = cycle.demand + cycle.minimum
    total_net = sum((h.net for h in slots.values()), ZERO)
    if shared and total_net:
        for h in slots.values():
            h.shared = shared * h.net / total_net
    elif shared:
        # Charges without energy (a vacation month): booked to the cycle's first slot.
        slots[floor_time(cycle.start, grid_minutes)].shared += shared
    return dict(sorted(slots.items()))


def allocate(
    cycle: CycleBill,
    device_import: Mapping[str, Mapping[dt.datetime, Decimal]],
    device_export: Mapping[str, Mapping[dt.datetime, Decimal]],
    grid_minutes: int,
    *,
    site_import: Mapping[dt.datetime, Decimal] | None = None,
    site_export: Mapping[dt.datetime, Decimal] | None = None,
    estimated: bool = False,
) -> list[CostRow]:
    """Rows whose costs sum to ``cycle.total``; the device and site maps are keyed by grid slot.

    ``site_import``/``site_export``: the meter's kWh per slot when the site is a meter; None = the site
    is the sum of the devices.
    """
    rows: list[CostRow] = []
    for slot, h in slot_charges(cycle, grid_minutes).items():
        imports = {d: v for d, m in device_import.items() if (v := m.get(slot, ZERO))}
        exports = {d: v for d, m in device_export.items() if (v := m.get(slot, ZERO))}
        dev_in = sum(imports.values(), ZERO)
        dev_out = sum(exports.values(), ZERO)
        meter_in = site_import.get(slot, ZERO) if site_import is not None else dev_in
        meter_out = site_export.get(slot, ZERO) if site_export is not None else dev_out
        base_in = max(meter_in, dev_in)
        base_out = max(meter_out, dev_out)
        charge = h.charge
        shares: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])  # kwh, cost, carbon
        for device, kwh in imports.items():
            shares[device][0] += kwh
            shares[device][1] += charge * kwh / base_in
            shares[device][2] += h.carbon * kwh / base_in
        if base_in > dev_in or (charge and not base_in):
            rest = (base_in - dev_in) / base_in if base_in else Decimal(1)
            shares[UNMETERED][0] += base_in - dev_in
            shares[UNMETERED][1] += charge * rest
            shares[UNMETERED][2] += h.carbon * rest
        for device, kwh in exports.items():
            shares[device][1] -= h.credit * kwh / base_out
        if h.credit and base_out > dev_out:
            shares[UNMETERED][1] -= h.credit * (base_out - dev_out) / base_out
        elif h.credit and not base_out:
            shares[UNMETERED][1] -= h.credit
        for device, (kwh, cost, carbon) in sorted(shares.items()):
            rows.append(CostRow(slot, device, kwh, cost, h.period, carbon, estimated))
    return rows
