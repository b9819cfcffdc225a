"""Ready-made mappings: Shelly Gen2+ status topics and Tasmota telemetry.

Shelly Gen2+ (Plus, Pro, Gen3, Gen4) publish each component's status to
``<prefix>/status/<component>:<id>`` when "generic status update over MQTT" is on; the payload is the
component's ``GetStatus`` result (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch,
.../EM, .../EM1, .../EMData, .../EM1Data, .../PM1). Energies there are in Wh, powers in W.

Tasmota publishes ``tele/<topic>/SENSOR`` every TelePeriod with an ``ENERGY`` block for metering
devices (https://tasmota.github.io/docs/JSON-Status-Responses/, https://tasmota.github.io/docs/MQTT/):
``Total``/``Today`` in kWh, ``Power`` in W (a list on multi-channel devices), ``Voltage``, ``Current``,
``Factor``.
"""

from __future__ import annotations

from typing import Any, Final

from aetherlens.plugins.builtin.mqtt.mapping import Malformed, NoValue, Reading, device_id, number, parse_json

SHELLY_FILTERS: Final = ("+/status/+", "+/+/status/+")
TASMOTA_FILTERS: Final = ("tele/+/SENSOR",)

# component -> [(key path, metric type, unit)], read from the component's status object.
_SWITCH: Final = [
    (("apower",), "power", "W"),
    (("voltage",), "voltage", "V"),
    (("current",), "current", "A"),
    (("freq",), "frequency", "Hz"),
    (("pf",), "power_factor", "ratio"),
    (("aenergy", "total"), "energy", "Wh"),
    (("ret_aenergy", "total"), "energy_exported", "Wh"),
]
_EM1: Final = [
    (("act_power",), "power", "W"),
    (("voltage",), "voltage", "V"),
    (("current",), "current", "A"),
    (("freq",), "frequency", "Hz"),
    (("pf",), "power_factor", "ratio"),
]
_EM1DATA: Final = [
    (("total_act_energy",), "energy", "Wh"),
    (("total_act_ret_energy",), "energy_exported", "Wh"),
]
_EM_TOTAL: Final = [(("total_act_power",), "power", "W"), (("total_current",), "current", "A")]
_EM_PHASE: Final = [
    ("act_power", "power", "W"),
    ("voltage", "voltage", "V"),
    ("current", "current", "A"),
    ("freq", "frequency", "Hz"),
    ("pf", "power_factor", "ratio"),
]
_EMDATA_TOTAL: Final = [(("total_act",), "energy", "Wh"), (("total_act_ret",), "energy_exported", "Wh")]
_EMDATA_PHASE: Final = [
    ("total_act_energy", "energy", "Wh"),
    ("total_act_ret_energy", "energy_exported", "Wh"),
]
# Data components report for the metering component of the same id: emdata:0 belongs to em:0.
_DEVICE_OF: Final = {
    "switch": "switch",
    "pm1": "pm1",
    "em": "em",
    "emdata": "em",
    "em1": "em1",
    "em1data": "em1",
}


def _read(status: dict[str, Any], device: str, table: Any, out: list[Reading]) -> None:
    for path, metric_type, unit in table:
        value: Any = status
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue  # a field this model does not have (Shelly omits what it cannot measure)
        try:
            reading = number(value, ".".join(path))
        except NoValue:
            continue
        if metric_type == "power_factor":
            reading = abs(reading)  # Shelly signs the power factor with the direction of the flow
        out.append(Reading(device, metric_type, reading, unit))


def shelly_gen2(topic: str, payload: bytes) -> list[Reading] | None:
    """Readings of a Shelly Gen2+ status message; None when the topic is not a metering component."""
    prefix, sep, component = topic.rpartition("/status/")
    if not sep or "/" in component:
        return None
    kind, _, index = component.partition(":")
    if kind not in _DEVICE_OF or not index.isdigit():
        return None  # sys, wifi, input, ... carry no readings
    status = parse_json(payload)
    if not isinstance(status, dict):
        raise Malformed("a Shelly status is a JSON object")
    device = device_id(f"{prefix}-{_DEVICE_OF[kind]}-{index}")
    out: list[Reading] = []
    if kind in ("switch", "pm1"):
        _read(status, device, _SWITCH, out)
    elif kind == "em1":
        _read(status, device, _EM1, out)
    elif kind == "em1data":
        _read(status, device, _EM1DATA, out)
    elif kind == "em":
        _read(status, device, _EM_TOTAL, out)
        for phase in "abc":
            table = [((f"{phase}_{key}",), t, u) for key, t, u in _EM_PHASE]
            _read(status, f"{device}-{phase}", table, out)
    elif kind == "emdata":
        _read(status, device, _EMDATA_TOTAL, out)
        for phase in "abc":
            table = [((f"{phase}_{key}",), t, u) for key, t, u in _EMDATA_PHASE]
            _read(status, f"{device}-{phase}", table, out)
    if not out and kind in ("switch", "pm1", "em", "em1"):
        # A switch without metering (Plus 1) reports output only: nothing to store, nothing wrong.
        return []
    return out


_TASMOTA_ENERGY: Final = [
    ("Power", "power", "W"),
    ("Voltage", "voltage", "V"),
    ("Current", "current", "A"),
    ("Factor", "power_factor", "ratio"),
    ("Total", "energy", "kWh"),
    ("Today", "energy_today", "kWh"),
]


def tasmota(topic: str, payload: bytes) -> list[Reading] | None:
    """Readings of the ENERGY block of ``tele/<topic>/SENSOR``; None for other topics."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "tele" or parts[2] != "SENSOR":
        return None
    data = parse_json(payload)
    if not isinstance(data, dict):
        raise Malformed("a Tasmota SENSOR message is a JSON object")
    energy = data.get("ENERGY")
    if energy is None:
        return []  # a sensor-only device (temperature, ...): not a meter
    if not isinstance(energy, dict):
        raise Malformed("ENERGY is not a JSON object")
    base = device_id(parts[1])
    out: list[Reading] = []
    for key, metric_type, unit in _TASMOTA_ENERGY:
        value = energy.get(key)
        if value is None:
            continue
        # Multi-channel devices report a list (one per relay); Total/Today stay one per device.
        values = value if isinstance(value, list) else [value]
        for channel, item in enumerate(values, start=1):
            device = base if len(values) == 1 else f"{base}-{channel}"
            try:
                out.append(Reading(device, metric_type, number(item, f"ENERGY.{key}"), unit))
            except NoValue:
                continue
    return out
