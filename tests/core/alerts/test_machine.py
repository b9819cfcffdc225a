"""The state machine on its own: hold time, hysteresis, cool-down, late readings, JSON round trip."""

from __future__ import annotations

import datetime as dt

from aetherlens.alerts.compare import compare
from aetherlens.alerts.machine import MachineState, Observation, step

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def run(
    values: list[float],
    *,
    op: str = ">",
    limit: float = 100,
    hysteresis: float | None = None,
    for_seconds: float = 0,
    cooldown: float = 0,
    every: float = 60,
) -> list[tuple[int, str]]:
    state = MachineState()
    out = []
    for i, v in enumerate(values):
        breached, clear = compare(op, v, limit, hysteresis)
        state, tr = step(
            state,
            Observation(T + dt.timedelta(seconds=i * every), breached, clear, v, ""),
            for_seconds=for_seconds,
            cooldown_seconds=cooldown,
        )
        if tr:
            out.append((i, tr))
    return out


def test_fires_only_after_the_hold_time_and_resets_when_it_breaks() -> None:
    # Held for 3 minutes needed: a 2-minute spike does not fire, a 4-minute one fires at its third minute.
    assert run([150, 150, 50, 150, 150, 150, 150, 50], for_seconds=180) == [(6, "firing"), (7, "resolved")]


def test_hysteresis_keeps_a_wobbling_value_in_its_state() -> None:
    # 5 % band: 96..100 neither resolves a firing alert nor fires again.
    noisy = [101, 99, 101, 98, 100.5, 96, 101, 94, 101]
    assert run(noisy) == [(0, "firing"), (7, "resolved"), (8, "firing")]
    assert run(noisy, hysteresis=10) == [(0, "firing")]
    # Without a band every crossing is a transition: what the band prevents.
    assert len(run(noisy, hysteresis=0)) == 9


def test_cool_down_fires_at_most_once_per_period_and_catches_up_when_it_ends() -> None:
    flapping = [150, 50] * 6  # a transition every minute without a cool-down
    assert len(run(flapping)) == 12
    # 5-minute cool-down: after resolving at minute 1, the next firing waits until minute >= 6.
    assert run(flapping, cooldown=300) == [(0, "firing"), (1, "resolved"), (6, "firing"), (7, "resolved")]
    # A breach that persists through the cool-down fires when it ends.
    assert run([150, 50, 150, 150, 150, 150, 150, 150], cooldown=300)[-1] == (6, "firing")


def test_below_thresholds_and_late_readings() -> None:
    assert run([50, 120, 101], op="<", limit=100) == [(0, "firing"), (1, "resolved")]
    state, tr = step(MachineState(), Observation(T, True, False, 1, ""), for_seconds=0, cooldown_seconds=0)
    assert tr == "firing"
    late, tr = step(
        state, Observation(T - dt.timedelta(minutes=1), False, True, 0, ""), for_seconds=0, cooldown_seconds=0
    )
    assert (late, tr) == (state, None)


def test_state_round_trips_through_json() -> None:
    state = MachineState(
        phase="firing", since=T, event_id=7, resolved_at=T - dt.timedelta(hours=1), last_time=T
    )
    assert MachineState.from_json(state.to_json()) == state
    assert MachineState.from_json({"phase": "bogus"}) == MachineState()
    assert MachineState.from_json(None) == MachineState()
