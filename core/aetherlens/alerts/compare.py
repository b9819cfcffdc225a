"""A threshold comparison with a hysteresis band: is a value *breached*, and is it *clear*?

``clear`` needs the value back past the threshold by the band (default 5 % of |threshold|), so a value
wobbling around the threshold stays in the state it is in (see ``machine``).
"""

from __future__ import annotations

from typing import Final

DEFAULT_HYSTERESIS: Final = 0.05


def band(threshold: float, hysteresis: float | None) -> float:
    return abs(threshold) * DEFAULT_HYSTERESIS if hysteresis is None else hysteresis


def compare(op: str, value: float, threshold: float, hysteresis: float | None = None) -> tuple[bool, bool]:
    """(breached, clear) of ``value op threshold``."""
    h = band(threshold, hysteresis)
    if op == ">":
        return value > threshold, value <= threshold - h
    if op == ">=":
        return value >= threshold, value < threshold - h
    if op == "<":
        return value < threshold, value >= threshold + h
    if op == "<=":
        return value <= threshold, value > threshold + h
    raise ValueError(f"unknown comparison {op!r}")
