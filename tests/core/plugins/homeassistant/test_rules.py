"""The plugin's rules without a HA: units, states, selection, device mapping, counters, windows, marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aetherlens.plugins.builtin.homeassistant.backfill import plan
from aetherlens.plugins.builtin.homeassistant.client import Endpoint, HAError
from aetherlens.plugins.builtin.homeassistant.feed import Feed
from aetherlens.plugins.builtin.homeassistant.mapping import canonical, numeric, separate_series, track
from aetherlens.plugins.builtin.homeassistant.plugin import HomeAssistantPlugin
from aetherlens.plugins.builtin.homeassistant.selection import Registries, Selection
from aetherlens.plugins.builtin.homeassistant.watermarks import Mark, WatermarkStore
from aetherlens.plugins.runner import child_environment

REG = Registries.parse(
    [
        {"entity_id": "sensor.plug_power", "platform": "shelly", "device_id": "d1", "area_id": None},
        {"entity_id": "sensor.plug_power_2", "platform": "shelly", "device_id": "d1"},
        {"entity_id": "sensor.plug_energy", "platform": "shelly", "device_id": "d1", "area_id": "garage"},
        {"entity_id": "sensor.aetherlens_site_power", "platform": "aetherlens", "device_id": "d9"},
    ],
    [
        {"id": "d1", "name": "Plug", "name_by_user": "Freezer plug", "area_id": "kitchen"},
        {"id": "d9", "name": "AL"},
    ],
    [{"area_id": "kitchen", "name": "Kitchen"}, {"area_id": "garage", "name": "Garage"}],
)
POWER = {"device_class": "power", "unit_of_measurement": "kW", "friendly_name": "Plug power"}
ENERGY = {"device_class": "energy", "unit_of_measurement": "Wh", "state_class": "total_increasing"}


@pytest.mark.parametrize(
    ("unit", "state", "expected"),
    [
        ("W", "12.5", 12.5),
        ("kW", "1.5", 1500.0),
        ("MW", "0.002", 2000.0),
        ("Wh", "1500", 1.5),
        ("MWh", "2", 2000.0),
    ],
)
def test_units_convert_to_the_vocabulary(unit: str, state: str, expected: float) -> None:
    item = track("sensor.x", {"unit_of_measurement": unit}, REG, {})
    assert item is not None
    assert item.metric_type == ("power" if unit.endswith("W") else "energy")
    assert canonical(item, state) == pytest.approx(expected)


@pytest.mark.parametrize("state", ["unavailable", "unknown", "", "on", "nan", "inf", None])
def test_states_that_are_not_readings_are_none_never_zero(state: Any) -> None:
    assert numeric(state) is None


def test_a_unit_that_is_not_power_or_energy_is_not_read() -> None:
    assert track("sensor.v", {"unit_of_measurement": "V"}, REG, {}) is None


def test_selection_by_device_class_glob_and_exclude_and_never_own_entities() -> None:
    default = Selection.from_config({})
    assert default.wants("sensor.plug_power", POWER, REG)
    assert not default.wants("sensor.plug_voltage", {"device_class": "voltage"}, REG)
    assert not default.wants("sensor.aetherlens_site_power", POWER, REG)  # platform aetherlens
    listed = Selection.from_config({"entities": ["sensor.*_power", "input_number.x"], "exclude": ["*_2"]})
    assert listed.wants("sensor.plug_power", {}, REG)  # listed: no device class needed
    assert not listed.wants("sensor.plug_power_2", POWER, REG)
    assert not listed.wants("sensor.plug_energy", ENERGY, REG)
    assert not listed.wants("sensor.aetherlens_site_power", POWER, REG)
    narrowed = Selection.from_config({"entities": ["sensor.*"], "device_classes": ["energy"]})
    assert narrowed.wants("sensor.plug_energy", ENERGY, REG) and not narrowed.wants(
        "sensor.plug_power", POWER, REG
    )


def test_device_mapping_names_rooms_overrides_and_one_entity_per_series() -> None:
    power = track("sensor.plug_power", POWER, REG, {})
    energy = track("sensor.plug_energy", ENERGY, REG, {})
    loose = track("sensor.grid", {"unit_of_measurement": "W", "friendly_name": "Grid"}, REG, {})
    assert power and energy and loose
    assert (power.device_id, power.device_name, power.room) == ("ha_d1", "Freezer plug", "Kitchen")
    assert energy.room == "Garage"  # the entity's own area wins over its device's
    assert (loose.device_id, loose.device_name) == ("ha_grid", "Grid")
    second = track("sensor.plug_power_2", POWER, REG, {})
    assert second is not None
    result, warnings = separate_series({e.entity_id: e for e in (power, second, energy)}, {})
    assert result["sensor.plug_power"].device_id == "ha_d1"
    assert result["sensor.plug_power_2"].device_id == "ha_plug_power_2" and len(warnings) == 1
    override = track("sensor.plug_power", POWER, REG, {"sensor.plug_power": "freezer"})
    assert override is not None and override.device_id == "freezer"


def test_endpoint_from_url_token_or_supervisor() -> None:
    url = Endpoint.from_config({"url": "https://ha.example:8123/", "token": "tok-SECRET"})
    assert (url.api_url, url.ws_url, url.mode) == (
        "https://ha.example:8123/api",
        "wss://ha.example:8123/api/websocket",
        "url",
    )
    assert "SECRET" not in repr(url)
    sup = Endpoint.from_config({}, env={"SUPERVISOR_TOKEN": "s"})
    assert (sup.api_url, sup.ws_url, sup.token) == (
        "http://supervisor/core/api",
        "ws://supervisor/core/websocket",
        "s",
    )
    with pytest.raises(HAError, match="SUPERVISOR_TOKEN"):
        Endpoint.from_config({}, env={})
    with pytest.raises(HAError, match="'token' is required"):
        Endpoint.from_config({"url": "http://x"}, env={})


async def test_feed_skips_old_unavailable_and_counter_jitter_but_passes_resets(tmp_path: Path) -> None:
    store = WatermarkStore(tmp_path)
    feed = Feed(store)
    item = track(
        "sensor.plug_energy", {"unit_of_measurement": "kWh", "state_class": "total_increasing"}, REG, {}
    )
    assert item is not None
    feed.tracked = {"sensor.plug_energy": item}
    offers = [
        (100.0, "10"),
        (101.0, "unavailable"),
        (102.0, "9.5"),
        (103.0, "10.2"),
        (103.0, "10.2"),
        (104.0, "0.3"),
    ]
    taken = [feed.offer("sensor.plug_energy", s, t) for t, s in offers]
    # 9.5 is within 10 % below 10: jitter, skipped; 0.3 is a reset: passed on for the core to see.
    assert taken == [True, False, False, True, False, True]
    batches: list[list[dict[str, Any]]] = []

    class Result:
        accepted = 3
        rejected: list[dict[str, Any]] = []

    async def emit(batch: Any) -> Result:
        batches.append(list(batch))
        return Result()

    assert await feed.flush(emit) == 3
    assert [m["value"] for m in batches[0]] == [10.0, 10.2, 0.3]
    again = WatermarkStore(tmp_path)
    again.load()
    assert again.marks["sensor.plug_energy"] == Mark(104.0, 0.3)  # durable: a restart starts after it
    assert dict(feed.skipped) == {"unavailable": 1, "counter_jitter": 1}


async def test_a_batch_the_core_did_not_take_leaves_the_marks_where_they_were(tmp_path: Path) -> None:
    feed = Feed(WatermarkStore(tmp_path))
    item = track("sensor.p", {"unit_of_measurement": "W"}, REG, {})
    assert item is not None
    feed.tracked = {"sensor.p": item}
    assert feed.offer("sensor.p", "5", 10.0)

    async def failing(batch: Any) -> Any:
        raise ConnectionError("core stopping")

    with pytest.raises(ConnectionError):
        await feed.flush(failing)
    assert feed.mark("sensor.p") is None and not (tmp_path / "watermarks.json").exists()
    assert feed.offer("sensor.p", "5", 10.0)  # offered again (from the recorder, next session)


def test_backfill_windows_cover_each_entity_from_its_own_start() -> None:
    windows = plan({"a": 0.0, "b": 250.0}, until=300.0, chunk_seconds=100.0)
    assert [(w.start, w.end, w.entity_ids) for w in windows] == [
        (0.0, 100.0, ("a",)),
        (100.0, 200.0, ("a",)),
        (200.0, 300.0, ("a", "b")),
    ]
    assert plan({}, 10.0, 5.0) == []


def test_only_plugins_with_the_supervisor_permission_see_the_supervisor_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPERVISOR_TOKEN", "addon-secret")
    assert child_environment(["network", "supervisor"])["SUPERVISOR_TOKEN"] == "addon-secret"
    assert "SUPERVISOR_TOKEN" not in child_environment(["network"])
    assert "SUPERVISOR_TOKEN" not in child_environment()


def test_config_problems_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    plugin = HomeAssistantPlugin("ha_x", {})
    assert plugin.validate_config({"url": "http://ha:8123", "token": "t"}) == []
    (missing,) = plugin.validate_config({"url": "http://ha:8123"})
    assert "plugins.ha_x.config" in missing and "'token' is required" in missing
    (no_supervisor,) = plugin.validate_config({})
    assert "SUPERVISOR_TOKEN" in no_supervisor
    (bad_id,) = plugin.validate_config(
        {"url": "http://h", "token": "t", "devices": {"sensor.a": "no spaces"}}
    )
    assert "plugins.ha_x.config.devices.sensor.a" in bad_id
