"""What changed in the hourly cost history (``service.changes``, GET /costs/changes): late data written
through the real Writer, identical re-pricing, tariff edits and activations, removed rows; and the
billing bounds ``/costs/summary`` names (local zone, across DST)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aetherlens.config import Settings
from aetherlens.costs import service
from aetherlens.costs.job import CostJob
from aetherlens.db.queries import costs as cost_rows
from aetherlens.db.writer import Writer
from aetherlens.errors import ValidationError

from .data import counter, write
from .helpers import utc
from .test_history import FAST, FLAT_UTC

ROOT = Path(__file__).resolve().parents[3]


def _rows(readings: list[tuple[dt.datetime, str, str, float]]) -> list[tuple[Any, ...]]:
    return [(t, d, m, v, "kWh", None) for t, d, m, v in readings]


def _by_series(answer: dict[str, Any]) -> dict[str | None, str]:
    series = [c["device_id"] for c in answer["changes"]]
    assert len(series) == len(set(series)), answer  # one entry per series
    return {c["device_id"]: c["from"] for c in answer["changes"]}


async def test_late_data_reports_exactly_the_repriced_series_from_their_earliest_hour(
    cost_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(cost_dsn)
    try:
        await service.create_tariff(conn, FLAT_UTC)
        job = CostJob()
        async with Writer(cost_dsn, FAST, tmp_path / "spool") as writer:
            await writer.submit(_rows(counter("a", utc(2026, 4, 1), 48, 1.0)))
            await writer.submit(_rows([(utc(2026, 4, 2, 10), "c", "energy", 100.0)]))
            await job.run_once(conn, now=utc(2026, 4, 3))
            full = await service.changes(conn, 0)
            # since=0: every series from its first hour (c has one reading: no cost yet).
            assert _by_series(full) == {None: "2026-04-01T00:00:00+00:00", "a": "2026-04-01T00:00:00+00:00"}
            seen = full["revision"]
            assert seen > 0
            # Eight hours late: b's readings from 14:00 to 16:00, and c's closing reading at 11:00.
            await writer.submit(_rows(counter("b", utc(2026, 4, 2, 14), 2, 2.0)))
            await writer.submit(_rows([(utc(2026, 4, 2, 11), "c", "energy", 105.0)]))
        await job.run_once(conn, now=utc(2026, 4, 3, 0, 10))
        late = await service.changes(conn, seen)
        # a's hours were re-priced (the open cycle is) to the same numbers: not a change.
        assert _by_series(late) == {
            None: "2026-04-02T10:00:00+00:00",
            "b": "2026-04-02T14:00:00+00:00",
            "c": "2026-04-02T10:00:00+00:00",  # the interval the late reading closed
        }
        assert late["revision"] > seen
        # Asking again with the new mark: nothing, and the mark stays.
        assert await service.changes(conn, late["revision"]) == {"revision": late["revision"], "changes": []}
    finally:
        await conn.close()


async def test_identical_repricing_reports_nothing(conn: asyncpg.Connection) -> None:
    tariff_id = await service.create_tariff(conn, FLAT_UTC)
    await write(conn, counter("a", utc(2026, 4, 1), 30, 1.0) + counter("b", utc(2026, 4, 1, 5), 10, 0.5))
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    mark = (await service.changes(conn, 0))["revision"]
    # The open cycle is re-priced on every run; and a rename changes the pricing signature, so the job
    # re-prices everything: the numbers are the same, so nothing is reported.
    again = await CostJob().run_once(conn, now=utc(2026, 4, 2, 13))
    assert again.rows > 0
    await service.update_tariff(conn, tariff_id, {**FLAT_UTC, "name": "flat renamed"})
    renamed = await CostJob().run_once(conn, now=utc(2026, 4, 2, 14))
    assert renamed.repriced and renamed.rows > 0
    assert await service.changes(conn, mark) == {"revision": mark, "changes": []}


async def test_a_tariff_edit_reprices_and_reports_every_changed_series(conn: asyncpg.Connection) -> None:
    tariff_id = await service.create_tariff(conn, FLAT_UTC)
    await write(conn, counter("a", utc(2026, 4, 1), 30, 1.0) + counter("b", utc(2026, 4, 1, 5), 10, 0.5))
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    mark = (await service.changes(conn, 0))["revision"]
    await service.update_tariff(conn, tariff_id, {**FLAT_UTC, "periods": {"flat": {"price": "0.20"}}})
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    edited = await service.changes(conn, mark)
    assert _by_series(edited) == {
        None: "2026-04-01T00:00:00+00:00",
        "a": "2026-04-01T00:00:00+00:00",
        "b": "2026-04-01T05:00:00+00:00",
    }
    hourly = await service.history(conn, "a", "2026-04-01", "2026-04-02", "hour")
    assert hourly["points"][0]["cost"] == 0.2


async def test_activating_another_tariff_lists_every_series_from_its_first_hour(
    conn: asyncpg.Connection,
) -> None:
    first = await service.create_tariff(conn, FLAT_UTC)
    other = await service.create_tariff(conn, {**FLAT_UTC, "name": "other"})
    await write(conn, counter("a", utc(2026, 4, 1), 30, 1.0) + counter("b", utc(2026, 4, 1, 5), 10, 0.5))
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))  # prices the active one (the first)
    await service.activate_tariff(conn, other)
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    mark = (await service.changes(conn, 0))["revision"]
    # Back to the first tariff: its rows were priced before, unchanged, yet they are now what the history
    # serves, so every series changed from its first hour.
    await service.activate_tariff(conn, first)
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    back = await service.changes(conn, mark)
    assert back["revision"] > mark
    assert _by_series(back) == {
        None: "2026-04-01T00:00:00+00:00",
        "a": "2026-04-01T00:00:00+00:00",
        "b": "2026-04-01T05:00:00+00:00",
    }
    # Deleting the active tariff: no costs known, nothing to report.
    await service.delete_tariff(conn, first)
    assert await service.changes(conn, 0) == {"revision": 0, "changes": []}


async def test_a_row_that_disappears_is_a_change_of_its_hour(conn: asyncpg.Connection) -> None:
    tariff_id = await service.create_tariff(conn, FLAT_UTC)
    await write(conn, counter("a", utc(2026, 4, 1), 30, 1.0) + counter("b", utc(2026, 4, 1, 5), 10, 0.5))
    await CostJob().run_once(conn, now=utc(2026, 4, 2, 12))
    mark = (await service.changes(conn, 0))["revision"]
    # b's cost rows from 08:00 are gone (as when its readings are deleted and the hours re-derived).
    await conn.execute(
        "DELETE FROM cost_calculations WHERE device_id = 'b' AND time >= $1", utc(2026, 4, 1, 8)
    )
    await cost_rows.refresh_cost_rollups(conn, tariff_id, [(utc(2026, 4, 1), utc(2026, 4, 2))], [], "UTC")
    gone = await service.changes(conn, mark)
    assert _by_series(gone) == {None: "2026-04-01T08:00:00+00:00", "b": "2026-04-01T08:00:00+00:00"}
    # A full listing names only what is there to read: b from its first remaining hour.
    assert _by_series(await service.changes(conn, 0))["b"] == "2026-04-01T05:00:00+00:00"


async def test_changes_without_a_tariff_and_bad_since(conn: asyncpg.Connection) -> None:
    assert await service.changes(conn, 0) == {"revision": 0, "changes": []}
    with pytest.raises(ValidationError, match="since must be a revision"):
        await service.changes(conn, -1)


def test_the_activation_trigger_takes_the_rollup_lock() -> None:
    """Revisions commit in the order they are drawn only if every writer draws them under one lock."""
    text = (ROOT / "migrations" / "033_cost_history_revision.sql").read_text(encoding="utf-8")
    assert f"pg_advisory_xact_lock({cost_rows.COST_ROLLUP_LOCK_KEY})" in text


NY_CYCLE_15: dict[str, Any] = {
    "name": "ny",
    "timezone": "America/New_York",
    "effective_from": "2026-01-01",
    "billing_cycle_day": 15,
    "periods": {"flat": {"price": "0.10"}},
}


async def test_summary_names_the_day_and_billing_cycles_in_the_tariff_zone(conn: asyncpg.Connection) -> None:
    settings = Settings(site={"timezone": "UTC", "currency": "USD"})
    empty = await service.summary(conn, settings, now=utc(2026, 3, 20, 12))
    assert {k: empty[k] for k in ("tariff_id", "day_start", "cycle_start", "cycle_end")} == dict.fromkeys(
        ("tariff_id", "day_start", "cycle_start", "cycle_end")
    )
    assert empty["previous_cycle_start"] is None
    tariff_id = await service.create_tariff(conn, NY_CYCLE_15)
    # 2026-03-20 12:00 UTC = 08:00 EDT; the cycle from 15 March (EDT since the 8th) to 15 April, the
    # previous one from 15 February (EST): its start is at -05:00.
    got = await service.summary(conn, settings, now=utc(2026, 3, 20, 12))
    assert got["tariff_id"] == tariff_id
    assert got["day_start"] == "2026-03-20T00:00:00-04:00"
    assert got["cycle_start"] == "2026-03-15T00:00:00-04:00"
    assert got["cycle_end"] == "2026-04-15T00:00:00-04:00"
    assert got["previous_cycle_start"] == "2026-02-15T00:00:00-05:00"
    # Before the 15th: the cycle that began in February and ends across the DST change.
    early = await service.summary(conn, settings, now=utc(2026, 3, 10, 3, 30))  # 23:30 EDT on the 9th
    assert early["day_start"] == "2026-03-09T00:00:00-04:00"
    assert early["cycle_start"] == "2026-02-15T00:00:00-05:00"
    assert early["cycle_end"] == "2026-03-15T00:00:00-04:00"
    assert early["previous_cycle_start"] == "2026-01-15T00:00:00-05:00"
    span = dt.datetime.fromisoformat(early["cycle_end"]) - dt.datetime.fromisoformat(early["cycle_start"])
    assert span == dt.timedelta(days=28, hours=-1)  # 23-hour day on 8 March
