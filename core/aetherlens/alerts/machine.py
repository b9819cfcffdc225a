"""One series' alert state: ok → pending → firing → ok, with hysteresis and a cool-down (pure).

An evaluation yields an :class:`Observation`: is the condition *breached* (past the threshold) and is it
*clear* (back past the threshold by the hysteresis band)? Between the two the state holds, so a value
wobbling around the threshold neither resolves a firing alert nor fires a resolved one.

* ok → pending when breached; pending → firing once it has been breached for ``for_seconds`` (at once
  when 0) *and* the cool-down since the last resolve has passed; pending → ok when no longer breached.
* firing → ok (a "resolved" transition) when clear; a breach during the cool-down waits in pending and
  fires when the cool-down ends if it still holds, so a flapping signal fires at most once per cool-down.

The state is plain JSON (``to_json``/``from_json``) and is stored in ``alerts.state`` with every
transition, in the transition's transaction, so a restart neither repeats a "fired" nor loses a "resolved".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Literal

Phase = Literal["ok", "pending", "firing"]


@dataclass(frozen=True, slots=True)
class Observation:
    time: dt.datetime
    breached: bool
    clear: bool
    value: float | None
    message: str


@dataclass(frozen=True, slots=True)
class MachineState:
    phase: Phase = "ok"
    since: dt.datetime | None = None  # pending: first breach; firing: when it fired
    event_id: int | None = None  # the open event while firing
    resolved_at: dt.datetime | None = None  # the last resolve (cool-down starts there)
    last_time: dt.datetime | None = None  # latest observation (older ones are ignored)

    def to_json(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "phase": self.phase,
            "since": iso(self.since),
            "event_id": self.event_id,
            "resolved_at": iso(self.resolved_at),
            "last_time": iso(self.last_time),
        }

    @classmethod
    def from_json(cls, data: Any) -> MachineState:
        if not isinstance(data, dict) or data.get("phase") not in ("ok", "pending", "firing"):
            return cls()

        def when(key: str) -> dt.datetime | None:
            value = data.get(key)
            return dt.datetime.fromisoformat(value) if isinstance(value, str) else None

        event = data.get("event_id")
        return cls(
            phase=data["phase"],
            since=when("since"),
            event_id=event if isinstance(event, int) else None,
            resolved_at=when("resolved_at"),
            last_time=when("last_time"),
        )


Transition = Literal["firing", "resolved"]


def step(
    state: MachineState, obs: Observation, *, for_seconds: float, cooldown_seconds: float
) -> tuple[MachineState, Transition | None]:
    """The next state after ``obs`` and the transition it makes, if any. ``event_id`` of a new firing
    state is left None: the caller stores the event and sets it."""
    if state.last_time is not None and obs.time < state.last_time:
        return state, None  # a late reading does not rewind the state
    state = replace(state, last_time=obs.time)
    if state.phase == "firing":
        if obs.clear:
            return replace(state, phase="ok", since=None, event_id=None, resolved_at=obs.time), "resolved"
        return state, None
    if not obs.breached:
        return replace(state, phase="ok", since=None), None
    since = state.since if state.phase == "pending" and state.since is not None else obs.time
    held = (obs.time - since).total_seconds() >= for_seconds
    cooled = state.resolved_at is None or (obs.time - state.resolved_at).total_seconds() >= cooldown_seconds
    if held and cooled:
        return replace(state, phase="firing", since=obs.time, event_id=None), "firing"
    return replace(state, phase="pending", since=since), None
