"""The simulator: physics of the model, determinism, and a run through the real supervisor."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise

import pytest

from aetherlens.plugins.builtin.simulator.model import Simulation
from aetherlens.plugins.discovery import BUILTIN_DIR
from aetherlens.plugins.testkit import run_plugin

DAY_START = 1_764_028_800.0  # 2025-11-25 00:00 UTC


def _series(
    sim: Simulation, start: float, seconds: float, step: float
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    t = start
    while t <= start + seconds:
        for device, kind, value, _unit in sim.sample(t):
            series[device, kind].append((t, value))
        t += step
    return series


def test_mains_is_the_sum_of_the_devices() -> None:
    sim = Simulation(households=3, seed=7)
    for t in (DAY_START + 3 * 3600, DAY_START + 12.5 * 3600, DAY_START + 20 * 3600):
        readings = {(d, k): v for d, k, v, _ in sim.sample(t)}
        for house in range(1, 4):
            prefix = f"sim-h{house:03d}"
            devices = sum(
                readings[f"{prefix}-{kind}", "power"]
                for kind in ("fridge", "hvac", "rack", "washer", "solar")
            )
            assert readings[f"{prefix}-mains", "power"] == pytest.approx(devices, abs=0.01)


def test_daily_shapes_solar_exports_by_day_only_and_washer_runs_once() -> None:
    sim = Simulation(households=1, seed=11)
    series = _series(sim, DAY_START, 24 * 3600, 60)
    solar = dict(series["sim-h001-solar", "power"])
    assert solar[DAY_START + 12 * 3600] < -1000  # strong production at noon, as negative power
    assert solar[DAY_START + 2 * 3600] == 0.0
    washer = [v for _, v in series["sim-h001-washer", "power"]]
    assert max(washer) == 2000.0 and sum(1 for v in washer if v > 1.0) == pytest.approx(90, abs=2)
    fridge = [v for _, v in series["sim-h001-fridge", "power"]]
    switches = sum(1 for a, b in pairwise(fridge) if (a > 50) != (b > 50))
    assert 60 <= switches <= 80  # a compressor cycle of 40-50 min: ~30 cycles a day, two edges each
    rack = [v for _, v in series["sim-h001-rack", "power"]]
    assert min(rack) > 250  # always on
    hvac = dict(series["sim-h001-hvac", "power"])
    afternoon = sum(hvac[DAY_START + h * 3600] for h in (14, 15, 16))
    night = sum(hvac[DAY_START + h * 3600] for h in (2, 3, 4))
    assert afternoon > 2 * night


@pytest.mark.parametrize("device", ["fridge", "hvac", "rack", "washer", "mains"])
def test_energy_counter_is_monotonic_and_equals_integral_of_power(device: str) -> None:
    sim = Simulation(households=1, seed=3)
    series = _series(sim, DAY_START, 24 * 3600, 10)
    power = series[f"sim-h001-{device}", "power"]
    energy = [v for _, v in series[f"sim-h001-{device}", "energy"]]
    assert all(b >= a for a, b in pairwise(energy))
    imported_ws = sum((max(p0, 0) + max(p1, 0)) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in pairwise(power))
    assert energy[-1] - energy[0] == pytest.approx(imported_ws / 3.6e6, rel=0.02)


def test_exported_energy_of_solar_equals_integral_of_production() -> None:
    sim = Simulation(households=1, seed=5)
    series = _series(sim, DAY_START, 24 * 3600, 10)
    power = series["sim-h001-solar", "power"]
    exported = [v for _, v in series["sim-h001-solar", "energy_exported"]]
    assert all(b >= a for a, b in pairwise(exported))
    produced_ws = sum(-(p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in pairwise(power))
    assert produced_ws > 0
    assert exported[-1] - exported[0] == pytest.approx(produced_ws / 3.6e6, rel=0.01)


def test_same_seed_same_household_other_seed_differs() -> None:
    a = Simulation(households=2, seed=1).sample(DAY_START + 40_000)
    b = Simulation(households=2, seed=1).sample(DAY_START + 40_000)
    c = Simulation(households=2, seed=2).sample(DAY_START + 40_000)
    assert a == b
    assert a != c


async def test_simulator_through_the_supervisor_with_backfill() -> None:
    run = await run_plugin(
        BUILTIN_DIR / "simulator",
        {"households": 2, "seed": 9, "backfill_hours": 1, "backfill_step_seconds": 60},
        collections=3,
        poll_interval=0.2,
        discover=True,
    )
    assert not run.rejected
    devices = {d["id"] for d in run.devices}
    assert len(devices) == 12 and "sim-h002-mains" in devices
    mains = [m for m in run.metrics if m["device_id"] == "sim-h001-mains" and m["metric_type"] == "power"]
    times = [datetime.fromisoformat(m["time"]).timestamp() for m in mains]
    assert times == sorted(times)
    assert times[-1] - times[0] >= 3500  # an hour of history, then live readings on the wall clock
    assert len(mains) >= 60 + 2
    energy = [
        m["value"] for m in run.metrics if m["device_id"] == "sim-h001-mains" and m["metric_type"] == "energy"
    ]
    assert all(b >= a for a, b in pairwise(energy))
    assert run.status["verification"] == "builtin"


async def test_simulator_rejects_a_bad_timezone_naming_the_key() -> None:
    with pytest.raises(Exception, match=r"plugins\.simulator\.config\.timezone"):
        await run_plugin(BUILTIN_DIR / "simulator", {"timezone": "Mars/Olympus"}, within=20)
