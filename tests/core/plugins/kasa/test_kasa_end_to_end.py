"""Kasa end to end: loopback devices replaying recorded dumps -> python-kasa in the plugin's own process
-> the real supervisor, collector and writer -> PostgreSQL; and switching over
``POST /api/v1/devices/{id}/control`` through the same supervisor into the loopback devices."""

from __future__ import annotations

from typing import Any

from api.conftest import MakeApi
from dbtest import wait_until

from plugins.conftest import CoreFactory, make_settings

from .conftest import HS110, HS300, KP125, KP303, StartDevice
from .xorserver import closed_port, load_fixture

STRIP = "kasa_c006c3000000"  # HS300 (its dump's MAC C0:06:C3:00:00:00)
PLUG = "kasa_50c7bf000000"  # HS110
SWITCH_ONLY = "kasa_b0a7b9000000"  # KP303


async def stored(core: Any, device_id: str) -> dict[str, tuple[float, str]]:
    rows = await core.database.pool.fetch(
        "SELECT metric_type, value, unit FROM metrics WHERE device_id = $1 ORDER BY time DESC", device_id
    )
    latest: dict[str, tuple[float, str]] = {}
    for row in rows:
        latest.setdefault(row["metric_type"], (row["value"], row["unit"]))
    return latest


async def test_readings_are_stored_and_plugs_switch_over_http(
    core: CoreFactory, make_api: MakeApi, kasa_device: StartDevice
) -> None:
    hs110, kp125, hs300, kp303 = [await kasa_device(f) for f in (HS110, KP125, HS300, KP303)]
    dead = closed_port()
    config = {
        "timeout": 2,
        "devices": [
            {"host": "127.0.0.1", "port": hs110.port},
            {"host": "127.0.0.1", "port": kp125.port, "id": "kasa_desk", "name": "Desk"},
            {"host": "127.0.0.1", "port": hs300.port},
            {"host": "127.0.0.1", "port": kp303.port},
            {"host": "127.0.0.1", "port": dead, "id": "kasa_gone"},
        ],
    }
    c = await core(make_settings({"kasa": {"config": config, "poll_interval": 0.3}}))
    runner = c.supervisor.runners["kasa"]
    # 4 (HS110) + 4 (KP125) + 6 x 4 (HS300 outlets) per poll; the KP303 has no meter, one device is dead
    await wait_until(lambda: runner.metrics_emitted >= 32, what="a full poll stored")
    assert runner.metrics_rejected == 0, runner.last_error

    old = load_fixture(HS110)["emeter"]["get_realtime"]
    assert await stored(c, PLUG) == {
        "power": (old["power"], "W"),
        "energy": (old["total"], "kWh"),
        "voltage": (old["voltage"], "V"),
        "current": (old["current"], "A"),
    }
    new = load_fixture(KP125)["emeter"]["get_realtime"]
    assert await stored(c, "kasa_desk") == {
        "power": (new["power_mw"] / 1000, "W"),
        "energy": (new["total_wh"] / 1000, "kWh"),
        "voltage": (new["voltage_mv"] / 1000, "V"),
        "current": (new["current_ma"] / 1000, "A"),
    }
    strip = load_fixture(HS300)["emeter"]["get_realtime"]
    for outlet in range(6):
        assert (await stored(c, f"{STRIP}_{outlet}"))["power"] == (strip["power_mw"] / 1000, "W")
    assert await stored(c, STRIP) == {} and await stored(c, f"{SWITCH_ONLY}_0") == {}

    # Health: per device, the dead one with its error; never the config's secrets.
    # (A polled plugin's health is asked on request: the runner refreshes a snapshot only for pushers.)
    health = (await runner.request("health"))["devices"]
    assert health["kasa_gone"]["last_success"] is None and health["kasa_gone"]["last_error"]
    assert health[PLUG]["model"] == "HS110" and health[PLUG]["consecutive_errors"] == 0

    # The supervisor registers the outlets the plugin lists (the KP303's too: it has no readings).
    found = await c.supervisor.discover_devices("kasa")
    await c.supervisor.sink.registry.register_discovered("kasa", found)
    # Only to have an id whose source is this plugin but that is no plug or outlet: the strip itself.
    strip_itself = [{"id": STRIP, "name": "HS300", "type": "plug"}]
    await c.supervisor.sink.registry.register_discovered("kasa", strip_itself)

    api = await make_api(ctx={"supervisor": c.supervisor})
    operator = {"Authorization": f"Bearer {await api.key(['control'])}"}

    async def control(device_id: str, action: str) -> tuple[int, dict[str, Any]]:
        resp = await api.client.post(
            f"/api/v1/devices/{device_id}/control", json={"action": action}, headers=operator
        )
        body: dict[str, Any] = await resp.json()
        return resp.status, body

    # An outlet of the HS300: only that outlet changes.
    assert await control(f"{STRIP}_1", "off") == (200, {"state": "off"})
    assert hs300.device.relay_states() == [1, 0, 1, 1, 1, 1]
    assert await control(f"{STRIP}_1", "on") == (200, {"state": "on"})
    assert hs300.device.relay_states() == [1] * 6
    # Toggle acts on the device's own state: the HS110 was on.
    assert await control(PLUG, "toggle") == (200, {"state": "off"})
    assert hs110.device.relay_states() == [0]
    assert await control(PLUG, "toggle") == (200, {"state": "on"})
    assert hs110.device.relay_states() == [1]
    # The KP303 meters nothing but switches: its third outlet was off.
    assert await control(f"{SWITCH_ONLY}_2", "on") == (200, {"state": "on"})
    assert kp303.device.relay_states() == [1, 0, 1]
    # The strip itself is no plug or outlet: 409, and nothing changed.
    status, body = await control(STRIP, "off")
    assert status == 409 and body["error"]["code"] == "not_controllable"
    assert "power strip" in body["error"]["message"]
    assert hs300.device.relay_states() == [1] * 6
    # A dead plug cannot be switched now: 409 too, saying why.
    await c.supervisor.sink.registry.register_discovered("kasa", [{"id": "kasa_gone", "name": "gone"}])
    status, body = await control("kasa_gone", "on")
    assert status == 409 and body["error"]["code"] == "not_controllable"
