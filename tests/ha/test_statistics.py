"""Long-term statistics written into the real (test) recorder from the loopback core: backfill in
chunks, continuation across restarts, rewrite after re-pricing and removed hours, the statistic id rule,
metadata for old and new HA (unit_class), and statistics off.

The loopback core's `/costs/changes` and `/costs/history` answer from `HistoryModel`: hourly points per
device, the site as their sum, and a revision bumped on every real change, in the shapes and with the
semantics of the real core (docs/API.md "Cost history changes"; the end-to-end test runs the real one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from homeassistant.components.recorder import get_instance
from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import get_metadata, statistics_during_period
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done

from custom_components.aetherlens import statistics as stats
from custom_components.aetherlens.api import AetherLensClient, CostChanges
from custom_components.aetherlens.const import CONF_STATISTICS, DOMAIN

from .conftest import CoreServer, load_fixture

T0 = datetime(2026, 9, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HistoryModel:
    """Hourly cost history of a core: {device: {hour: (kwh, cost)}} and its change log."""

    def __init__(self, zone: str = "UTC") -> None:
        self.points: dict[str, dict[datetime, tuple[float, float]]] = {}
        self.log: list[tuple[int, str, datetime]] = []
        self.revision = 0
        self.zone = ZoneInfo(zone)

    def set(self, device: str, hour: datetime, kwh: float, cost: float) -> None:
        series = self.points.setdefault(device, {})
        if series.get(hour) != (kwh, cost):  # identical re-pricing is no change
            series[hour] = (kwh, cost)
            self._changed(device, hour)

    def remove(self, device: str, hour: datetime) -> None:
        del self.points[device][hour]
        self._changed(device, hour)

    def _changed(self, device: str, hour: datetime) -> None:
        self.revision += 1
        self.log.append((self.revision, device, hour))

    def changes(self, since: int) -> dict[str, Any]:
        first: dict[str, datetime] = {}
        if since == 0:
            first = {d: min(p) for d, p in self.points.items() if p}
        else:
            for revision, device, hour in self.log:
                if revision > since:
                    first[device] = min(hour, first.get(device, hour))
        out: list[dict[str, Any]] = [
            {"device_id": d, "from": t.isoformat()} for d, t in sorted(first.items())
        ]
        if first:
            out.insert(0, {"device_id": None, "from": min(first.values()).isoformat()})
        return {"revision": self.revision, "changes": out}

    def history(self, device: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
        merged: dict[datetime, list[float]] = {}
        for d, series in self.points.items():
            if device is not None and d != device:
                continue
            for hour, (kwh, cost) in series.items():
                if start <= hour < end:
                    total = merged.setdefault(hour, [0.0, 0.0])
                    total[0] += kwh
                    total[1] += cost
        return [
            {"time": h.astimezone(self.zone).isoformat(), "kwh": v[0], "cost": v[1], "carbon_kg": 0.0}
            for h, v in sorted(merged.items())
        ]

    def serve(self, core: CoreServer) -> None:
        def changes(request: web.Request) -> tuple[int, Any]:
            return 200, self.changes(int(request.query["since"]))

        def history(request: web.Request) -> tuple[int, Any]:
            assert request.query["resolution"] == "hour"
            start = datetime.fromisoformat(request.query["from"])
            end = datetime.fromisoformat(request.query["to"])
            assert end - start <= timedelta(days=31), "history is read in chunks"
            return 200, {"points": self.history(request.query.get("device_id"), start, end)}

        core.answers["/costs/changes"] = changes
        core.answers["/costs/history"] = history


def fill(
    model: HistoryModel, device: str, start: datetime, hours: int, value: Callable[[int], float]
) -> None:
    for i in range(hours):
        kwh = value(i)
        model.set(device, start + i * HOUR, kwh, round(kwh * 0.25, 6))


async def read(hass: HomeAssistant, *ids: str) -> dict[str, list[dict[str, Any]]]:
    rows = await get_instance(hass).async_add_executor_job(
        statistics_during_period, hass, EPOCH, None, set(ids), "hour", None, {"state", "sum"}
    )
    return {
        sid: [
            {"start": datetime.fromtimestamp(r["start"], UTC), "state": r["state"], "sum": r["sum"]}
            for r in rows.get(sid, [])
        ]
        for sid in ids
    }


def expected(model: HistoryModel, device: str | None, index: int) -> list[tuple[datetime, float, float]]:
    """(hour, state, sum) of every hour from the series' first to its last point, gaps as 0."""
    series: dict[datetime, float] = {}
    for d, points in model.points.items():
        if device is None or d == device:
            for hour, values in points.items():
                series[hour] = series.get(hour, 0.0) + values[index]
    out, running, hour = [], 0.0, min(series)
    while hour <= max(series):
        running += series.get(hour, 0.0)
        out.append((hour, series.get(hour, 0.0), running))
        hour += HOUR
    return out


