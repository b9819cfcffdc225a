"""From an MQTT message to readings: JSON paths, bare numbers, topic-segment templates, device ids.

Pure functions, no I/O: the presets and the user's ``subscriptions`` are built from them, and a
payload that does not fit raises ``Malformed`` with a reason (the plugin counts and logs it with the
topic; it never ends the plugin).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiomqtt import Topic, Wildcard

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.:-]")
_TEMPLATE_FIELD: Final = re.compile(r"\{(\d+)\}")
# Payloads that mean "no reading right now" rather than a broken message.
NO_VALUE: Final = frozenset({"", "unavailable", "unknown", "none", "null", "nan"})


class Malformed(ValueError):
    """The payload does not hold what the mapping expects; the message says what is wrong."""


class NoValue(Exception):
    """The payload says there is no reading now (``unavailable``, ``unknown``, empty): skip, not count."""


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    metric_type: str
    value: float
    unit: str | None


def device_id(text: str) -> str:
    """A device id (``^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$``) from a topic segment or a vendor name."""
    safe = _UNSAFE.sub("_", text.strip()).lstrip("_.:-")[:128]
    if not safe:
        raise Malformed(f"no usable device id in {text!r}")
    return safe


def parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not JSON ({exc})") from None


def number(value: Any, where: str) -> float:
    """A finite float from a JSON number or a numeric string; booleans and the rest are malformed."""
    if isinstance(value, bool):
        raise Malformed(f"{where} is a boolean, not a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text.strip().lower() in NO_VALUE:
            raise NoValue
        try:
            result = float(text)
        except ValueError:
            raise Malformed(f"{where} is {text[:40]!r}, not a number") from None
    elif value is None:
        raise NoValue
    else:
        raise Malformed(f"{where} is a {type(value).__name__}, not a number")
    if not math.isfinite(result):
        raise Malformed(f"{where} is {result}, not a finite number")
    return result


def split_path(path: str) -> list[str | int]:
    """``aenergy.total`` -> ["aenergy", "total"]; ``ENERGY.Power.0`` or ``a[0]`` index lists."""
    parts: list[str | int] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if piece.startswith("["):
            parts.append(int(piece[1:-1]))
        elif piece.isdigit():
            parts.append(int(piece))
        else:
            parts.append(piece.strip("'\""))
    if not parts:
        raise ValueError(f"'{path}' is not a dotted JSON path such as 'ENERGY.Power'")
    return parts


def dig(data: Any, path: list[str | int], text: str) -> Any:
    """The value at ``path`` in parsed JSON; a missing key is malformed (naming the path)."""
    current = data
    for part in path:
        in_list = isinstance(part, int) and isinstance(current, list) and -len(current) <= part < len(current)
        in_object = isinstance(part, str) and isinstance(current, dict) and part in current
        if not (in_list or in_object):
            raise Malformed(f"no '{text}' in the payload")
        current = current[part]
    return current


def check_filter(topic: str) -> None:
    """Raise ValueError naming what is wrong with an MQTT topic filter."""
    Wildcard(topic)  # aiomqtt's own validation of '+' and '#'


def matches(topic: str, topic_filter: str) -> bool:
    return Topic(topic).matches(topic_filter)


def check_template(template: str) -> None:
    """``{1}``… refer to topic segments (1-based); any other brace is a mistake worth naming."""
    stripped = _TEMPLATE_FIELD.sub("", template)
    if "{" in stripped or "}" in stripped:
        raise ValueError(f"'{template}': only {{1}}, {{2}}, … (topic segments) may appear in braces")
    if any(int(n) < 1 for n in _TEMPLATE_FIELD.findall(template)):
        raise ValueError(f"'{template}': topic segments count from {{1}}")


def render(template: str, topic: str) -> str:
    segments = topic.split("/")

    def segment(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index > len(segments):
            raise Malformed(f"device_id '{template}' needs segment {{{index}}}, topic has {len(segments)}")
        return segments[index - 1]

    return device_id(_TEMPLATE_FIELD.sub(segment, template))


@dataclass(frozen=True, slots=True)
class Subscription:
    """One entry of ``subscriptions``: a topic filter mapped to one metric of one device."""

    topic: str
    device_template: str
    metric_type: str
    path: list[str | int] | None
    path_text: str | None
    unit: str | None

    @classmethod
    def from_config(cls, item: dict[str, Any]) -> Subscription:
        path_text = item.get("path")
        return cls(
            topic=str(item["topic"]),
            device_template=str(item["device_id"]),
            metric_type=str(item["metric_type"]),
            path=split_path(path_text) if path_text else None,
            path_text=path_text or None,
            unit=item.get("unit"),
        )

    def readings(self, topic: str, payload: bytes) -> list[Reading]:
        if self.path is None:
            value = number(payload, "the payload")
        else:
            assert self.path_text is not None
            value = number(dig(parse_json(payload), self.path, self.path_text), f"'{self.path_text}'")
        return [Reading(render(self.device_template, topic), self.metric_type, value, self.unit)]
