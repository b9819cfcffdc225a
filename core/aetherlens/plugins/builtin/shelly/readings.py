"""What a Shelly answer means: its channels and its readings in canonical units (pure functions).

The unit traps, all checked against recorded answers in the tests:
- Gen1 relay meters (Plug S, 1PM, 2.5): ``meters[].total`` is in watt-minutes (÷ 60 000 → kWh).
- Gen1 energy meters (EM, 3EM): ``emeters[].total`` / ``total_returned`` are in Wh (÷ 1000).
- Gen2+ ``switch:N.aenergy.total`` / ``ret_aenergy.total``, ``emdata:0`` and ``em1data:N`` totals are Wh.
- Power factor is signed on meters that see export (Gen1 EM ``pf`` -0.66 with power -620 W); the sign
  is the direction of flow, which the power's sign already carries, so the ratio is stored as |pf|.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

WH_PER_KWH: Final = 1000.0
WATT_MINUTES_PER_KWH: Final = 60_000.0
PHASES: Final = ("a", "b", "c")


class Malformed(ValueError):
    """An answer that does not have the shape the device's API documents."""


@dataclass(frozen=True, slots=True)
class Reading:
    channel: str | None  # None: the device as a whole (totals; the only channel of a one-channel device)
    metric_type: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Channel:
    key: str  # the device's own index: "0", "1" … or the phase "a", "b", "c"
    kind: str  # "relay" (switchable, maybe metered) or "meter" (metering only)
    name: str | None = None

    @property
    def switchable(self) -> bool:
        return self.kind == "relay"


@dataclass(frozen=True, slots=True)
class Layout:
    channels: tuple[Channel, ...]
    has_total: bool  # the device reports whole-device totals (3EM total_power, Pro 3EM total_act …)

    def device_id(self, base: str, channel: str | None) -> str:
        """One AetherLens device per channel (``<base>_<key>``); a one-channel device is the base."""
        if channel is None or (len(self.channels) == 1 and not self.has_total):
            return base
        return f"{base}_{channel}"

    def channel(self, key: str) -> Channel | None:
        return next((c for c in self.channels if c.key == key), None)


