"""The windows and periods rules are measured over: the current UTC hour, the local day, the billing cycle.

Days are local days of the active tariff's zone (the site's zone without a tariff); the cycle is the
active tariff's billing cycle (a calendar month of the site's zone without a tariff), so an energy or
cost rule and the bill agree on where a day or a cycle starts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg

from aetherlens.alerts.sources import CostSource, TariffView
from aetherlens.timebuckets import hour_floor, local_day_bounds, monthly_cycle_bounds


@dataclass(frozen=True, slots=True)
class Calendar:
    """What the windows depend on, read once per evaluation pass."""

    zone: dt.tzinfo
    tariff: TariffView | None

    def bounds(self, window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) of the window containing ``now`` (UTC instants)."""
        if window == "hour":
            start = hour_floor(now)
            return start, start + dt.timedelta(hours=1)
        if window == "day":
            return local_day_bounds(now.astimezone(self.zone).date(), self.zone)
        if window == "cycle":
            if self.tariff is not None:
                return self.tariff.cycle(now)
            return monthly_cycle_bounds(now, 1, self.zone)
        raise ValueError(f"unknown window {window!r}")


async def calendar(conn: asyncpg.Connection, costs: CostSource, site_zone: str, now: dt.datetime) -> Calendar:
    tariff = await costs.tariff(conn, now)
    return Calendar(zone=tariff.zone if tariff else ZoneInfo(site_zone), tariff=tariff)


def scale_to_end(value: float, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> float:
    """``value`` accrued over [start, now) extended at the same rate to the whole [start, end)."""
    elapsed = (now - start).total_seconds()
    if elapsed <= 0:
        return value
    return value * (end - start).total_seconds() / elapsed