def assert_rows(rows: list[dict[str, Any]], want: list[tuple[datetime, float, float]]) -> None:
    assert [r["start"] for r in rows] == [w[0] for w in want]
    assert [r["state"] for r in rows] == pytest.approx([w[1] for w in want])
    assert [r["sum"] for r in rows] == pytest.approx([w[2] for w in want])


@pytest.fixture
def model(core: CoreServer) -> HistoryModel:
    history = HistoryModel()
    history.serve(core)
    return history


def make_importer(hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer) -> stats.StatisticsImporter:
    client = AetherLensClient(core.url, core.api_key, async_get_clientsession(hass))
    entry.runtime_data = SimpleNamespace(client=client)
    return stats.StatisticsImporter(hass, entry, client)


async def sync(hass: HomeAssistant, importer: stats.StatisticsImporter) -> None:
    await importer.async_sync()
    await async_wait_recording_done(hass)


RACK = "sim-h001-rack"
FRIDGE = "sim-h001-fridge"


async def test_backfill_writes_every_hour_in_chunks_with_running_sums(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 24 * 40, lambda i: 0.1 + (i % 7) * 0.05)  # 40 days: two chunks
    fill(model, FRIDGE, T0 + 5 * HOUR, 30, lambda i: 0.0 if i == 10 else 0.3)
    model.remove(FRIDGE, T0 + 20 * HOUR)  # a gap: written as 0, the sum unchanged
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)

    assert core.calls("/costs/changes") == [{"since": "0"}]
    rack_reads = [q for q in core.calls("/costs/history") if q.get("device_id") == RACK]
    assert len(rack_reads) >= 2  # 40 days in 31-day chunks
    energy, cost = "aetherlens:energy_sim_h001_rack", "aetherlens:cost_sim_h001_rack"
    fridge, site = "aetherlens:energy_sim_h001_fridge", "aetherlens:cost_site"
    got = await read(hass, energy, cost, fridge, site)
    assert_rows(got[energy], expected(model, RACK, 0))
    assert_rows(got[cost], expected(model, RACK, 1))
    assert_rows(got[fridge], expected(model, FRIDGE, 0))
    assert got[fridge][15]["state"] == 0 and got[fridge][15]["sum"] == got[fridge][14]["sum"]
    assert_rows(got[site], expected(model, None, 1))
    assert len(got[site]) == 24 * 40

    meta = await get_instance(hass).async_add_executor_job(
        lambda: get_metadata(hass, statistic_source=DOMAIN)
    )
    assert set(meta) == {energy, cost, fridge, "aetherlens:cost_sim_h001_fridge", site}
    for statistic_id, (_, data) in meta.items():
        assert data["source"] == "aetherlens"
        assert data["has_sum"] is True
        assert data["mean_type"] is StatisticMeanType.NONE
        assert not data.get("has_mean")
        assert data["unit_of_measurement"] == ("kWh" if ":energy_" in statistic_id else "USD")
    assert meta[energy][1]["name"] == "Server rack 1 energy"  # the name from /devices
    assert meta[site][1]["name"] == "AetherLens site cost"
    assert importer.revision == model.revision