def _number(where: str, value: Any) -> float | None:
    """A reported number; ``None`` when the device reports nothing there (absent or null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Malformed(f"{where} is {value!r}, not a number")
    return float(value)


def _object(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Malformed(f"{where} is {type(value).__name__}, not an object")
    return value


def _list(where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{where} is {type(value).__name__}, not a list")
    return value


class _Out:
    """Collects readings, skipping values the device does not report."""

    def __init__(self) -> None:
        self.items: list[Reading] = []

    def add(self, channel: str | None, metric: str, where: str, raw: Any, scale: float = 1.0) -> None:
        value = _number(where, raw)
        if value is None:
            return
        if metric == "power_factor":
            value = abs(value)
        self.items.append(Reading(channel, metric, value / scale, "kWh" if scale != 1.0 else UNITS[metric]))

    def state(self, channel: str, where: str, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, bool):
            raise Malformed(f"{where} is {raw!r}, not true or false")
        self.items.append(Reading(channel, "relay_state", 1.0 if raw else 0.0, "state"))


UNITS: Final = {
    "power": "W",
    "energy": "kWh",
    "energy_exported": "kWh",
    "voltage": "V",
    "current": "A",
    "power_factor": "ratio",
    "frequency": "Hz",
    "temperature": "°C",
}


# -- Gen1 (HTTP /status) ---------------------------------------------------------------------------------
def gen1_layout(settings: Mapping[str, Any], status: Mapping[str, Any]) -> Layout:
    status = _object("status", status)
    emeters = _list("status.emeters", status.get("emeters"))
    if emeters:
        # EM / 3EM: the relay there drives an external contactor; it is not offered as a switch.
        names = _list("settings.emeters", settings.get("emeters"))
        return Layout(
            tuple(Channel(str(i), "meter", _name(names, i)) for i in range(len(emeters))),
            has_total="total_power" in status,
        )
    relays = _list("status.relays", status.get("relays"))
    meters = _list("status.meters", status.get("meters"))
    names = _list("settings.relays", settings.get("relays"))
    channels = [
        Channel(str(i), "relay" if i < len(relays) else "meter", _name(names, i))
        for i in range(max(len(relays), len(meters)))
    ]
    return Layout(tuple(channels), has_total=False)


def _name(items: list[Any], index: int) -> str | None:
    if index < len(items) and isinstance(items[index], Mapping):
        name = items[index].get("name")
        return str(name) if name else None
    return None


def gen1_readings(status: Mapping[str, Any]) -> list[Reading]:
    status = _object("status", status)
    out = _Out()
    for i, raw in enumerate(_list("status.emeters", status.get("emeters"))):
        meter, at, ch = _object(f"emeters[{i}]", raw), f"emeters[{i}]", str(i)
        if meter.get("is_valid") is False:  # the device itself says this reading is not to be trusted
            continue
        out.add(ch, "power", f"{at}.power", meter.get("power"))
        out.add(ch, "voltage", f"{at}.voltage", meter.get("voltage"))
        out.add(ch, "current", f"{at}.current", meter.get("current"))
        out.add(ch, "power_factor", f"{at}.pf", meter.get("pf"))
        out.add(ch, "energy", f"{at}.total", meter.get("total"), WH_PER_KWH)
        out.add(ch, "energy_exported", f"{at}.total_returned", meter.get("total_returned"), WH_PER_KWH)
    if "total_power" in status:
        out.add(None, "power", "total_power", status.get("total_power"))
    meters = _list("status.meters", status.get("meters"))
    relays = _list("status.relays", status.get("relays"))
    for i, raw in enumerate(meters):
        meter, at, ch = _object(f"meters[{i}]", raw), f"meters[{i}]", str(i)
        if meter.get("is_valid") is False:
            continue
        out.add(ch, "power", f"{at}.power", meter.get("power"))
        out.add(ch, "energy", f"{at}.total", meter.get("total"), WATT_MINUTES_PER_KWH)
    if not status.get("emeters"):
        for i, raw in enumerate(relays):
            out.state(str(i), f"relays[{i}].ison", _object(f"relays[{i}]", raw).get("ison"))
        # Device-wide values of relay devices: the same sensor for every channel (as Gen2+ reports it).
        temperature = _gen1_temperature(status)
        for i in range(max(len(relays), len(meters))):
            out.add(str(i), "temperature", "tmp.tC", temperature)
            out.add(str(i), "voltage", "voltage", status.get("voltage"))
    return out.items


def _gen1_temperature(status: Mapping[str, Any]) -> Any:
    tmp = status.get("tmp")
    if isinstance(tmp, Mapping):
        return tmp.get("tC") if tmp.get("is_valid", True) else None
    return status.get("temperature")


# -- Gen2+ (JSON-RPC Shelly.GetStatus / NotifyStatus) -------------------------------------------------------
def _components(status: Mapping[str, Any], kind: str) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for key, value in status.items():
        name, _, index = key.partition(":")
        if name == kind and index.isdigit():
            yield key, int(index), _object(key, value)


def gen2_layout(config: Mapping[str, Any], status: Mapping[str, Any]) -> Layout:
    status = _object("status", status)
    channels: list[Channel] = []
    has_total = False
    kinds = (("em1", "meter"),) if _is_meter(status) else (("switch", "relay"),)
    for kind, channel_kind in kinds:
        for key, index, _ in sorted(_components(status, kind), key=lambda c: c[1]):
            channels.append(Channel(str(index), channel_kind, _config_name(config, key)))
    if any(True for _ in _components(status, "em")):
        channels += [Channel(phase, "meter", f"phase {phase.upper()}") for phase in PHASES]
        has_total = True
    return Layout(tuple(channels), has_total)


def _is_meter(status: Mapping[str, Any]) -> bool:
    """An energy meter (Pro 3EM, Pro EM, EM Gen3): its ``switch:0``, if any, drives an external
    contactor and is not one of its metered channels (as with the Gen1 EM and 3EM)."""
    return any(key.partition(":")[0] in ("em", "em1") for key in status)


def _config_name(config: Mapping[str, Any], key: str) -> str | None:
    item = config.get(key)
    name = item.get("name") if isinstance(item, Mapping) else None
    return str(name) if name else None


#: component kinds whose status carries readings (a push of any other component is ignored)
GEN2_METERED: Final = frozenset({"switch", "em1", "em1data", "em", "emdata", "temperature"})


def gen2_readings(status: Mapping[str, Any], only: set[str] | None = None) -> list[Reading]:
    """Readings of ``status``; with ``only``, of those component keys alone (what a push changed)."""
    status = _object("status", status)
    out = _Out()

    def chosen(key: str) -> bool:
        return only is None or key in only

    for kind in () if _is_meter(status) else ("switch",):
        for key, index, comp in _components(status, kind):
            if not chosen(key):
                continue
            ch = str(index)
            out.add(ch, "power", f"{key}.apower", comp.get("apower"))
            out.add(ch, "voltage", f"{key}.voltage", comp.get("voltage"))
            out.add(ch, "current", f"{key}.current", comp.get("current"))
            out.add(ch, "power_factor", f"{key}.pf", comp.get("pf"))
            out.add(ch, "frequency", f"{key}.freq", comp.get("freq"))
            for field, metric in (("aenergy", "energy"), ("ret_aenergy", "energy_exported")):
                if comp.get(field) is not None:
                    total = _object(f"{key}.{field}", comp[field]).get("total")
                    out.add(ch, metric, f"{key}.{field}.total", total, WH_PER_KWH)
            if isinstance(comp.get("temperature"), Mapping):
                out.add(ch, "temperature", f"{key}.temperature.tC", comp["temperature"].get("tC"))
            out.state(ch, f"{key}.output", comp.get("output"))
    for key, index, comp in _components(status, "em1"):
        if chosen(key):
            ch = str(index)
            out.add(ch, "power", f"{key}.act_power", comp.get("act_power"))
            out.add(ch, "voltage", f"{key}.voltage", comp.get("voltage"))
            out.add(ch, "current", f"{key}.current", comp.get("current"))
            out.add(ch, "power_factor", f"{key}.pf", comp.get("pf"))
            out.add(ch, "frequency", f"{key}.freq", comp.get("freq"))
    for key, index, comp in _components(status, "em1data"):
        if chosen(key):
            ch = str(index)
            out.add(ch, "energy", f"{key}.total_act_energy", comp.get("total_act_energy"), WH_PER_KWH)
            out.add(
                ch,
                "energy_exported",
                f"{key}.total_act_ret_energy",
                comp.get("total_act_ret_energy"),
                WH_PER_KWH,
            )
    for key, _, comp in _components(status, "em"):
        if not chosen(key):
            continue
        for p in PHASES:
            out.add(p, "power", f"{key}.{p}_act_power", comp.get(f"{p}_act_power"))
            out.add(p, "voltage", f"{key}.{p}_voltage", comp.get(f"{p}_voltage"))
            out.add(p, "current", f"{key}.{p}_current", comp.get(f"{p}_current"))
            out.add(p, "power_factor", f"{key}.{p}_pf", comp.get(f"{p}_pf"))
            out.add(p, "frequency", f"{key}.{p}_freq", comp.get(f"{p}_freq"))
        out.add(None, "power", f"{key}.total_act_power", comp.get("total_act_power"))
        out.add(None, "current", f"{key}.total_current", comp.get("total_current"))
    for key, _, comp in _components(status, "emdata"):
        if not chosen(key):
            continue
        for p in PHASES:
            at = f"{key}.{p}_total_act_energy"
            out.add(p, "energy", at, comp.get(f"{p}_total_act_energy"), WH_PER_KWH)
            at = f"{key}.{p}_total_act_ret_energy"
            out.add(p, "energy_exported", at, comp.get(f"{p}_total_act_ret_energy"), WH_PER_KWH)
        out.add(None, "energy", f"{key}.total_act", comp.get("total_act"), WH_PER_KWH)
        out.add(None, "energy_exported", f"{key}.total_act_ret", comp.get("total_act_ret"), WH_PER_KWH)
    if "em:0" in status:  # the Pro 3EM's own temperature belongs to the whole device
        for key, _, comp in _components(status, "temperature"):
            if chosen(key):
                out.add(None, "temperature", f"{key}.tC", comp.get("tC"))
    return out.items
