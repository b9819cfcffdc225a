"""Live values over the stream, polling as fallback, unavailability and recovery, dynamic and stale
devices, alert sensors and `aetherlens_alert` events."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.aetherlens import stream as stream_module
from custom_components.aetherlens.const import DOMAIN, EVENT_ALERT

from .conftest import INSTANCE_ID, CoreServer, load_fixture, stream_connected, wait_until
from .test_sensor import state

RECORDED = load_fixture("stream_messages.json")


def _metric(
    device_id: str, kind: str, value: float, time: str = "2026-12-01T12:40:00+00:00"
) -> dict[str, Any]:
    unit = {"power": "W", "energy": "kWh"}[kind]
    return {
        "type": "metric",
        "data": {"time": time, "device_id": device_id, "metric_type": kind, "value": value, "unit": unit},
    }


def _alert(state: str, event_id: int = 17, **extra: Any) -> dict[str, Any]:
    return {
        "type": "alert",
        "data": {
            "alert_id": 1,
            "event_id": event_id,
            "name": "Rack over 400 W",
            "device_id": "sim-h001-rack",
            "severity": "warning",
            "state": state,
            "value": 423.269,
            "message": "Server rack 1 power 423.3 W > 400 W for 60 s",
            "time": "2026-12-01T12:41:00+00:00",
            **extra,
        },
    }


@pytest.fixture
def alert_events(hass: HomeAssistant) -> list[Event]:
    events: list[Event] = []

    @callback
    def record(event: Event) -> None:
        events.append(event)

    hass.bus.async_listen(EVENT_ALERT, record)
    return events


async def test_stream_updates_live_values(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    await stream_connected(loaded)
    # The poll a (re)connection triggers must be done before counting, or under load it lands after.
    await hass.async_block_till_done()
    polls = len(core.calls("/metrics/current"))
    for message in RECORDED[2:]:
        await core.push(message)
    last = {}
    for message in RECORDED[2:]:
        data = message["data"]
        if data["metric_type"] in ("power", "energy"):
            last[(data["device_id"], data["metric_type"])] = data["value"]
    device_id, kind = next(iter(last))
    await wait_until(
        lambda: float(state(hass, f"{device_id}_{kind}").state) == pytest.approx(last[(device_id, kind)]),
        "the pushed value",
    )
    for (device_id, kind), value in last.items():
        await wait_until(
            lambda d=device_id, k=kind, v=value: float(state(hass, f"{d}_{k}").state) == pytest.approx(v),
            f"{device_id} {kind}",
        )
    # Pushed values arrive without a poll.
    assert len(core.calls("/metrics/current")) == polls

    # An older reading arriving late does not overwrite a newer one.
    await core.push(_metric("sim-h001-rack", "power", 999.0, time="2026-12-01T00:00:00+00:00"))
    await core.push(_metric("sim-h001-rack", "power", 512.5, time="2026-12-01T23:00:00+00:00"))
    await wait_until(lambda: state(hass, "sim-h001-rack_power").state == "512.5", "the newest value")


async def test_polling_at_the_interval(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    await stream_connected(loaded)
    # Let the poll the connection triggers finish (firing the clock would time its requests out).
    await hass.async_block_till_done()
    core.data["metrics_current"]["devices"][3]["metrics"]["power"].update(
        value=777.0, time="2026-12-01T13:00:00+00:00"
    )
    polls = len(core.calls("/metrics/current"))
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
    # The interval's poll runs as a background task of the entry.
    await wait_until(lambda: state(hass, "sim-h001-rack_power").state == "777.0", "the interval's poll")
    assert len(core.calls("/metrics/current")) == polls + 1


async def test_unavailable_then_recovered_logged_once(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="custom_components.aetherlens")
    await stream_connected(loaded)
    await core.stop()
    # The stream's loss triggers a poll at once: entities go unavailable, not 0.
    await wait_until(lambda: state(hass, "sim-h001-rack_power").state == STATE_UNAVAILABLE, "unavailable")
    for key in ("site_cost_today", "current_price", "sim-h001-rack_energy", "sim-h001-rack_cost_today"):
        assert state(hass, key).state == STATE_UNAVAILABLE
    assert state(hass, "alert_1", "binary_sensor").state == STATE_UNAVAILABLE
    # More failed polls and reconnects log nothing more.
    for _ in range(3):
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
        await hass.async_block_till_done()
    await wait_until(lambda: loaded.runtime_data.stream._failed_logged, "the stream to notice")
    losses = [r for r in caplog.records if r.levelno >= logging.INFO and "Error fetching" in r.getMessage()]
    stream_losses = [r for r in caplog.records if "stream lost" in r.getMessage()]
    assert len(losses) == 1 and len(stream_losses) == 1

    await core.start()
    await stream_connected(loaded)
    await wait_until(lambda: state(hass, "sim-h001-rack_power").state != STATE_UNAVAILABLE, "recovery")
    assert float(state(hass, "site_cost_today").state) == pytest.approx(core.data["costs_summary"]["today"])
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    back = [r for r in caplog.records if "stream connected again" in r.getMessage()]
    assert len(recovered) == 1 and len(back) == 1


async def test_backoff_doubles_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "BACKOFF_MAX_SECONDS", 300.0)
    delays = [1.0]
    for _ in range(10):
        delays.append(stream_module.next_delay(delays[-1]))
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == 300.0


async def test_stream_key_refused_starts_reauth(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    await stream_connected(loaded)
    core.api_key = "revoked"
    await core.close_streams(4401)
    await wait_until(
        lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)), "a reauth flow"
    )
    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == "reauth"


async def test_new_device_appears_without_reload(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    await stream_connected(loaded)
    core.data["devices"]["items"].append(
        {
            "id": "plug-7",
            "name": "Desk plug",
            "type": "plug",
            "room": "Office",
            "source": "shelly",
            "tags": {},
        }
    )
    core.data["metrics_current"]["devices"].append(
        {
            "device_id": "plug-7",
            "metrics": {"power": {"value": 42.0, "unit": "W", "time": "2026-12-01T12:40:00+00:00"}},
        }
    )
    # The stream carries a reading of a device the integration does not know yet: it polls and adds it.
    await core.push(_metric("plug-7", "power", 42.0))
    await wait_until(
        lambda: (
            er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{INSTANCE_ID}_plug-7_power")
            is not None
        ),
        "the new device's sensor",
    )
    await hass.async_block_till_done()
    assert state(hass, "plug-7_power").state == "42.0"
    device = dr.async_get(hass).async_get_device({(DOMAIN, f"{INSTANCE_ID}_plug-7")})
    assert device is not None and device.name == "Desk plug" and device.suggested_area == "Office"
    assert loaded.state.recoverable  # still the same loaded entry, never reloaded


async def test_deleted_device_is_removed(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    registry = dr.async_get(hass)
    identifier = (DOMAIN, f"{INSTANCE_ID}_sim-h001-washer")
    assert registry.async_get_device({identifier}) is not None
    core.data["devices"]["items"] = [d for d in core.data["devices"]["items"] if d["id"] != "sim-h001-washer"]
    core.data["metrics_current"]["devices"] = [
        d for d in core.data["metrics_current"]["devices"] if d["device_id"] != "sim-h001-washer"
    ]
    await loaded.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    assert registry.async_get_device({identifier}) is None
    assert (
        er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{INSTANCE_ID}_sim-h001-washer_power")
        is None
    )
    assert hass.states.get("sensor.washing_machine_1_power") is None

    # It comes back (re-registered by its source): its entities return.
    core.data["devices"]["items"].append(load_fixture("devices.json")["items"][-1])
    core.data["metrics_current"] = load_fixture("metrics_current.json")
    await loaded.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    assert state(hass, "sim-h001-washer_power").state == "1.0"


async def test_alert_sensor_and_events_from_the_stream(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer, alert_events: list[Event]
) -> None:
    await stream_connected(loaded)
    sensor = state(hass, "alert_1", "binary_sensor")
    assert sensor.state == STATE_OFF
    assert sensor.attributes["device_class"] == "problem"
    assert sensor.attributes["friendly_name"] == "AetherLens Rack over 400 W"
    assert sensor.attributes["severity"] == "warning" and "event_id" not in sensor.attributes

    await core.push(_alert("firing"))
    await wait_until(lambda: state(hass, "alert_1", "binary_sensor").state == STATE_ON, "the alert on")
    sensor = state(hass, "alert_1", "binary_sensor")
    assert sensor.attributes["event_id"] == "17"
    assert sensor.attributes["value"] == 423.269
    assert sensor.attributes["message"] == "Server rack 1 power 423.3 W > 400 W for 60 s"
    assert sensor.attributes["acknowledged"] is False

    await core.push(_alert("acknowledged"))
    await wait_until(
        lambda: state(hass, "alert_1", "binary_sensor").attributes.get("acknowledged"), "acknowledged"
    )
    await core.push(_alert("resolved"))
    await wait_until(lambda: state(hass, "alert_1", "binary_sensor").state == STATE_OFF, "the alert off")
    await core.push(_alert("resolved"))  # a repeated transition is announced once
    await wait_until(lambda: len(alert_events) >= 3, "three events")
    await hass.async_block_till_done()
    assert [e.data["state"] for e in alert_events] == ["fired", "acknowledged", "resolved"]
    assert alert_events[0].data == {
        "alert_id": "1",
        "event_id": "17",
        "name": "Rack over 400 W",
        "device_id": "sim-h001-rack",
        "severity": "warning",
        "state": "fired",
        "value": 423.269,
        "message": "Server rack 1 power 423.3 W > 400 W for 60 s",
    }

    # The next poll lists the same event (resolved): nothing is announced twice.
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    core.data["alert_events"]["items"][0].update(
        resolved_at="2026-12-01T12:45:00+00:00", acknowledged_at="2026-12-01T12:42:00+00:00"
    )
    await loaded.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    assert [(e.data["event_id"], e.data["state"]) for e in alert_events[3:]] == [
        ("9", "fired"),
        ("9", "acknowledged"),
        ("9", "resolved"),
    ]


async def test_alert_events_from_polling(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer, alert_events: list[Event]
) -> None:
    """Without the stream, polls reveal the transitions; what was true at start is not announced."""
    coordinator = loaded.runtime_data.coordinator
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert [(e.data["event_id"], e.data["state"]) for e in alert_events] == [
        ("9", "fired"),
        ("9", "acknowledged"),
        ("9", "resolved"),
        ("17", "fired"),
    ]
    assert alert_events[3].data["name"] == "Rack over 400 W"
    rack = state(hass, "alert_1", "binary_sensor")
    assert (
        rack.state == STATE_ON and rack.attributes["triggered_at"].isoformat() == "2026-12-01T12:20:00+00:00"
    )
    assert state(hass, "alert_2", "binary_sensor").state == STATE_OFF

    core.data["alert_events"]["items"][0]["resolved_at"] = "2026-12-01T12:50:00+00:00"
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert [(e.data["event_id"], e.data["state"]) for e in alert_events[4:]] == [("17", "resolved")]
    assert state(hass, "alert_1", "binary_sensor").state == STATE_OFF


async def test_alerts_open_at_start_are_not_announced(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer, alert_events: list[Event]
) -> None:
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "alert_1", "binary_sensor").state == STATE_ON
    assert alert_events == []


async def test_alert_rules_added_and_deleted(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    coordinator = loaded.runtime_data.coordinator
    core.data["alerts"]["items"].append({**core.data["alerts"]["items"][0], "id": 3, "name": "Budget"})
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert state(hass, "alert_3", "binary_sensor").state == STATE_OFF
    core.data["alerts"]["items"] = core.data["alerts"]["items"][1:]
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    assert registry.async_get_entity_id("binary_sensor", DOMAIN, f"{INSTANCE_ID}_alert_1") is None
    assert registry.async_get_entity_id("binary_sensor", DOMAIN, f"{INSTANCE_ID}_alert_3") is not None


async def test_cost_event_updates_site_and_polls(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    await stream_connected(loaded)
    summaries = len(core.calls("/costs/summary"))
    pushed = {**core.data["costs_summary"], "today": 1.25}
    core.data["costs_summary"] = pushed
    await core.push({"type": "cost", "data": pushed})
    await wait_until(lambda: state(hass, "site_cost_today").state == "1.25", "the pushed cost")
    # Per-device costs are not in the event: it asks for a poll.
    await wait_until(lambda: len(core.calls("/costs/summary")) > summaries, "a poll after the cost event")


async def test_poll_under_way_does_not_undo_a_pushed_alert(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    """A poll that read the events before a push and finishes after it keeps the pushed state."""
    await stream_connected(loaded)
    await hass.async_block_till_done()
    coordinator = loaded.runtime_data.coordinator
    original = coordinator._fetch

    async def fetch_then_push() -> Any:
        data = await original()  # read: no open event
        await core.push(_alert("firing"))
        await wait_until(lambda: "1" in coordinator.data.open_events, "the push to land")
        return data

    coordinator._fetch = fetch_then_push  # type: ignore[method-assign]
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert state(hass, "alert_1", "binary_sensor").state == STATE_ON


async def test_a_bad_event_does_not_stop_the_stream(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer, alert_events: list[Event]
) -> None:
    await stream_connected(loaded)
    await core.push({"type": "alert", "data": {"alert_id": 1, "event_id": 5, "state": "weird"}})
    await core.push(_metric("sim-h001-rack", "power", 401.0, time="2026-12-01T23:59:00+00:00"))
    await wait_until(lambda: state(hass, "sim-h001-rack_power").state == "401.0", "the next good value")
    assert loaded.runtime_data.stream.connected


async def test_announced_events_memory_is_bounded(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from custom_components.aetherlens import coordinator as coordinator_module

    monkeypatch.setattr(coordinator_module, "MAX_REMEMBERED_EVENTS", 1)
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    coordinator = loaded.runtime_data.coordinator
    await coordinator.async_refresh()
    assert list(coordinator._emitted) == ["17"]  # the older event was forgotten first