async def test_second_run_continues_from_the_stored_revision_and_sum(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 48, lambda i: 0.5)
    await sync(hass, make_importer(hass, entry, core))
    first_revision = model.revision
    fill(model, RACK, T0 + 48 * HOUR, 5, lambda i: 1.5)  # five new hours

    # A new importer (Home Assistant restarted): the revision and slugs come from its Store.
    importer = make_importer(hass, entry, core)
    core.requests.clear()
    await sync(hass, importer)
    assert core.calls("/costs/changes") == [{"since": str(first_revision)}]
    reads = core.calls("/costs/history")
    # Only from the new hours on (in chunks up to now), per series.
    assert reads and min(datetime.fromisoformat(q["from"]) for q in reads) == T0 + 48 * HOUR
    energy = "aetherlens:energy_sim_h001_rack"
    rows = (await read(hass, energy))[energy]
    assert len(rows) == 53
    assert rows[47]["sum"] == pytest.approx(24.0)
    assert [r["sum"] for r in rows[48:]] == pytest.approx([24 + 1.5 * k for k in range(1, 6)])

    core.requests.clear()  # nothing changed: one question, nothing read or written
    await sync(hass, importer)
    assert [p for _, p, _ in core.requests] == ["/costs/changes"]


async def test_repricing_rewrites_the_changed_hours_and_shifts_every_later_sum(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 72, lambda i: 1.0)
    fill(model, FRIDGE, T0, 72, lambda i: 0.2)
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)
    cost, site = "aetherlens:cost_sim_h001_rack", "aetherlens:cost_site"
    fridge = "aetherlens:cost_sim_h001_fridge"
    before = await read(hass, cost, site, fridge)

    # The tariff was edited for hour 30 only: +0.5 on the rack's cost there (energy unchanged).
    model.set(RACK, T0 + 30 * HOUR, 1.0, 0.75)
    core.requests.clear()
    await sync(hass, importer)
    assert {q.get("device_id") for q in core.calls("/costs/history")} == {RACK, None}  # not the fridge
    after = await read(hass, cost, site, fridge)
    for sid in (cost, site):
        old, new = before[sid], after[sid]
        assert [r["sum"] for r in new[:30]] == pytest.approx([r["sum"] for r in old[:30]])
        assert [r["sum"] for r in new[30:]] == pytest.approx([r["sum"] + 0.5 for r in old[30:]])
        assert new[30]["state"] == pytest.approx(old[30]["state"] + 0.5)
        assert [r["state"] for r in new[31:]] == pytest.approx([r["state"] for r in old[31:]])
    assert after[fridge] == before[fridge]
    assert_rows(after[cost], expected(model, RACK, 1))


async def test_a_removed_hour_becomes_zero_and_later_rows_are_rewritten(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 10, lambda i: 1.0)
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)
    model.remove(RACK, T0 + 4 * HOUR)
    model.remove(RACK, T0 + 9 * HOUR)  # the last hour too: no point after it to carry the rewrite
    await sync(hass, importer)
    energy = "aetherlens:energy_sim_h001_rack"
    rows = (await read(hass, energy))[energy]
    assert [r["state"] for r in rows] == pytest.approx([1, 1, 1, 1, 0, 1, 1, 1, 1, 0])
    assert [r["sum"] for r in rows] == pytest.approx([1, 2, 3, 4, 4, 5, 6, 7, 8, 8])


