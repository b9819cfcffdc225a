"""Time buckets: the one place that floors instants to slots, hours and local days.

Everything that buckets time uses these (the writer's pending hours, the rollups, the bill engine, the
allocation of costs to devices), so a bucket means the same thing everywhere:

* slots and hours are aligned to a fixed UTC grid (origin 2000-01-01 00:00 UTC), which is also what
  PostgreSQL's ``date_bin(..., TIMESTAMPTZ '2000-01-01 00:00+00')`` gives;
* local days start at local midnight of a zone and last 23, 24 or 25 hours;
* ``zone_slot_minutes`` says how fine the grid must be for every local hour boundary of a zone to fall on
  it: 60 for whole-hour offsets, 30 for Asia/Kolkata (+05:30) or Australia/Adelaide (+09:30/+10:30),
  15 for Asia/Kathmandu (+05:45).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from math import gcd
from zoneinfo import ZoneInfo

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def floor_time(t: dt.datetime, minutes: int) -> dt.datetime:
    """``t`` floored to the UTC grid of ``minutes`` (a divisor of a day)."""
    step = minutes * 60
    seconds = int((t - EPOCH).total_seconds())
    return EPOCH + dt.timedelta(seconds=seconds - seconds % step)


def ceil_time(t: dt.datetime, minutes: int) -> dt.datetime:
    floored = floor_time(t, minutes)
    return floored if floored == t else floored + dt.timedelta(minutes=minutes)


def hour_floor(t: dt.datetime) -> dt.datetime:
    """The UTC hour containing ``t``."""
    return floor_time(t, 60)


def distinct_hours(times: Sequence[dt.datetime]) -> list[dt.datetime]:
    """The distinct UTC hours of ``times``, sorted (the writer's pending marks: on its hot path, so the
    common batch that stays within one or two hours costs two conversions, not one per row)."""
    lo, hi = int(min(times).timestamp()) // 3600, int(max(times).timestamp()) // 3600
    hours = {lo, hi} if hi - lo <= 1 else {int(t.timestamp()) // 3600 for t in times}
    return [dt.datetime.fromtimestamp(h * 3600, dt.UTC) for h in sorted(hours)]


def utc_day_floor(t: dt.datetime) -> dt.datetime:
    """The UTC day containing ``t`` (the metrics rollups' day)."""
    return floor_time(t, 24 * 60)


def local_day_start(t: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """Local midnight (as a UTC instant) of the local day containing ``t``."""
    local = t.astimezone(zone)
    return dt.datetime.combine(local.date(), dt.time(), tzinfo=zone).astimezone(dt.UTC)


def local_day_bounds(day: dt.date, zone: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local calendar day as UTC instants (23 or 25 hours long on DST changes)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def monthly_cycle_bounds(t: dt.datetime, day: int, zone: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) as UTC instants of the monthly cycle containing ``t`` that starts at local midnight
    of day ``day`` (1..28) of each month: a billing cycle, or the calendar month with ``day=1``."""
    local = t.astimezone(zone)
    year, month = local.year, local.month
    if local.day < day:
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    start = dt.datetime(year, month, day, tzinfo=zone)
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    end = dt.datetime(ny, nm, day, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def local_days(start: dt.datetime, end: dt.datetime, zone: dt.tzinfo) -> Decimal:
    """Calendar days between two instants on the local wall clock (a 23- or 25-hour day counts as 1)."""
    a = start.astimezone(zone).replace(tzinfo=None)
    b = end.astimezone(zone).replace(tzinfo=None)
    delta = b - a
    return Decimal(delta.days) + Decimal(delta.seconds) / Decimal(86400)


@lru_cache(maxsize=256)
def zone_slot_minutes(zone_name: str) -> int:
    """The coarsest grid (minutes, dividing 60) on which every local hour of ``zone_name`` starts.

    The UTC offsets the zone has used since 1970 (sampled twice a month, which catches every DST
    regime) decide: an offset of +05:45 needs a 15-minute grid.
    """
    zone = ZoneInfo(zone_name)
    minutes = 60
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    step = dt.timedelta(days=15)
    while moment < last and minutes > 1:
        offset = moment.astimezone(zone).utcoffset() or dt.timedelta()
        minutes = gcd(minutes, int(offset.total_seconds() // 60) % 60 or 60)
        moment += step
    return minutes
