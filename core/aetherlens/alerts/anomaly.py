"""Anomaly against a learned baseline: the same hour of the week, median and MAD (robust statistics).

The baseline of an hour of the week is the hourly averages (``metrics_hourly``) of the same local hour
on up to ``WEEKS`` earlier weeks; its centre is their median and its spread 1.4826 x their median
absolute deviation (MAD: a few odd weeks do not move it, unlike a mean and standard deviation). The
spread has a floor — 5 % of the centre, and 5 % of the series' typical magnitude — so a very regular
series does not turn every small wobble into an anomaly.

The current value is the mean of this hour's raw readings so far; its score is its distance from the
centre in spreads. The rule fires when the score reaches ``7 - sensitivity / 2`` (sensitivity 1..10:
6.5 … 2 spreads) and resolves below 70 % of that (the hysteresis band). No verdict before the series
has ``min_history_days`` of history, nor in an hour with no reading yet.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aetherlens.db.queries import Queryable
from aetherlens.db.queries.metrics import query_series
from aetherlens.timebuckets import hour_floor

WEEKS: Final = 8
MAD_SCALE: Final = 1.4826  # makes the MAD estimate a standard deviation for normal noise
RELATIVE_FLOOR: Final = 0.05
RESOLVE_FRACTION: Final = 0.7


def limit_for(sensitivity: int) -> float:
    return 7.0 - sensitivity / 2


@dataclass(frozen=True, slots=True)
class Baseline:
    centre: float
    spread: float
    samples: int


def same_hour_of_week(now: dt.datetime, zone: dt.tzinfo, weeks: int) -> list[dt.datetime]:
    """UTC starts of the local hour of ``now`` on each of the ``weeks`` previous weeks (wall-clock
    arithmetic: across a DST change it is still the same local hour)."""
    local = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    return [hour_floor((local - dt.timedelta(weeks=k)).astimezone(dt.UTC)) for k in range(1, weeks + 1)]


def baseline(samples: Sequence[float], typical: float) -> Baseline | None:
    if not samples:
        return None
    centre = statistics.median(samples)
    mad = statistics.median(abs(s - centre) for s in samples)
    spread = max(MAD_SCALE * mad, RELATIVE_FLOOR * abs(centre), RELATIVE_FLOOR * typical, 1e-9)
    return Baseline(centre=centre, spread=spread, samples=len(samples))


def score(value: float, base: Baseline) -> float:
    return abs(value - base.centre) / base.spread


class BaselineCache:
    """One baseline per (rule, series, hour): the history does not change within the hour, so each
    rule reads its rollups once an hour, not on every pass."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, dt.datetime], Baseline | None] = {}

    async def get(
        self,
        db: Queryable,
        rule_id: int,
        device_id: str,
        metric_type: str,
        now: dt.datetime,
        zone: dt.tzinfo,
        min_history_days: int,
    ) -> Baseline | None:
        hour = hour_floor(now)
        key = (rule_id, hour)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) > 10_000:
            self._cache.clear()
        days = max(min_history_days, WEEKS * 7) + 1
        series = await query_series(
            db, device_id, metric_type, hour - dt.timedelta(days=days), hour, resolution="hour", agg="avg"
        )
        found: Baseline | None = None
        points = {t: v for t, v in series.points if v is not None}
        if points and min(points) <= now - dt.timedelta(days=min_history_days):
            typical = statistics.median(abs(v) for v in points.values())
            wanted = [points[t] for t in same_hour_of_week(now, zone, WEEKS) if t in points]
            found = baseline(wanted, typical)
        self._cache[key] = found
        return found


async def current_mean(db: Queryable, device_id: str, metric_type: str, now: dt.datetime) -> float | None:
    """Mean of this hour's raw readings up to ``now``, or None when there is none yet."""
    start = hour_floor(now)
    series = await query_series(
        db, device_id, metric_type, start, now + dt.timedelta(microseconds=1), resolution="raw"
    )
    values = [v for _, v in series.points if v is not None]
    return sum(values) / len(values) if values else None
