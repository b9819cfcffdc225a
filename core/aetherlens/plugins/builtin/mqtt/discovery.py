"""Home Assistant MQTT discovery: ``<prefix>/sensor/[<node_id>/]<object_id>/config`` to a mapping.

The config payload is HA's (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery), keys
possibly abbreviated (``stat_t``, ``unit_of_meas``, ``dev_cla``, ``val_tpl``, ``uniq_id``, ``dev``,
``ids``) and topics possibly relative to ``~``. A sensor is read when its ``device_class`` is one of
ours and its ``value_template`` is absent, ``{{ value }}`` or a plain ``{{ value_json.a.b }}`` path
(optionally ``| float`` / ``| int``); anything else is ignored with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from aetherlens.plugins.builtin.mqtt.mapping import (
    Malformed,
    Reading,
    device_id,
    dig,
    number,
    parse_json,
    split_path,
)

# HA's abbreviations (homeassistant/components/mqtt/abbreviations.py) of the keys read here.
_ABBREVIATIONS: Final = {
    "stat_t": "state_topic",
    "unit_of_meas": "unit_of_measurement",
    "dev_cla": "device_class",
    "val_tpl": "value_template",
    "uniq_id": "unique_id",
    "obj_id": "object_id",
    "stat_cla": "state_class",
    "dev": "device",
}
_DEVICE_ABBREVIATIONS: Final = {"ids": "identifiers", "mf": "manufacturer", "mdl": "model"}
DEVICE_CLASSES: Final = {
    "power": "power",
    "energy": "energy",
    "voltage": "voltage",
    "current": "current",
    "power_factor": "power_factor",
    "frequency": "frequency",
    "temperature": "temperature",
}
_TEMPLATE: Final = re.compile(
    r"^\{\{\s*(?P<root>value_json|value)(?P<path>(?:\.[A-Za-z_]\w*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)"
    r"\s*(?:\|\s*(?:float|int)(?:\(\s*-?\d*\.?\d*\s*\))?\s*)?\}\}$"
)


def filters(prefix: str) -> tuple[str, str]:
    return (f"{prefix}/sensor/+/config", f"{prefix}/sensor/+/+/config")


@dataclass(frozen=True, slots=True)
class Sensor:
    """A discovered sensor we read: its state topic and how its payload becomes a reading."""

    config_topic: str
    state_topic: str
    device_id: str
    metric_type: str
    unit: str | None
    path: list[str | int] | None
    path_text: str | None

    def reading(self, payload: bytes) -> Reading:
        if self.path is None:
            value = number(payload, "the state")
        else:
            assert self.path_text is not None
            value = number(dig(parse_json(payload), self.path, self.path_text), f"'{self.path_text}'")
        return Reading(self.device_id, self.metric_type, value, self.unit)


class Ignored(Exception):
    """A valid discovery message for a sensor this plugin does not read (the message says why)."""


def is_config_topic(topic: str, prefix: str) -> bool:
    parts = topic.split("/")
    return parts[0] == prefix and len(parts) in (4, 5) and parts[1] == "sensor" and parts[-1] == "config"


def parse_config(topic: str, payload: bytes) -> Sensor | None:
    """The sensor a config message announces; None for an empty payload (the sensor was removed).

    Raises ``Malformed`` for a payload that is not a discovery config, ``Ignored`` for one we skip.
    """
    if not payload.strip():
        return None
    raw = parse_json(payload)
    if not isinstance(raw, dict):
        raise Malformed("a discovery config is a JSON object")
    config = {_ABBREVIATIONS.get(str(k), str(k)): v for k, v in raw.items()}
    base = config.get("~")
    state_topic = config.get("state_topic")
    if not isinstance(state_topic, str) or not state_topic:
        raise Malformed("the discovery config has no state_topic")
    if isinstance(base, str):
        if state_topic.startswith("~"):
            state_topic = base + state_topic[1:]
        elif state_topic.endswith("~"):
            state_topic = state_topic[:-1] + base
    device_class = config.get("device_class")
    metric_type = DEVICE_CLASSES.get(str(device_class))
    if metric_type is None:
        raise Ignored(f"device_class {device_class!r} is not one AetherLens reads")
    path, path_text = _value_path(config.get("value_template"))
    unit = config.get("unit_of_measurement")
    parts = topic.split("/")
    return Sensor(
        config_topic=topic,
        state_topic=state_topic,
        device_id=_device(config, parts),
        metric_type=metric_type,
        unit=str(unit) if unit else None,
        path=path,
        path_text=path_text,
    )


def _value_path(template: Any) -> tuple[list[str | int] | None, str | None]:
    if template is None:
        return None, None
    text = str(template).strip()
    match = _TEMPLATE.match(text)
    if match is None:
        raise Ignored(f"value_template {text[:80]!r} is more than a value_json path")
    if match.group("root") == "value":
        if match.group("path"):
            raise Ignored(f"value_template {text[:80]!r} indexes the raw value")
        return None, None
    path_text = match.group("path").lstrip(".")
    if not path_text:
        raise Ignored(f"value_template {text[:80]!r} uses the whole JSON value")
    return split_path(path_text), path_text


def _device(config: dict[str, Any], parts: list[str]) -> str:
    # All sensors of one HA device feed one AetherLens device; without a device block, the sensor's own.
    device = config.get("device")
    if isinstance(device, dict):
        device = {_DEVICE_ABBREVIATIONS.get(str(k), str(k)): v for k, v in device.items()}
        identifiers = device.get("identifiers")
        if isinstance(identifiers, list) and identifiers:
            return device_id(str(identifiers[0]))
        if isinstance(identifiers, str) and identifiers:
            return device_id(identifiers)
    unique = config.get("unique_id")
    if isinstance(unique, str) and unique:
        return device_id(unique)
    return device_id("_".join(parts[2:-1]))
