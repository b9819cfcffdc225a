"""Metric reads: one series over a range (raw rows or the hourly/daily rollups) and current values.

Resolution ``auto`` picks the cheapest source that still answers the range at a useful density
(PERFORMANCE-NOTES.md: rolling up raw rows is slow already at 1M rows, so long ranges must read the rollups):

* span <= 2 days  -> ``raw``  (one-minute data: at most ~2,900 points per series), unless the range
  holds more than ``MAX_RAW_POINTS`` raw points: then ``hour``
* span <= 60 days -> ``hour`` (at most 1,440 points)
* longer          -> ``day``

A raw answer carries at most ``MAX_RAW_POINTS`` points: an explicit ``resolution=raw`` over a range that
holds more is refused with ``TooManyPointsError`` (400 ``too_many_points``, naming the cap), so one request
can never make the core read and serialise an unbounded number of rows.

Current values come from ``metrics_latest`` (kept by the writer in the COPY's transaction), never from a
scan of ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from aetherlens.db.queries import Queryable
from aetherlens.errors import ValidationError
from aetherlens.models import METRIC_TYPES

Resolution = Literal["raw", "hour", "day"]
ResolutionParam = Literal["auto", "raw", "hour", "day"]
Aggregate = Literal["avg", "min", "max", "sum", "last"]

AUTO_RAW_MAX: Final = timedelta(days=2)
# ~5 MB of JSON: a week of one-minute data fits, a sensor reporting every second fits for a day.
MAX_RAW_POINTS: Final = 100_000


class TooManyPointsError(ValidationError):
    code = "too_many_points"


AUTO_HOUR_MAX: Final = timedelta(days=60)

# Whitelists: the only identifiers ever placed into SQL text at run time.
_ROLLUP_TABLES: Final[dict[Resolution, tuple[str, str]]] = {
    "hour": ("metrics_hourly", "1 hour"),
    "day": ("metrics_daily", "1 day"),
}
_AGG_COLUMNS: Final[dict[Aggregate, str]] = {
    "avg": '"avg"',
    "min": '"min"',
    "max": '"max"',
    "sum": '"sum"',
    "last": '"last"',
}

# One row past the cap tells "over the cap" apart from "exactly at it" without counting the range.
_RAW_SQL: Final = f"""
SELECT time, value FROM metrics
WHERE device_id = $1 AND metric_type = $2 AND time >= $3 AND time < $4
ORDER BY time
LIMIT {MAX_RAW_POINTS + 1}
"""


def _rollup_sql(resolution: Resolution, agg: Aggregate) -> str:
    table, width = _ROLLUP_TABLES[resolution]
    column = _AGG_COLUMNS[agg]
    # A bucket belongs to the answer when it overlaps [from, to): it ends after `from` and starts before `to`.
    return (
        f"SELECT bucket, {column} FROM {table} "
        f"WHERE device_id = $1 AND metric_type = $2 "
        f"AND bucket > $3::timestamptz - interval '{width}' AND bucket < $4 "
        f"AND {column} IS NOT NULL ORDER BY bucket"
    )


_ROLLUP_SQL: Final[dict[tuple[Resolution, Aggregate], str]] = {
    (res, agg): _rollup_sql(res, agg) for res in _ROLLUP_TABLES for agg in _AGG_COLUMNS
}


@dataclass(frozen=True, slots=True)
class Series:
    device_id: str
    metric_type: str
    unit: str | None
    resolution: Resolution
    points: list[tuple[datetime, float]]


def check_range(start: datetime, end: datetime) -> None:
    """Both ends need an offset and ``from`` must lie before ``to``; the message says which rule broke."""
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"'{name}' needs a UTC offset (e.g. 2026-01-01T00:00:00+00:00)",
                details={"field": name, "value": value.isoformat()},
            )
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                f"'{name}' is outside the supported range of times", details={"field": name}
            ) from None
    if start >= end:
        raise ValidationError(
            "'from' must be earlier than 'to'",
            details={"from": start.isoformat(), "to": end.isoformat()},
        )


def choose_resolution(start: datetime, end: datetime, requested: ResolutionParam) -> Resolution:
    if requested != "auto":
        return requested
    span = end - start
    if span <= AUTO_RAW_MAX:
        return "raw"
    if span <= AUTO_HOUR_MAX:
        return "hour"
    return "day"


async def series_unit(db: Queryable, device_id: str, metric_type: str) -> str | None:
    """Canonical unit of a vocabulary type; for plugin-declared types, the unit the writer last stored."""
    known = METRIC_TYPES.get(metric_type)
    if known is not None:
        return known.unit
    unit: str | None = await db.fetchval(
        "SELECT unit FROM metrics_latest WHERE device_id = $1 AND metric_type = $2", device_id, metric_type
    )
    return unit


async def query_series(
    db: Queryable,
    device_id: str,
    metric_type: str,
    start: datetime,
    end: datetime,
    *,
    resolution: ResolutionParam = "auto",
    agg: Aggregate = "avg",
) -> Series:
    """Points of one series in ``[start, end)``.

    ``raw`` returns the stored points as they are (``agg`` does not apply: there is nothing to aggregate),
    at most ``MAX_RAW_POINTS`` of them (more: ``TooManyPointsError``; ``auto`` answers hourly instead);
    ``hour``/``day`` return one point per rollup bucket overlapping the range, stamped with the bucket's
    start and carrying the requested aggregate. Rollups cover what the rollup job has processed so far.
    """
    check_range(start, end)
    chosen = choose_resolution(start, end, resolution)
    sql = _RAW_SQL if chosen == "raw" else _ROLLUP_SQL[(chosen, agg)]
    rows = await db.fetch(sql, device_id, metric_type, start, end)
    if chosen == "raw" and len(rows) > MAX_RAW_POINTS:
        if resolution == "raw":
            raise TooManyPointsError(
                f"the range holds more than {MAX_RAW_POINTS} raw points, the most one answer carries; "
                "narrow the range or ask for resolution=hour or day",
                details={"max_points": MAX_RAW_POINTS, "resolution": "raw"},
            )
        chosen = "hour"
        rows = await db.fetch(_ROLLUP_SQL[(chosen, agg)], device_id, metric_type, start, end)
    return Series(
        device_id=device_id,
        metric_type=metric_type,
        unit=await series_unit(db, device_id, metric_type),
        resolution=chosen,
        points=[(row[0], row[1]) for row in rows],
    )


@dataclass(frozen=True, slots=True)
class CurrentValue:
    metric_type: str
    value: float
    unit: str
    time: datetime


async def current_values(db: Queryable) -> dict[str, list[CurrentValue]]:
    """Latest value of every series, grouped by device (device ids and metric types in sorted order)."""
    rows = await db.fetch(
        "SELECT device_id, metric_type, value, unit, time FROM metrics_latest ORDER BY device_id, metric_type"
    )
    grouped: dict[str, list[CurrentValue]] = {}
    for device_id, metric_type, value, unit, time in rows:
        grouped.setdefault(device_id, []).append(CurrentValue(metric_type, value, unit, time))
    return grouped


async def last_counter_readings(db: Queryable, source: str) -> list[tuple[str, str, float, float]]:
    """Latest stored energy counters of the devices ``source`` registered: (device, type, value, epoch s).
    The demo resumes its simulated meters from these."""
    rows = await db.fetch(
        """SELECT l.device_id, l.metric_type, l.value, extract(epoch FROM l.time)::float8
           FROM metrics_latest AS l JOIN devices AS d ON d.id = l.device_id
           WHERE d.source = $1 AND l.metric_type IN ('energy', 'energy_exported')""",
        source,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]
