"""History from HA's recorder, so costs start from the user's past and gaps are filled.

On every connection (the first, and each reconnect after HA or the plugin was away), each tracked
entity is read from its watermark (or ``backfill_days`` back, whichever is later) up to the moment the
live subscription started, with the WebSocket command ``history/history_during_period``
(``significant_changes_only`` off, so every recorded state; no start-time state, which would be a
made-up reading at the window's start). Windows of ``chunk_hours`` keep each answer bounded; after each
window the readings are handed to the core and the watermarks saved, so an interrupted backfill resumes
where it stopped. Anything the live stream also delivers is dropped by the watermark.

The recorder keeps states for ``purge_keep_days`` (10 by default); HA's long-term statistics keep an
hourly row per sensor for ever. So for an energy counter new to this instance, the hours between
``backfill_days`` back and its oldest recorded state are read from ``recorder/statistics_during_period``
(the counter's ``state`` at the end of each hour, in kWh): costs then start from the user's past even
with ``backfill_days: 365``. Power has no such exact form (an hourly mean is not a reading), so it
starts with the recorder's states.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aetherlens.plugins.builtin.homeassistant.client import CommandFailed, Connection
from aetherlens.plugins.builtin.homeassistant.feed import Feed
from aetherlens.plugins.sdk import Emit

log = logging.getLogger(__name__)

STATISTICS_CHUNK = 31 * 86400.0  # seconds of hourly statistics asked for at once


@dataclass
class Progress:
    """For health: how far the current backfill got."""

    state: str = "pending"  # pending, running, done, failed
    windows_done: int = 0
    windows_total: int = 0
    states_read: int = 0
    readings: int = 0
    statistics_read: int = 0
    started: float | None = None
    finished: float | None = None
    oldest: float | None = None

    def as_dict(self) -> dict[str, Any]:
        iso: Callable[[float | None], str | None] = lambda t: (  # noqa: E731
            None if t is None else datetime.fromtimestamp(t, UTC).isoformat()
        )
        return {
            "state": self.state,
            "windows_done": self.windows_done,
            "windows_total": self.windows_total,
            "states_read": self.states_read,
            "readings": self.readings,
            "statistics_read": self.statistics_read,
            "from": iso(self.oldest),
            "started": iso(self.started),
            "finished": iso(self.finished),
        }


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    entity_ids: tuple[str, ...] = field(default=())


def plan(starts: dict[str, float], until: float, chunk_seconds: float) -> list[Window]:
    """Windows of ``chunk_seconds`` from the oldest start to ``until``; each lists the entities whose
    own start lies before the window's end."""
    if not starts:
        return []
    windows = []
    t = min(starts.values())
    while t < until:
        end = min(t + chunk_seconds, until)
        ids = tuple(sorted(e for e, s in starts.items() if s < end))
        if ids:
            windows.append(Window(t, end, ids))
        t = end
    return windows


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def run_backfill(
    conn: Connection,
    feed: Feed,
    emit: Emit,
    until: float,
    days: float,
    chunk_hours: float,
    progress: Progress,
    entity_ids: Sequence[str] | None = None,
) -> None:
    """Read the recorder for the tracked entities (or ``entity_ids``) up to ``until`` (epoch s)."""
    if days <= 0:
        progress.state = "done"
        return
    floor = until - days * 86400
    wanted = entity_ids if entity_ids is not None else sorted(feed.tracked)
    starts: dict[str, float] = {}
    for entity_id in wanted:
        mark = feed.mark(entity_id)
        start = max(floor, mark.time) if mark else floor
        if start < until:
            starts[entity_id] = start
    windows = plan(starts, until, chunk_hours * 3600)
    # Counters never handed over before: what the recorder's states do not reach comes from statistics.
    new_counters = {e for e in starts if feed.mark(e) is None and feed.tracked[e].counter}
    first_state: dict[str, float] = {}
    progress.state, progress.started, progress.finished = "running", time.time(), None
    progress.windows_done, progress.windows_total = 0, len(windows)
    progress.states_read = progress.readings = progress.statistics_read = 0
    progress.oldest = min(starts.values()) if starts else None
    began = time.monotonic()
    for window in windows:
        answer = await conn.command(
            "history/history_during_period",
            start_time=iso(window.start),
            end_time=iso(window.end),
            entity_ids=list(window.entity_ids),
            include_start_time_state=False,
            significant_changes_only=False,
            minimal_response=False,
            no_attributes=True,
        )
        rows: list[tuple[float, str, object]] = []
        for entity_id, states in (answer or {}).items():
            for item in states:
                when = item.get("lu")
                if isinstance(when, int | float) and when >= starts.get(entity_id, until):
                    rows.append((float(when), entity_id, item.get("s")))
        rows.sort()
        progress.states_read += len(rows)
        for when, entity_id, _ in rows:
            first_state.setdefault(entity_id, when)
        for when, entity_id, state in rows:
            if feed.offer(entity_id, state, when):
                progress.readings += 1
            if feed.full:
                await feed.flush(emit)
        await feed.flush(emit)  # saves the watermarks: a restart resumes after this window
        progress.windows_done += 1
    if new_counters:
        ends = {e: min(first_state.get(e, until), until) for e in new_counters}
        await backfill_statistics(conn, feed, emit, ends, floor, chunk_hours, progress)
    progress.state, progress.finished = "done", time.time()
    if windows:
        log.info(
            "backfill from the recorder: %d entities, %d window(s) since %s, %d states and %d hourly "
            "statistics read, %d readings emitted in %.1f s",
            len(starts),
            len(windows),
            iso(min(starts.values())),
            progress.states_read,
            progress.statistics_read,
            progress.readings,
            time.monotonic() - began,
        )


async def backfill_statistics(
    conn: Connection,
    feed: Feed,
    emit: Emit,
    ends: dict[str, float],
    floor: float,
    chunk_hours: float,
    progress: Progress,
) -> None:
    """Hourly counter readings from HA's long-term statistics, from ``floor`` up to (not including)
    each entity's oldest recorded state in ``ends``; in windows of at least a month (an hourly row per
    entity is small), each stored before the next."""
    chunk = max(chunk_hours * 3600, STATISTICS_CHUNK)
    t, last = floor, max(ends.values())
    while t < last:
        end = min(t + chunk, last)
        wanted = sorted(e for e, until in ends.items() if until > t)
        try:
            answer = await conn.command(
                "recorder/statistics_during_period",
                start_time=iso(t),
                end_time=iso(end),
                statistic_ids=wanted,
                period="hour",
                types=["state"],
                units={"energy": "kWh"},
            )
        except CommandFailed as exc:  # no statistics here: the states are history enough
            log.warning("long-term statistics not read: %s", exc)
            return
        for entity_id, rows in (answer or {}).items():
            for row in rows:
                hour_end, value = row.get("end"), row.get("state")
                if not isinstance(hour_end, int | float) or not isinstance(value, int | float):
                    continue
                when = float(hour_end) / 1000  # HA answers epoch milliseconds
                if floor < when < ends.get(entity_id, floor):
                    progress.statistics_read += 1
                    if feed.offer_past(entity_id, float(value), when):
                        progress.readings += 1
                if feed.full:
                    await feed.flush(emit)
        await feed.flush(emit)
        t = end
