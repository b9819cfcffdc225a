"""The shared vocabulary: metric types, canonical units and the records that flow between modules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

DEVICE_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

# What the database's float8 arithmetic can carry through every rollup and cost calculation, for any
# metric type (docs/API.md, "Ingest rules"). PostgreSQL's avg() also sums the squares of the values, so
# a single 1e155 already overflows it (1e200 stopped every rollup); cost and allocation multiply
# readings by prices and shares, and a product that falls below the smallest float8 is an underflow
# error (two readings of 5e-324 stopped the cost job). 1e15 leaves squares (1e30) and sums of millions
# of rows far from overflow; below 1e-15 a reading is beneath float8 resolution next to ordinary
# readings of its series, and its products with prices and shares stay far above the underflow limit.
MAX_MAGNITUDE: Final = 1e15
MIN_MAGNITUDE: Final = 1e-15  # a non-zero value nearer to 0 than this is refused (subnormals included)

DEVICE_TYPES: Final = (
    "plug",
    "meter",
    "inverter",
    "battery",
    "hvac",
    "appliance",
    "server",
    "network",
    "cloud",
    "other",
)


@dataclass(frozen=True, slots=True)
class MetricType:
    """A metric type with its canonical unit and the factor that turns each accepted unit into it."""

    name: str
    unit: str
    conversions: dict[str, tuple[float, float]]  # unit -> (scale, offset): canonical = value*scale + offset
    counter: bool = False
    description: str = ""
    # Physical range in the canonical unit, inclusive; never wider than ±MAX_MAGNITUDE.
    minimum: float = -MAX_MAGNITUDE
    maximum: float = MAX_MAGNITUDE


def _linear(**scales: float) -> dict[str, tuple[float, float]]:
    return {unit: (scale, 0.0) for unit, scale in scales.items()}


# CONTRACT.md, "Vocabulary". Plugin manifests may declare more types at run time.
METRIC_TYPES: Final[dict[str, MetricType]] = {
    t.name: t
    for t in (
        # Ranges are generous physical bounds (a utility-scale site, not a home), so only readings no
        # real meter can produce are refused: ±1 GW, counters 0..1 TWh, ±1 MV, ±100 kA, ...
        MetricType(
            "power",
            "W",
            _linear(W=1.0, kW=1e3, MW=1e6),
            description="instantaneous draw",
            minimum=-1e9,
            maximum=1e9,
        ),
        MetricType(
            "energy",
            "kWh",
            _linear(Wh=1e-3, kWh=1.0, MWh=1e3),
            counter=True,
            description="cumulative imported-energy counter",
            minimum=0.0,
            maximum=1e9,
        ),
        MetricType(
            "energy_exported",
            "kWh",
            _linear(Wh=1e-3, kWh=1.0, MWh=1e3),
            counter=True,
            description="cumulative exported-energy counter",
            minimum=0.0,
            maximum=1e9,
        ),
        MetricType("voltage", "V", _linear(mV=1e-3, V=1.0), minimum=-1e6, maximum=1e6),
        MetricType("current", "A", _linear(mA=1e-3, A=1.0), minimum=-1e5, maximum=1e5),
        MetricType(
            "power_factor", "ratio", {"ratio": (1.0, 0.0), "%": (0.01, 0.0)}, minimum=0.0, maximum=1.0
        ),
        MetricType("frequency", "Hz", _linear(Hz=1.0), minimum=0.0, maximum=1000.0),
        MetricType(
            "temperature",
            "°C",
            {"°C": (1.0, 0.0), "°F": (5.0 / 9.0, -32.0 * 5.0 / 9.0)},
            minimum=-273.15,
            maximum=2000.0,
        ),
    )
}


@dataclass(slots=True)
class Metric:
    """One timestamped value of one device, already in its canonical unit once past the collector."""

    time: datetime
    device_id: str
    metric_type: str
    value: float
    unit: str
    tags: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one metric of a batch was refused; ``index`` is its position in the submitted batch."""

    index: int
    reason: str


@dataclass(slots=True)
class SubmitResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class CostsStored:
    """What the core stored of one cloud-cost report: upserted records, budgets, and what it refused.

    ``rejected`` holds one reason per refused record or budget (``records[3]: ...``); refused items are
    malformed and would be refused again, so the rest of the report counts as stored."""

    records: int = 0
    budgets: int = 0
    rejected: list[str] = field(default_factory=list)
