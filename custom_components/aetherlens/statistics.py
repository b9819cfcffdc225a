"""Long-term statistics: the core's hourly cost history as external statistics for the Energy dashboard.

Per device `aetherlens:energy_<device>` (kWh) and `aetherlens:cost_<device>` (currency), and the site's
`aetherlens:cost_site` (currency), source `aetherlens`, one row per UTC hour with the hour's value as
`state` and a running `sum` (CONTRACT.md "Home Assistant").

How it stays exact (docs/API.md "Cost history changes"): the core numbers every change of its hourly
history with a revision. Each sync asks `GET /costs/changes?since=<revision stored last time>` (0 on the
first run: every series from its first hour, i.e. the backfill of everything from before the integration
was added) and, for each changed series, re-reads `/costs/history` from the earliest changed hour in
31-day chunks and rewrites that hour and every later one: the recorder overwrites a row with the same
`start`, but never recomputes later sums itself. The sum continues from the row just before the changed
hour. Hours the history no longer holds (and gaps) are written as 0 with the sum unchanged, so no stale
row is left between rewritten ones. The revision is stored only once every row of a sync is committed,
so an interrupted sync is simply done again.

The first sync runs as a background task after setup (Home Assistant's start does not wait for a
backfill), then one every `SYNC_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

# StatisticMeanType (which replaced has_mean) exists from HA 2025.4, hacs.json's minimum.
from homeassistant.components.recorder.models import StatisticData, StatisticMeanType, StatisticMetaData
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    statistics_during_period,
)
from homeassistant.const import UnitOfEnergy
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.storage import Store

from .api import AetherLensAuthError, AetherLensClient, AetherLensError, CostPoint
from .const import CONF_STATISTICS, DEFAULT_STATISTICS, DOMAIN, LOGGER

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

SOURCE: Final = DOMAIN
SITE: Final = "site"  # the site's slug: a device whose id slugs to it gets the hash suffix
CHUNK: Final = timedelta(days=31)
SYNC_INTERVAL: Final = timedelta(minutes=5)
STORE_VERSION: Final = 1
# Where to look for the row just before a changed hour: near first, then further (a series with a gap).
SUM_LOOKBACK: Final = (timedelta(days=2), timedelta(days=31), timedelta(days=366), None)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
HOUR: Final = timedelta(hours=1)
OPT_EXCLUDED_DEVICES: Final = "excluded_devices"  # the options flow's list (coordinator.py)
DATA_IMPORTERS: Final = f"{DOMAIN}_statistics"  # hass.data: entry id -> its StatisticsImporter


def supports_unit_class() -> bool:
    """Whether this HA's StatisticMetaData has `unit_class` (2025.11+): before, the key breaks the
    recorder's write; from 2026.x the Energy dashboard's picker needs it. Patched in tests."""
    return "unit_class" in StatisticMetaData.__annotations__


# ------------------------------------------------------------------------------------ statistic ids


def slug(device_id: str) -> str:
    """Lower-cased, every run of characters outside [a-z0-9] one `_`, trimmed (CONTRACT.md)."""
    return re.sub(r"[^a-z0-9]+", "_", device_id.lower()).strip("_")


def _suffixed(device_id: str, base: str, digits: int) -> str:
    digest = hashlib.sha1(device_id.encode(), usedforsecurity=False).hexdigest()[:digits]
    return f"{base}_{digest}" if base else digest


def assign_slugs(device_ids: Iterable[str], known: dict[str, str]) -> dict[str, str]:
    """Slugs for every device: those already assigned (stored) stay; new ones in id order, and one that
    would collide (with an assigned slug, or the site's) gets `_` + 6 hex digits of its id's sha1."""
    out = dict(known)
    taken = {SITE, *out.values()}
    for device_id in sorted(set(device_ids) - out.keys()):
        candidate = slug(device_id)
        digits = 6
        while not candidate or candidate in taken:
            # Only a second collision (of hashes) reaches digits > 6.
            candidate = _suffixed(device_id, slug(device_id), digits)
            digits += 2
        out[device_id] = candidate
        taken.add(candidate)
    return out


def energy_statistic_id(device_slug: str) -> str:
    return f"{DOMAIN}:energy_{device_slug}"


def cost_statistic_id(device_slug: str | None) -> str:
    return f"{DOMAIN}:cost_{device_slug or SITE}"


# ------------------------------------------------------------------------------------------- metadata


def metadata(statistic_id: str, name: str, unit: str | None, unit_class: str | None) -> StatisticMetaData:
    """Metadata both the oldest and newest supported HA accept (DESIGN.md "Home Assistant facts")."""
    meta: dict[str, Any] = {
        "has_sum": True,
        "mean_type": StatisticMeanType.NONE,
        "name": name,
        "source": SOURCE,
        "statistic_id": statistic_id,
        "unit_of_measurement": unit,
    }
    if supports_unit_class():
        meta["unit_class"] = unit_class
    return meta  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Statistic:
    """One external statistic fed from one value of a series' history points."""

    meta: StatisticMetaData
    value: Callable[[CostPoint], float | None]


def _kwh(point: CostPoint) -> float | None:
    return point.kwh


def _cost(point: CostPoint) -> float | None:
    return point.cost


# ----------------------------------------------------------------------------------------------- rows


def _hours(start: datetime, stop: datetime) -> Iterator[datetime]:
    """Whole UTC hours in [start, stop)."""
    hour = start
    while hour < stop:
        yield hour
        hour += HOUR


def _hour_of(point: CostPoint) -> datetime:
    # Points carry the tariff zone's offset: in a half-hour zone a UTC hour reads 05:30+05:30, and the
    # recorder wants hour-aligned starts.
    return point.time.astimezone(UTC)


class RunningSum:
    """Rows of one statistic from a start hour: gaps as 0, the sum exact (decimal) across chunks."""

    def __init__(self, start: datetime, base: float) -> None:
        self.next_hour = start
        self._sum = Decimal(repr(base))

    def rows(self, values: Iterable[tuple[datetime, float | None]]) -> list[StatisticData]:
        out: list[StatisticData] = []
        for hour, value in values:
            if hour < self.next_hour:
                continue  # a chunk's edge seen twice
            out.extend(self.fill(hour))
            self._sum += Decimal(repr(value or 0.0))
            out.append({"start": hour, "state": value or 0.0, "sum": float(self._sum)})
            self.next_hour = hour + HOUR
        return out

    def fill(self, until: datetime) -> list[StatisticData]:
        """Zero rows for the hours before `until` not written yet."""
        rows: list[StatisticData] = [
            {"start": hour, "state": 0.0, "sum": float(self._sum)} for hour in _hours(self.next_hour, until)
        ]
        self.next_hour = max(self.next_hour, until)
        return rows


# ----------------------------------------------------------------------------------------- importer


def _floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _row_start(row: Any) -> datetime:
    start = row["start"]
    return start if isinstance(start, datetime) else datetime.fromtimestamp(start, UTC)


class StatisticsImporter:
    """Keeps the external statistics of one config entry equal to the core's hourly cost history."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any], client: AetherLensClient) -> None:
        self.hass = hass
        self.entry = entry
        self.client = client
        self.store: Store[dict[str, Any]] = Store(
            hass, STORE_VERSION, f"{DOMAIN}.statistics.{entry.entry_id}"
        )
        self._lock = asyncio.Lock()
        self._failing = False
        self.revision = 0
        self.slugs: dict[str, str] = {}
        self._loaded = False
        self.completed = 0  # syncs that finished with every row written (diagnostics, tests)

    async def _load(self) -> None:
        if not self._loaded:
            stored = await self.store.async_load() or {}
            self.revision = int(stored.get("revision", 0))
            self.slugs = {str(k): str(v) for k, v in (stored.get("slugs") or {}).items()}
            self._loaded = True

    async def async_sync(self, now: datetime | None = None) -> None:
        """One sync; skipped while another runs. Failures are logged (once) and retried next time."""
        if self._lock.locked():
            return
        async with self._lock:
            try:
                await self._sync()
            except AetherLensAuthError as err:
                self._log_failure(f"the core refused the API key: {err}")
            except AetherLensError as err:
                self._log_failure(str(err))
            else:
                if self._failing:
                    LOGGER.info("long-term statistics are up to date again")
                self._failing = False
                self.completed += 1

    def _log_failure(self, reason: str) -> None:
        if not self._failing:
            LOGGER.warning("cannot update the long-term statistics (will retry): %s", reason)
        self._failing = True

    async def _sync(self) -> None:
        await self._load()
        answer = await self.client.cost_changes(self.revision)
        if not answer.changes:
            await self._save(answer.revision)
            return
        info = await self.client.info()
        names = {d.id: d.name for d in await self.client.devices()}
        excluded = set(self.entry.options.get(OPT_EXCLUDED_DEVICES, ()))
        devices = [c.device_id for c in answer.changes if c.device_id is not None]
        self.slugs = assign_slugs(devices, self.slugs)
        full: dict[str | None, datetime] | None = None
        end = _floor_hour(datetime.now(UTC)) + HOUR  # the open hour too: it is rewritten as it fills
        for change in answer.changes:
            if change.device_id in excluded:
                continue
            statistics = self._statistics(change.device_id, names, info.currency)
            start = _floor_hour(change.start)
            if self.revision and not await self._has_rows(statistics):
                # Nothing stored for this series (statistics were off, or the database is new): the
                # whole series, not only what changed since the stored revision.
                if full is None:
                    full = {c.device_id: c.start for c in (await self.client.cost_changes(0)).changes}
                start = _floor_hour(full.get(change.device_id, change.start))
            await self._rewrite(change.device_id, statistics, start, end)
        # Every row written above is committed before the revision that covers it is stored.
        await get_instance(self.hass).async_block_till_done()
        await self._save(answer.revision)

    async def _save(self, revision: int) -> None:
        self.revision = revision
        await self.store.async_save({"revision": revision, "slugs": self.slugs})

    def _statistics(self, device_id: str | None, names: dict[str, str], currency: str) -> list[Statistic]:
        if device_id is None:
            return [
                Statistic(metadata(cost_statistic_id(None), "AetherLens site cost", currency, None), _cost)
            ]
        device_slug = self.slugs[device_id]
        name = names.get(device_id, device_id)
        return [
            Statistic(
                metadata(
                    energy_statistic_id(device_slug),
                    f"{name} energy",
                    UnitOfEnergy.KILO_WATT_HOUR,
                    "energy",
                ),
                _kwh,
            ),
            Statistic(metadata(cost_statistic_id(device_slug), f"{name} cost", currency, None), _cost),
        ]

    async def _has_rows(self, statistics: list[Statistic]) -> bool:
        for statistic in statistics:
            if await self._last_row(statistic.meta["statistic_id"]) is None:
                return False
        return True

    async def _last_row(self, statistic_id: str) -> Any:
        rows = await get_instance(self.hass).async_add_executor_job(
            get_last_statistics, self.hass, 1, statistic_id, False, {"sum"}
        )
        found = rows.get(statistic_id)
        return found[0] if found else None

    async def _sum_before(self, statistic_id: str, start: datetime) -> float:
        """The sum of the last row before `start` (0 when there is none)."""

        def read() -> float:
            for lookback in SUM_LOOKBACK:
                begin = start - lookback if lookback is not None else EPOCH
                rows = statistics_during_period(
                    self.hass, begin, start, {statistic_id}, "hour", None, {"sum"}
                ).get(statistic_id)
                if rows:
                    return float(rows[-1].get("sum") or 0.0)
            return 0.0

        return await get_instance(self.hass).async_add_executor_job(read)

    async def _rewrite(
        self, device_id: str | None, statistics: list[Statistic], start: datetime, end: datetime
    ) -> None:
        """Write every hour from `start` on (and every later row already stored) with continued sums."""
        sums: list[RunningSum] = []
        stored_until: list[datetime | None] = []
        for statistic in statistics:
            statistic_id = statistic.meta["statistic_id"]
            last = await self._last_row(statistic_id)
            stored_until.append(_row_start(last) if last is not None else None)
            sums.append(RunningSum(start, await self._sum_before(statistic_id, start)))
        cursor = start
        while cursor < end:
            stop = min(cursor + CHUNK, end)
            points = await self.client.cost_history(cursor, stop, device_id=device_id, resolution="hour")
            hours = [(_hour_of(p), p) for p in points]
            for statistic, running in zip(statistics, sums, strict=True):
                rows = running.rows((hour, statistic.value(point)) for hour, point in hours)
                if rows:
                    async_add_external_statistics(self.hass, statistic.meta, rows)
            cursor = stop
        # Rows stored earlier past the last point (hours the history no longer holds): sum unchanged.
        for statistic, running, last_start in zip(statistics, sums, stored_until, strict=True):
            if last_start is not None and last_start >= running.next_hour:
                rows = running.fill(last_start + HOUR)
                async_add_external_statistics(self.hass, statistic.meta, rows)


async def async_setup_statistics(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Start the statistics of a loaded entry (`entry.runtime_data.client`): the first sync (backfill)
    in the background, then one every SYNC_INTERVAL; both end with the entry's unload."""
    if not entry.options.get(CONF_STATISTICS, DEFAULT_STATISTICS):
        return
    importer = StatisticsImporter(hass, entry, entry.runtime_data.client)
    running = hass.data.setdefault(DATA_IMPORTERS, {})
    running[entry.entry_id] = importer

    @callback
    def _forget() -> None:
        running.pop(entry.entry_id, None)

    entry.async_on_unload(_forget)

    @callback
    def _tick(now: datetime) -> None:
        entry.async_create_background_task(hass, importer.async_sync(now), f"{DOMAIN} statistics sync")

    entry.async_create_background_task(hass, importer.async_sync(), f"{DOMAIN} statistics backfill")
    entry.async_on_unload(async_track_time_interval(hass, _tick, SYNC_INTERVAL))
