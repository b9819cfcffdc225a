"""Series rules (``threshold``) evaluated on committed write batches, without a database read.

The writer's listener hands every committed batch to :meth:`SeriesIndex.run`; the index keeps the
threshold rules by metric type and device, so a row no rule watches costs one dict lookup and nothing
more. The watched readings of each (rule, device) are stepped through the state machine in time order,
in memory; a reading that cannot change the state (it stays on its side of the threshold) skips the
machine, so a batch costs little more than one pass over its rows. Only transitions reach the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aetherlens.alerts.compare import compare
from aetherlens.alerts.machine import MachineState, Observation, Transition, step
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


@dataclass(frozen=True, slots=True)
class SeriesTransition:
    rule: SeriesRule
    key: str
    device_id: str
    before: MachineState
    after: MachineState
    transition: Transition
    obs: Observation


class SeriesIndex:
    """Threshold rules by metric type, then by device (``None``: a rule that watches every device)."""

    def __init__(self, rules: Iterable[AlertRule] = ()) -> None:
        self._by_type: dict[str, dict[str | None, list[SeriesRule]]] = {}
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
            self._by_type.setdefault(rule.metric_type, {}).setdefault(rule.device_id, []).append(sr)

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def _groups(self, rows: Sequence[Any]) -> dict[tuple[int, str], tuple[SeriesRule, list[Any]]]:
        """The rows each (rule, device) watches. Two dict lookups per row and nothing else for a row
        no rule watches: this runs for every committed batch."""
        by_type = self._by_type
        groups: dict[tuple[int, str], tuple[SeriesRule, list[Any]]] = {}
        for row in rows:
            by_device = by_type.get(row[2])
            if by_device is None:
                continue
            device = row[1]
            for rules in (by_device.get(device), by_device.get(None)):
                if rules is None:
                    continue
                for sr in rules:
                    group = groups.get((sr.rule.id, device))
                    if group is None:
                        group = groups[(sr.rule.id, device)] = (sr, [])
                    group[1].append(row)
        return groups

    def run(
        self, rows: Sequence[Any], states: Callable[[int], dict[str, MachineState] | None]
    ) -> tuple[list[SeriesTransition], set[int]]:
        """Step every watched series through the batch's readings, oldest first, updating the states
        ``states(rule_id)`` returns in place; return the transitions (in order) and the rules whose state
        changed otherwise (a pending timer started or stopped). Readings that cannot change the state
        (the common case: a value that stays on its side) skip the state machine."""
        out: list[SeriesTransition] = []
        changed: set[int] = set()
        for (rule_id, device), (sr, group) in self._groups(rows).items():
            rule_states = states(rule_id)
            if rule_states is None:
                continue
            key = series_key(device)
            state = initial = rule_states.get(key) or MachineState()
            if any(group[i][0] > group[i + 1][0] for i in range(len(group) - 1)):
                group.sort(key=lambda r: r[0])
            op, threshold, band_ = sr.op, sr.value, sr.hysteresis
            hold, cool = sr.for_seconds, sr.rule.cooldown_seconds
            last = state.last_time
            for row in group:
                t, value = row[0], row[3]
                if last is not None and t < last:
                    continue
                breached, clear = compare(op, value, threshold, band_)
                phase = state.phase
                if (phase == "firing" and not clear) or (phase == "ok" and not breached):
                    last = t
                    continue
                if (
                    phase == "pending"
                    and breached
                    and state.since is not None
                    and (t - state.since).total_seconds() < hold
                ):
                    last = t
                    continue
                obs = Observation(t, breached, clear, value, "")
                before = replace(state, last_time=last)
                state, transition = step(before, obs, for_seconds=hold, cooldown_seconds=cool)
                last = t
                if transition is not None:
                    out.append(SeriesTransition(sr, key, device, before, state, transition, obs))
            rule_states[key] = replace(state, last_time=last)
            if (state.phase, state.since) != (initial.phase, initial.since):
                changed.add(rule_id)
        return out, changed