async def test_points_in_a_half_hour_zone_are_written_at_their_utc_hour(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    model = HistoryModel("Asia/Kolkata")  # points read 05:30+05:30 for 00:00 UTC
    model.serve(core)
    fill(model, RACK, T0, 3, lambda i: 1.0)
    await sync(hass, make_importer(hass, entry, core))
    energy = "aetherlens:energy_sim_h001_rack"
    assert [r["start"] for r in (await read(hass, energy))[energy]] == [T0, T0 + HOUR, T0 + 2 * HOUR]


def test_statistic_id_rule() -> None:
    def h(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()[:6]

    assert stats.slug("Sim-H001 Rack!!") == "sim_h001_rack"
    assert stats.slug("__Küche__") == "k_che"
    slugs = stats.assign_slugs(["fridge-main", "Fridge Main", "site", "!!!", "plain"], {})
    # Assigned in id order: "Fridge Main" sorts before "fridge-main", so the latter is the later one.
    assert slugs == {
        "Fridge Main": "fridge_main",
        "fridge-main": f"fridge_main_{h('fridge-main')}",
        "site": f"site_{h('site')}",  # aetherlens:cost_site is the site's
        "!!!": h("!!!"),
        "plain": "plain",
    }
    # Stored assignments stay when a device that sorts first appears later.
    again = stats.assign_slugs(["FRIDGE MAIN", *slugs], slugs)
    assert {k: again[k] for k in slugs} == slugs
    assert again["FRIDGE MAIN"] == f"fridge_main_{h('FRIDGE MAIN')}"
    for value in again.values():
        assert stats.energy_statistic_id(value).startswith("aetherlens:energy_")
        assert "__" not in stats.cost_statistic_id(value) and not value.endswith("_")


async def test_colliding_devices_get_their_own_statistics(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, "pc-1", T0, 2, lambda i: 1.0)
    fill(model, "PC 1", T0, 2, lambda i: 2.0)
    fill(model, "site", T0, 2, lambda i: 4.0)
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)
    second = "aetherlens:energy_pc_1_" + hashlib.sha1(b"pc-1").hexdigest()[:6]
    site_device = "aetherlens:cost_site_" + hashlib.sha1(b"site").hexdigest()[:6]
    got = await read(hass, "aetherlens:energy_pc_1", second, site_device, "aetherlens:cost_site")
    assert [r["sum"] for r in got["aetherlens:energy_pc_1"]] == pytest.approx([2, 4])  # "PC 1" sorts first
    assert [r["sum"] for r in got[second]] == pytest.approx([1, 2])
    assert [r["sum"] for r in got[site_device]] == pytest.approx([1, 2])  # 4 kWh x 0.25
    assert [r["sum"] for r in got["aetherlens:cost_site"]] == pytest.approx([1.75, 3.5])
    stored = await importer.store.async_load()
    assert stored == {"revision": model.revision, "slugs": importer.slugs}


async def test_metadata_without_unit_class_is_accepted_by_this_recorder(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    """HA 2025.4.4 (installed here) has no unit_class: none is sent, and the real recorder stores it."""
    assert stats.supports_unit_class() is False
    assert "unit_class" not in stats.metadata("aetherlens:energy_x", "x", "kWh", "energy")
    fill(model, RACK, T0, 2, lambda i: 1.0)
    await sync(hass, make_importer(hass, entry, core))
    energy = "aetherlens:energy_sim_h001_rack"
    assert len((await read(hass, energy))[energy]) == 2


async def test_metadata_carries_unit_class_where_ha_has_it(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    core: CoreServer,
    model: HistoryModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HA 2025.11+ (detection patched): energy has unit_class "energy", money None. This recorder would
    refuse the key, so the metadata handed to it is captured instead of written."""
    monkeypatch.setattr(stats, "supports_unit_class", lambda: True)
    written: list[tuple[dict[str, Any], list[Any]]] = []
    monkeypatch.setattr(
        stats, "async_add_external_statistics", lambda _hass, meta, rows: written.append((meta, list(rows)))
    )
    fill(model, RACK, T0, 2, lambda i: 1.0)
    await sync(hass, make_importer(hass, entry, core))
    meta = {m["statistic_id"]: m for m, _ in written}
    assert meta["aetherlens:energy_sim_h001_rack"]["unit_class"] == "energy"
    assert meta["aetherlens:cost_sim_h001_rack"]["unit_class"] is None
    assert meta["aetherlens:cost_site"]["unit_class"] is None
    for m in meta.values():
        assert m["mean_type"] is StatisticMeanType.NONE and m["has_sum"] is True and "has_mean" not in m


async def test_statistics_off_in_options_writes_nothing(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 5, lambda i: 1.0)
    hass.config_entries.async_update_entry(entry, options={CONF_STATISTICS: False})
    make_importer(hass, entry, core)
    await stats.async_setup_statistics(hass, entry)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    assert core.calls("/costs/changes") == []
    meta = await get_instance(hass).async_add_executor_job(
        lambda: get_metadata(hass, statistic_source=DOMAIN)
    )
    assert meta == {}


async def test_setup_backfills_in_the_background_and_syncs_on_an_interval(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    fill(model, RACK, T0, 5, lambda i: 1.0)
    make_importer(hass, entry, core)
    await stats.async_setup_statistics(hass, entry)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    energy = "aetherlens:energy_sim_h001_rack"
    assert len((await read(hass, energy))[energy]) == 5
    fill(model, RACK, T0 + 5 * HOUR, 1, lambda i: 2.0)
    async_fire_time_changed(hass, dt_util.utcnow() + stats.SYNC_INTERVAL + timedelta(seconds=1))
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    rows = (await read(hass, energy))[energy]
    assert [r["sum"] for r in rows] == pytest.approx([1, 2, 3, 4, 5, 7])
    await entry._async_process_on_unload(hass)  # what unloading the entry does: the interval ends


async def test_an_unreachable_core_keeps_the_revision_and_the_next_sync_catches_up(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    core: CoreServer,
    model: HistoryModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fill(model, RACK, T0, 3, lambda i: 1.0)
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)
    fill(model, RACK, T0 + 3 * HOUR, 2, lambda i: 1.0)
    core.fail("/costs/history", 503)
    await sync(hass, importer)
    await sync(hass, importer)
    assert importer.revision == 3  # not the new one: its rows were not all written
    assert caplog.text.count("cannot update the long-term statistics") == 1  # logged once
    core.heal("/costs/history")
    await sync(hass, importer)
    assert importer.revision == model.revision
    assert "long-term statistics are up to date again" in caplog.text
    energy = "aetherlens:energy_sim_h001_rack"
    assert [r["sum"] for r in (await read(hass, energy))[energy]] == pytest.approx([1, 2, 3, 4, 5])


async def test_a_series_without_statistics_is_backfilled_whole(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, model: HistoryModel
) -> None:
    """A device hidden in the options gets no statistics; shown again, its whole history is written
    even though the core reports only its latest change."""
    fill(model, RACK, T0, 4, lambda i: 1.0)
    fill(model, FRIDGE, T0, 4, lambda i: 0.5)
    hass.config_entries.async_update_entry(entry, options={stats.OPT_EXCLUDED_DEVICES: [FRIDGE]})
    importer = make_importer(hass, entry, core)
    await sync(hass, importer)
    fridge = "aetherlens:energy_sim_h001_fridge"
    assert (await read(hass, fridge))[fridge] == []
    hass.config_entries.async_update_entry(entry, options={})
    model.set(FRIDGE, T0 + 3 * HOUR, 0.75, 0.2)
    await sync(hass, importer)
    assert [r["sum"] for r in (await read(hass, fridge))[fridge]] == pytest.approx([0.5, 1.0, 1.5, 2.25])


async def test_client_reads_changes_in_the_core_shape(core: CoreServer, model: HistoryModel) -> None:
    fill(model, RACK, T0, 2, lambda i: 1.0)
    async with aiohttp.ClientSession() as session:
        answer = await AetherLensClient(core.url, core.api_key, session).cost_changes(0)
    assert answer.revision == 2
    assert [(c.device_id, c.start) for c in answer.changes] == [(None, T0), (RACK, T0)]


def test_running_sum_fills_gaps_and_ignores_an_hour_it_wrote() -> None:
    running = stats.RunningSum(T0, 10.0)
    rows = running.rows([(T0 + HOUR, 0.1), (T0 + HOUR, 0.1), (T0 + 3 * HOUR, 0.2)])
    assert [(r["start"], r["state"]) for r in rows] == [
        (T0, 0.0),
        (T0 + HOUR, 0.1),
        (T0 + 2 * HOUR, 0.0),
        (T0 + 3 * HOUR, 0.2),
    ]
    assert [r["sum"] for r in rows] == [10.0, 10.1, 10.1, 10.3]  # decimal: no 10.299999...


async def test_a_refused_key_is_logged_and_a_running_sync_is_not_doubled(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    core: CoreServer,
    model: HistoryModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    importer = make_importer(hass, entry, core)
    core.fail("/costs/changes", 401)
    await sync(hass, importer)
    assert "the core refused the API key" in caplog.text
    core.heal("/costs/changes")
    async with importer._lock:  # a sync in progress: another one returns at once
        await importer.async_sync()
    assert len(core.calls("/costs/changes")) == 1


def test_the_recorded_changes_answer_parses() -> None:
    """The core's own answer (fixtures/costs_changes.json): the site first, then every device."""
    recorded = load_fixture("costs_changes.json")
    answer = CostChanges.from_json(recorded)
    assert answer.revision == recorded["revision"] > 0
    assert answer.changes[0].device_id is None
    assert {c.device_id for c in answer.changes[1:]} >= {RACK, FRIDGE}
    for change in answer.changes:
        assert change.start.tzinfo is not None and change.start.minute == 0
