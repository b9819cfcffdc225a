"""What pyenphase read from one Envoy, as AetherLens readings (device, metric type, value, unit, time).

Sign and counter conventions follow the core's vocabulary, where ``power`` is a draw (negative =
export) and ``energy`` / ``energy_exported`` are import / export counters:

- ``<base>_production`` (the solar array): power = -production W, ``energy_exported`` = lifetime
  production — solar gives energy away, as the simulator's solar device does, so costs never count it
  as bought;
- ``<base>_consumption`` (the house, total): power W, ``energy`` = lifetime consumption;
- ``<base>_net`` (the grid connection): power = net consumption W as the Envoy signs it (+ import,
  - export), ``energy`` = lifetime energy taken from the grid, ``energy_exported`` = lifetime energy
  sent to it, from the net-consumption CT's own counters (``actEnergyDlvd`` / ``actEnergyRcvd``). The
  net segment's ``whLifetime`` is not used: it is import minus export, which falls while exporting, so
  it is no counter;
- ``<base>_<inverter serial>``: power = -the inverter's last reported W, at its own report time.

Lifetime counters come in Wh and are passed with unit ``Wh``: the core stores them as kWh.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from pyenphase.models.envoy import EnvoyData
from pyenphase.models.meters import CtType


class Reading(NamedTuple):
    device_id: str
    metric_type: str
    value: float
    unit: str
    time: datetime


def production_id(base: str) -> str:
    return f"{base}_production"


def consumption_id(base: str) -> str:
    return f"{base}_consumption"


def net_id(base: str) -> str:
    return f"{base}_net"


def inverter_id(base: str, serial: str) -> str:
    return f"{base}_{serial}"


def readings(base: str, data: EnvoyData, now: datetime) -> list[Reading]:
    """All readings of one poll. Site values carry the poll time: pyenphase's site models do not keep
    the Envoy's reading time; each inverter carries its own ``last_report_date``."""
    out: list[Reading] = []
    if (production := data.system_production) is not None:
        device = production_id(base)
        out.append(Reading(device, "power", _negate(production.watts_now), "W", now))
        out.append(Reading(device, "energy_exported", production.watt_hours_lifetime, "Wh", now))
    if (consumption := data.system_consumption) is not None:
        device = consumption_id(base)
        out.append(Reading(device, "power", consumption.watts_now, "W", now))
        out.append(Reading(device, "energy", consumption.watt_hours_lifetime, "Wh", now))
    if (net := data.system_net_consumption) is not None:
        out.append(Reading(net_id(base), "power", net.watts_now, "W", now))
    if (grid := data.ctmeters.get(CtType.NET_CONSUMPTION)) is not None:
        device = net_id(base)
        out.append(Reading(device, "energy", grid.energy_delivered, "Wh", now))
        out.append(Reading(device, "energy_exported", grid.energy_received, "Wh", now))
    for serial, inverter in sorted((data.inverters or {}).items()):
        if inverter.last_report_date <= 0:  # listed but never reported (just commissioned)
            continue
        reported = datetime.fromtimestamp(inverter.last_report_date, UTC)
        out.append(
            Reading(inverter_id(base, serial), "power", _negate(inverter.last_report_watts), "W", reported)
        )
    return out


def _negate(watts: float) -> float:
    # 0 stays 0 (not -0.0, which JSON and the database would carry as a distinct-looking value)
    return -watts if watts else 0
