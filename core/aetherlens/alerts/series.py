"""Series rules (``threshold``) evaluated on committed write batches, without a database read.

The writer's listener hands every committed batch to :meth:`SeriesIndex.observations`; the index keeps
the threshold rules by metric type, so a batch whose rows no rule watches costs one dict lookup per row
and nothing more. Each matching reading becomes an :class:`~aetherlens.alerts.machine.Observation` of
its rule and series, in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aetherlens.alerts.compare import compare
from aetherlens.alerts.machine import Observation
from aetherlens.db.queries.alerts import AlertRule
from aetherlens.models import METRIC_TYPES


@dataclass(frozen=True, slots=True)
class SeriesRule:
    rule: AlertRule
    op: str
    value: float
    hysteresis: float | None
    for_seconds: int


def series_key(device_id: str | None) -> str:
    """A rule's state key of one series (a rule without a device watches each device on its own)."""
    return device_id or ""


def describe(rule: SeriesRule, device_id: str, value: float | None, firing: bool) -> str:
    """The message of a transition (built only when one happens, never per reading)."""
    metric_type = rule.rule.metric_type or ""
    unit = METRIC_TYPES[metric_type].unit if metric_type in METRIC_TYPES else ""
    shown = f"{value:g} {unit}".rstrip() if value is not None else "unknown"
    if firing:
        held = f" for {rule.for_seconds} s" if rule.for_seconds else ""
        return f"{device_id} {metric_type} is {shown} ({rule.op} {rule.value:g}{held})"
    return f"{device_id} {metric_type} is back to {shown} (rule: {rule.op} {rule.value:g})"


class SeriesIndex:
    def __init__(self, rules: Iterable[AlertRule] = ()) -> None:
        self._by_type: dict[str, list[SeriesRule]] = {}
        self.invalid: dict[int, str] = {}  # rules whose stored condition cannot be read (left out)
        for rule in rules:
            cond = rule.condition
            if cond.get("type") != "threshold":
                continue
            try:
                if rule.metric_type is None:
                    raise ValueError("a threshold rule needs a metric_type")
                sr = SeriesRule(
                    rule=rule,
                    op=str(cond["op"]),
                    value=float(cond["value"]),
                    hysteresis=None if cond.get("hysteresis") is None else float(cond["hysteresis"]),
                    for_seconds=int(cond.get("for_seconds", 0)),
                )
                compare(sr.op, 0.0, sr.value, sr.hysteresis)  # an unknown op fails here, not per reading
            except (KeyError, TypeError, ValueError) as exc:
                self.invalid[rule.id] = f"{type(exc).__name__}: {exc}"
                continue
            self._by_type.setdefault(rule.metric_type, []).append(sr)

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def observations(self, rows: Sequence[Any]) -> list[tuple[SeriesRule, str, str, Observation]]:
        """(rule, state key, device id, observation) for every reading a rule watches, oldest first; the
        observation's message is left empty (see :func:`describe`)."""
        by_type = self._by_type
        if not by_type:
            return []
        matched = [r for r in rows if r[2] in by_type]
        if not matched:
            return []
        matched.sort(key=lambda r: r[0])
        out: list[tuple[SeriesRule, str, str, Observation]] = []
        for time, device_id, metric_type, value, *_ in matched:
            for sr in by_type[metric_type]:
                if sr.rule.device_id is not None and sr.rule.device_id != device_id:
                    continue
                breached, clear = compare(sr.op, value, sr.value, sr.hysteresis)
                out.append(
                    (sr, series_key(device_id), device_id, Observation(time, breached, clear, value, ""))
                )
        return out
