"""From HA entities to AetherLens devices and metrics: units, device ids, names, rooms, counter resets.

- Units: W/kW/MW become ``power`` in W; Wh/kWh/MWh/GWh become ``energy`` in kWh (CONTRACT
  vocabulary). Other units are not read.
- States ``unavailable``, ``unknown``, empty or non-numeric are skipped: a missing reading is never a 0.
- Device: ``devices: {entity_id: device_id}`` first; else the entity's HA device as ``ha_<HA device
  id>`` (stable when names change) with the device's name and area (the entity's own area wins); an
  entity without a device becomes ``ha_<object id>``. Two entities of one device with the same metric
  type would mix two series in one, so the second (by entity id) gets ``ha_<object id>`` of its own.
- ``total_increasing`` energy: the core treats any drop of an energy counter as a counter reset and
  counts the new reading as the energy since the reset (costs/energy.py). HA itself calls a drop a reset
  only when the new value is below 90 % of the old one; a smaller drop is meter jitter, and passing it on
  would make the core count the whole counter again. Such readings are skipped until the counter is back
  above its last emitted value; a real reset is passed on unchanged, so the core sees it as one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aetherlens.plugins.builtin.homeassistant.selection import Registries

# unit -> (metric type, factor to the canonical unit)
UNITS: Final[Mapping[str, tuple[str, float]]] = {
    "W": ("power", 1.0),
    "kW": ("power", 1000.0),
    "MW": ("power", 1_000_000.0),
    "Wh": ("energy", 0.001),
    "kWh": ("energy", 1.0),
    "MWh": ("energy", 1000.0),
    "GWh": ("energy", 1_000_000.0),
}
CANONICAL: Final = {"power": "W", "energy": "kWh"}
RESET_RATIO: Final = 0.9  # HA's rule (sensor recorder): below 90 % of the previous value = a reset
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def metric_for_unit(unit: object) -> tuple[str, float] | None:
    return UNITS.get(unit) if isinstance(unit, str) else None


def numeric(state: object) -> float | None:
    """The state as a finite number, or None (unavailable, unknown, text, NaN)."""
    if not isinstance(state, str) or state in ("", "unavailable", "unknown"):
        return None
    try:
        value = float(state)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def valid_device_id(device_id: str) -> bool:
    return bool(_DEVICE_ID.fullmatch(device_id))


@dataclass(frozen=True)
class Tracked:
    """One entity the plugin reads, and where its readings go."""

    entity_id: str
    device_id: str
    device_name: str
    room: str | None
    metric_type: str
    factor: float
    counter: bool  # state_class total_increasing: the jitter guard applies


def object_id(entity_id: str) -> str:
    return entity_id.split(".", 1)[-1]


def track(
    entity_id: str, attributes: Mapping[str, Any], registries: Registries, overrides: Mapping[str, str]
) -> Tracked | None:
    """How to read this entity, or None when its unit is not power or energy."""
    unit = metric_for_unit(attributes.get("unit_of_measurement"))
    if unit is None:
        return None
    metric_type, factor = unit
    entry = registries.entities.get(entity_id)
    device = registries.devices.get(entry.device_id) if entry and entry.device_id else None
    area_id = (entry.area_id if entry else None) or (device.area_id if device else None)
    room = registries.areas.get(area_id) if area_id else None
    friendly = str(attributes.get("friendly_name") or (entry.name if entry else None) or entity_id)
    if entity_id in overrides:
        device_id, name = overrides[entity_id], device.name if device else friendly
    elif device is not None:
        device_id, name = f"ha_{device.id}", device.name
    else:
        device_id, name = f"ha_{object_id(entity_id)}", friendly
    return Tracked(
        entity_id,
        device_id,
        name,
        room,
        metric_type,
        factor,
        metric_type == "energy" and attributes.get("state_class") == "total_increasing",
    )


def separate_series(
    tracked: Mapping[str, Tracked], overrides: Mapping[str, str]
) -> tuple[dict[str, Tracked], list[str]]:
    """Give every (device, metric type) one entity: a second entity of the same type on the same device
    moves to ``ha_<object id>`` (unless an override put it there; then it is dropped). Returns the result
    and one warning per move or drop."""
    taken: dict[tuple[str, str], str] = {}
    result: dict[str, Tracked] = {}
    warnings: list[str] = []
    # Overrides first: an id the user chose is never taken over by a derived one.
    for entity_id in sorted(tracked, key=lambda e: (e not in overrides, e)):
        item = tracked[entity_id]
        key = (item.device_id, item.metric_type)
        if key in taken and entity_id not in overrides:
            moved = Tracked(
                item.entity_id,
                f"ha_{object_id(entity_id)}",
                f"{item.device_name} ({entity_id})",
                item.room,
                item.metric_type,
                item.factor,
                item.counter,
            )
            warnings.append(
                f"{entity_id} and {taken[key]} are both {item.metric_type} of device {item.device_id}: "
                f"{entity_id} feeds device {moved.device_id} instead (set 'devices' to choose)"
            )
            item, key = moved, (moved.device_id, moved.metric_type)
        if key in taken:
            warnings.append(
                f"{entity_id} is not read: {taken[key]} already feeds {item.metric_type} "
                f"of device {item.device_id}"
            )
            continue
        taken[key] = entity_id
        result[entity_id] = item
    return result, warnings


def canonical(item: Tracked, state: object) -> float | None:
    value = numeric(state)
    return None if value is None else value * item.factor


def is_jitter(item: Tracked, value: float, last: float | None) -> bool:
    """A small drop of a total_increasing counter (not a reset by HA's rule): skip it."""
    return item.counter and last is not None and RESET_RATIO * last <= value < last
