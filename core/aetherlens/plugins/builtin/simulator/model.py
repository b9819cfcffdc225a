"""A deterministic household power model: the same seed and time give the same watts, on any machine.

Every device's power is a pure function of the wall-clock time, so the simulator needs no state to
answer "what did the fridge draw at 03:12"; only the energy counters accumulate, integrating power
between samples in short sub-steps so they equal the integral of the power curve.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SUBSTEP_SECONDS = 5.0
_JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class SimDevice:
    id: str
    kind: str
    type: str  # CONTRACT.md device type
    name: str
    power: Callable[[float, float], float]  # (epoch seconds, local hour of day) -> W; negative = export


def _fridge(rng: random.Random) -> Callable[[float, float], float]:
    period = rng.uniform(2400, 3000)
    duty = rng.uniform(0.35, 0.45)
    phase = rng.uniform(0, period)
    on_watts = rng.uniform(90, 130)

    def power(t: float, _hour: float) -> float:
        position = ((t + phase) % period) / period
        if position < duty:
            # The compressor draws a little more right after it starts, then settles.
            return on_watts * (1.0 + 0.15 * math.exp(-position * period / 60.0))
        return 3.0

    return power


def _hvac(rng: random.Random) -> Callable[[float, float], float]:
    peak = rng.uniform(900, 1800)
    cycle = rng.uniform(900, 1500)
    phase = rng.uniform(0, cycle)

    def power(t: float, hour: float) -> float:
        # Daily shape: most demand mid-afternoon, least before dawn; the thermostat cycles on top.
        shape = 0.5 + 0.5 * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
        thermostat = 0.65 + 0.35 * math.sin(2 * math.pi * (t + phase) / cycle)
        return 60.0 + peak * shape * thermostat

    return power


def _rack(rng: random.Random) -> Callable[[float, float], float]:
    base = rng.uniform(300, 450)
    p1, p2 = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)

    def power(t: float, _hour: float) -> float:
        return (
            base + 15.0 * math.sin(2 * math.pi * t / 300.0 + p1) + 6.0 * math.sin(2 * math.pi * t / 47.0 + p2)
        )

    return power


# (minutes from start, watts) of one washing-machine run: fill, heat, wash, spin, drain.
_WASH_PROGRAM = ((15, 100.0), (35, 2000.0), (75, 250.0), (85, 450.0), (90, 80.0))


def _washer(rng: random.Random) -> Callable[[float, float], float]:
    start_hour = rng.uniform(8.0, 19.0)

    def power(_t: float, hour: float) -> float:
        minutes = ((hour - start_hour) % 24.0) * 60.0
        for end, watts in _WASH_PROGRAM:
            if minutes < end:
                return watts
        return 1.0  # standby

    return power


def _solar(rng: random.Random) -> Callable[[float, float], float]:
    peak = rng.uniform(2000, 5000)
    cloud_period = rng.uniform(600, 1800)
    phase = rng.uniform(0, cloud_period)

    def power(t: float, hour: float) -> float:
        if not 6.0 < hour < 18.0:
            return 0.0
        sun = math.sin(math.pi * (hour - 6.0) / 12.0)
        clouds = 0.8 + 0.2 * math.cos(2 * math.pi * (t + phase) / cloud_period)
        return -peak * sun * clouds  # production is export: negative power

    return power


_KINDS = (
    ("fridge", "appliance", "Fridge", _fridge),
    ("hvac", "hvac", "Heat pump", _hvac),
    ("rack", "server", "Server rack", _rack),
    ("washer", "appliance", "Washing machine", _washer),
    ("solar", "inverter", "Solar inverter", _solar),
)


@dataclass(slots=True)
class Counter:
    imported_kwh: float
    exported_kwh: float


@dataclass(slots=True)
class Household:
    index: int
    devices: list[SimDevice]
    mains_id: str
    counters: dict[str, Counter] = field(default_factory=dict)

    def powers(self, t: float, hour: float) -> dict[str, float]:
        values = {d.id: d.power(t, hour) for d in self.devices}
        values[self.mains_id] = sum(values.values())  # the meter sees the whole house, net of solar
        return values


class Simulation:
    def __init__(self, households: int, seed: int, timezone: str = "UTC") -> None:
        self.zone = ZoneInfo(timezone)
        self.households: list[Household] = []
        for index in range(households):
            rng = random.Random(f"{seed}:{index}")  # noqa: S311 - a simulation, not security
            prefix = f"sim-h{index + 1:03d}"
            devices = [
                SimDevice(f"{prefix}-{kind}", kind, dtype, f"{name} {index + 1}", make(rng))
                for kind, dtype, name, make in _KINDS
            ]
            house = Household(index, devices, f"{prefix}-mains")
            for device_id in [*(d.id for d in devices), house.mains_id]:
                # Counters start at a plausible meter reading rather than zero.
                house.counters[device_id] = Counter(round(rng.uniform(100, 5000), 3), 0.0)
            self.households.append(house)
        self._last: float | None = None
        self._offset_cache: tuple[int, float] = (-1, 0.0)

    def resume_counters(self, counters: dict[str, dict[str, float]]) -> None:
        """Continue from stored meter readings (``{device: {"energy": kWh, "energy_exported": kWh}}``), so
        a restarted simulation's counters carry on instead of dropping (which would read as a reset)."""
        for house in self.households:
            for device_id, counter in house.counters.items():
                stored = counters.get(device_id, {})
                counter.imported_kwh = float(stored.get("energy", counter.imported_kwh))
                counter.exported_kwh = float(stored.get("energy_exported", counter.exported_kwh))

    def devices(self) -> Iterator[tuple[str, str, str]]:
        """(id, name, type) of every simulated device, mains meters included."""
        for house in self.households:
            for d in house.devices:
                yield d.id, d.name, d.type
            yield house.mains_id, f"Mains meter {house.index + 1}", "meter"

    def local_hour(self, t: float) -> float:
        hour_key = int(t // 3600)
        if self._offset_cache[0] != hour_key:
            offset = datetime.fromtimestamp(t, UTC).astimezone(self.zone).utcoffset()
            self._offset_cache = (hour_key, offset.total_seconds() if offset else 0.0)
        return ((t + self._offset_cache[1]) / 3600.0) % 24.0

    def _integrate(self, start: float, end: float) -> None:
        steps = max(1, math.ceil((end - start) / SUBSTEP_SECONDS))
        width = (end - start) / steps
        for house in self.households:
            previous = house.powers(start, self.local_hour(start))
            for step in range(1, steps + 1):
                t = start + step * width
                current = house.powers(t, self.local_hour(t))
                for device_id, watts in current.items():
                    _accumulate(house.counters[device_id], previous[device_id], watts, width)
                previous = current

    def sample(self, t: float) -> list[tuple[str, str, float, str]]:
        """Readings at ``t`` (epoch s, after the previous sample): power of each device and its counters."""
        if self._last is not None and t > self._last:
            self._integrate(self._last, t)
        self._last = t if self._last is None else max(self._last, t)
        hour = self.local_hour(t)
        readings: list[tuple[str, str, float, str]] = []
        for house in self.households:
            for device_id, watts in house.powers(t, hour).items():
                counter = house.counters[device_id]
                readings.append((device_id, "power", round(watts, 3), "W"))
                if device_id.endswith("-solar"):
                    readings.append((device_id, "energy_exported", counter.exported_kwh, "kWh"))
                elif device_id == house.mains_id:
                    readings.append((device_id, "energy", counter.imported_kwh, "kWh"))
                    readings.append((device_id, "energy_exported", counter.exported_kwh, "kWh"))
                else:
                    readings.append((device_id, "energy", counter.imported_kwh, "kWh"))
        return readings


def _accumulate(counter: Counter, before: float, after: float, seconds: float) -> None:
    """Add the trapezoid between two power readings, split into imported and exported energy."""
    if before >= 0 and after >= 0:
        counter.imported_kwh += (before + after) / 2 * seconds / _JOULES_PER_KWH
    elif before <= 0 and after <= 0:
        counter.exported_kwh += -(before + after) / 2 * seconds / _JOULES_PER_KWH
    else:
        # The sign changes inside the step: split it where the line crosses zero.
        crossing = seconds * abs(before) / (abs(before) + abs(after))
        first, second = (crossing, seconds - crossing)
        positive = (before * first if before > 0 else after * second) / 2
        negative = (-before * first if before < 0 else -after * second) / 2
        counter.imported_kwh += positive / _JOULES_PER_KWH
        counter.exported_kwh += negative / _JOULES_PER_KWH
