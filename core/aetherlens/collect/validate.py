"""Validation of submitted metrics: one reason per refused metric; good neighbours always kept.

Input items are ``models.Metric`` (plugins) or dicts in the HTTP shape of CONTRACT.md ("Ingest rules").
The output rows are in the writer's ``Row`` shape, already in canonical units, tags as JSON text.

This is the ingest hot path (every metric passes here once): one dict lookup for type and unit, a cached
set for device ids already seen, no per-metric objects beyond the output tuple.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from aetherlens.collect.normalize import UnitTable, parse_time
from aetherlens.db.writer import Row
from aetherlens.models import DEVICE_ID_PATTERN, MAX_MAGNITUDE, MIN_MAGNITUDE, Metric, Rejection

MAX_TAGS: Final = 64
MAX_TAG_CHARS: Final = 256
_VALID_ID_CACHE_MAX: Final = 100_000
_MISSING: Final = object()


@dataclass(slots=True)
class Checked:
    rows: list[Row] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)  # batch index of each row (for later rejections)
    rejected: list[Rejection] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # one per rejection, for the counter's label


class Validator:
    def __init__(self, units: UnitTable, max_future_seconds: float, raw_days: int) -> None:
        self.units = units
        self.max_future = timedelta(seconds=max_future_seconds)
        self.max_age = timedelta(days=raw_days)
        self.raw_days = raw_days
        self._valid_ids: set[str] = set()

    def check(self, batch: Sequence[Any], now: datetime | None = None) -> Checked:
        now = now or datetime.now(UTC)
        newest, oldest = now + self.max_future, now - self.max_age
        conversions = self.units.conversions
        valid_ids = self._valid_ids
        out = Checked()
        rows, indexes = out.rows, out.indexes
        append_row, append_index = rows.append, indexes.append
        text_times: dict[str, datetime | str] = {}
        for index, item in enumerate(batch):
            if type(item) is Metric:
                when: Any = item.time
                device_id: Any = item.device_id
                metric_type: Any = item.metric_type
                value: Any = item.value
                unit: Any = item.unit
                tags: Any = item.tags
            elif isinstance(item, dict):
                when = item.get("time", _MISSING)
                device_id = item.get("device_id", _MISSING)
                metric_type = item.get("metric_type", _MISSING)
                value = item.get("value", _MISSING)
                unit = item.get("unit")
                tags = item.get("tags")
                if _MISSING in (when, device_id, metric_type, value):
                    missing = [k for k in ("time", "device_id", "metric_type", "value") if k not in item]
                    self._reject(out, index, "shape", f"missing field(s): {', '.join(missing)}")
                    continue
            else:
                self._reject(out, index, "shape", f"a metric must be an object, got {type(item).__name__}")
                continue

            # value: a finite number (bool is an int in Python, but not a number in JSON)
            if type(value) is float:
                if value - value != 0.0:  # NaN or ±inf, without a function call
                    self._reject(out, index, "value", f"value must be a finite number, got {value}")
                    continue
            elif type(value) is int:
                try:
                    value = float(value)
                except OverflowError:
                    self._reject(out, index, "value", "value is too large for a float8")
                    continue
            elif isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value)
                if not math.isfinite(value):
                    self._reject(out, index, "value", f"value must be a finite number, got {value}")
                    continue
            else:
                self._reject(
                    out, index, "value", f"value must be a finite number, got {type(value).__name__}"
                )
                continue

            # type and unit → canonical unit
            try:
                units = conversions.get(metric_type)
                conversion = units.get(unit) if units is not None else None
            except TypeError:  # unhashable type or unit
                conversion = None
            if conversion is None:
                category, reason = self.units.explain(metric_type, unit)
                self._reject(out, index, category, reason)
                continue
            canonical, scale, offset, lo, hi = conversion
            if scale != 1.0 or offset != 0.0:
                value = value * scale + offset
                if value - value != 0.0:
                    self._reject(out, index, "value", f"value overflows after conversion to {canonical}")
                    continue
            # Range of the type (and the magnitude the database's arithmetic can carry), then values so
            # near 0 that products with them underflow; chained comparisons, no call on the hot path.
            if not lo <= value <= hi:
                counter = self.units.types[metric_type].counter
                self._reject(
                    out, index, "range", _range_reason(metric_type, counter, value, canonical, lo, hi)
                )
                continue
            if -MIN_MAGNITUDE < value < MIN_MAGNITUDE and value != 0.0:
                self._reject(
                    out,
                    index,
                    "range",
                    f"value {value!r} {canonical} is too close to 0 for the database's arithmetic "
                    f"(non-zero values need |value| >= {MIN_MAGNITUDE:g}; send 0 instead)",
                )
                continue

            # time: aware, not too far ahead, not older than raw retention
            if type(when) is str:
                # Metrics of one batch mostly share timestamps: parse each distinct text once.
                parsed = text_times.get(when)
                if parsed is None:
                    parsed = text_times[when] = parse_time(when)
                if isinstance(parsed, str):
                    self._reject(out, index, "time", parsed)
                    continue
                when = parsed
            elif type(when) is not datetime or when.tzinfo is not UTC:
                parsed = parse_time(when)
                if isinstance(parsed, str):
                    self._reject(out, index, "time", parsed)
                    continue
                when = parsed
            if when > newest:
                self._reject(
                    out,
                    index,
                    "time",
                    f"time {when.isoformat()} is more than {self.max_future.total_seconds():g} s in the "
                    "future (collector.max_future_seconds)",
                )
                continue
            if when < oldest:
                self._reject(
                    out,
                    index,
                    "time",
                    f"time {when.isoformat()} is older than the raw retention of {self.raw_days} days "
                    "(retention.raw_days)",
                )
                continue

            # device id
            if device_id not in valid_ids:
                if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
                    shown = repr(device_id)[:140]
                    self._reject(
                        out,
                        index,
                        "device_id",
                        f"device_id {shown} is invalid (1-128 characters: letters, digits and _.:- , "
                        "starting with a letter or digit)",
                    )
                    continue
                if len(valid_ids) >= _VALID_ID_CACHE_MAX:
                    valid_ids.clear()  # bound the cache; it only saves a regex match
                valid_ids.add(device_id)

            # tags: optional string → string, stored as JSON text
            if tags is not None:
                problem = _tags_problem(tags)
                if problem:
                    self._reject(out, index, "tags", problem)
                    continue
                tags = orjson.dumps(tags).decode() if tags else None

            append_row((when, device_id, metric_type, value, canonical, tags))
            append_index(index)
        return out

    @staticmethod
    def _reject(out: Checked, index: int, category: str, reason: str) -> None:
        out.rejected.append(Rejection(index, reason))
        out.categories.append(category)


def _range_reason(metric_type: str, counter: bool, value: float, unit: str, lo: float, hi: float) -> str:
    if lo <= -MAX_MAGNITUDE and hi >= MAX_MAGNITUDE:
        return (
            f"value {value:g} {unit} is beyond ±{MAX_MAGNITUDE:g}, the largest magnitude the database's "
            "arithmetic can carry"
        )
    negative_count = counter and lo == 0.0 and value < 0
    what = "a counter, it cannot be negative" if negative_count else f"outside {lo:g}..{hi:g} {unit}"
    return f"{metric_type} value {value:g} {unit} is {what} (the range of {metric_type})"


def _tags_problem(tags: object) -> str | None:
    if not isinstance(tags, dict):
        return f"tags must be an object of string to string, got {type(tags).__name__}"
    if len(tags) > MAX_TAGS:
        return f"too many tags ({len(tags)}, at most {MAX_TAGS})"
    for key, val in tags.items():
        if not isinstance(key, str) or not isinstance(val, str):
            return f"tag {str(key)[:64]!r} must map a string to a string"
        if not key or len(key) > MAX_TAG_CHARS or len(val) > MAX_TAG_CHARS:
            return (
                f"tag {key[:64]!r}: keys must be 1-{MAX_TAG_CHARS} characters, values at most {MAX_TAG_CHARS}"
            )
        if "\x00" in key or "\x00" in val:
            return f"tag {key[:64]!r} contains a NUL character"
    return None
