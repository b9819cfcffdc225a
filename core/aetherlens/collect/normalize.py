"""Normalisation: metric types and units to canonical units, and times to aware datetimes.

The unit table is built once from ``models.METRIC_TYPES`` plus plugin-declared types, keyed by
metric type then unit so the hot path does two dict lookups per metric; unit ``None`` is the canonical
unit (the contract's default when ``unit`` is omitted).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from aetherlens.models import MAX_MAGNITUDE, METRIC_TYPES, MetricType

log = logging.getLogger(__name__)

# (canonical unit, scale, offset, minimum, maximum): canonical = value * scale + offset, which must lie in
# [minimum, maximum] (the type's range, in the canonical unit); carried here so the hot path needs no
# further lookup.
Conversion = tuple[str, float, float, float, float]


class UnitTable:
    """Accepted (metric_type, unit) pairs and their conversion to the type's canonical unit."""

    def __init__(self, extra_types: Iterable[MetricType] = ()) -> None:
        self.types: dict[str, MetricType] = dict(METRIC_TYPES)
        # metric_type -> unit (None = omitted) -> conversion; two lookups, no key tuple per metric.
        self.conversions: dict[str, dict[str | None, Conversion]] = {}
        for metric_type in METRIC_TYPES.values():
            self._add(metric_type)
        self.add_types(extra_types)

    def add_types(self, types: Iterable[MetricType]) -> None:
        """Accept plugin-declared types. The contract's vocabulary cannot be redefined by a plugin."""
        for metric_type in types:
            known = self.types.get(metric_type.name)
            if metric_type.name in METRIC_TYPES:
                if known != metric_type:
                    log.warning(
                        "a plugin redeclares built-in metric type %r; keeping the built-in one",
                        metric_type.name,
                    )
                continue
            self.types[metric_type.name] = metric_type
            self._add(metric_type)

    def _add(self, metric_type: MetricType) -> None:
        canonical = metric_type.unit
        # A declared range is clipped to what the database's arithmetic can carry.
        lo = max(metric_type.minimum, -MAX_MAGNITUDE)
        hi = min(metric_type.maximum, MAX_MAGNITUDE)
        units: dict[str | None, Conversion] = {
            None: (canonical, 1.0, 0.0, lo, hi),
            canonical: (canonical, 1.0, 0.0, lo, hi),
        }
        for unit, (scale, offset) in metric_type.conversions.items():
            units[unit] = (canonical, scale, offset, lo, hi)
        self.conversions[metric_type.name] = units

    def explain(self, metric_type: object, unit: object) -> tuple[str, str]:
        """(category, reason) for a pair that is not in the table (the slow path, rejections only)."""
        if not isinstance(metric_type, str):
            return "metric_type", f"metric_type must be a string, got {type(metric_type).__name__}"
        known = self.types.get(metric_type)
        if known is None:
            return "metric_type", (
                f"unknown metric_type {metric_type!r} (known: {', '.join(sorted(self.types))})"
            )
        accepted = sorted({known.unit, *known.conversions})
        if not isinstance(unit, str):
            return "unit", f"unit must be a string, got {type(unit).__name__}"
        return "unit", f"unit {unit!r} is not accepted for {metric_type} (accepted: {', '.join(accepted)})"


_EPOCH_MAX: Final = 253402300799.0  # 9999-12-31T23:59:59Z, the end of datetime's range


def parse_time(raw: object) -> datetime | str:
    """An aware datetime from a datetime, ISO 8601 text with an offset, or epoch seconds; else a reason."""
    if isinstance(raw, datetime):
        if raw.tzinfo is None or raw.utcoffset() is None:
            return "time has no UTC offset (give an aware datetime)"
        return raw
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return f"time {raw[:64]!r} is not ISO 8601"
        if parsed.tzinfo is None:
            return f"time {raw[:64]!r} has no UTC offset (add Z or +HH:MM)"
        return parsed
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw) if isinstance(raw, float) else raw
        if not math.isfinite(seconds) or not -_EPOCH_MAX <= seconds <= _EPOCH_MAX:
            return f"time {raw!r} is not a usable epoch timestamp"
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return f"time {raw!r} is not a usable epoch timestamp"
    if raw is None:
        return "time is missing"
    return f"time must be ISO 8601 text or epoch seconds, got {type(raw).__name__}"
