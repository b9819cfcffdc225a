"""The plugin class against loopback devices through the real aioshelly: failures stay with their
device, switching, discovery, reconnection. (The supervisor and database path: test_end_to_end.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import yaml

from aetherlens import plugin_secrets
from aetherlens.plugins.builtin.shelly.plugin import ShellyPlugin
from aetherlens.plugins.discovery import BUILTIN_DIR

from .harness import running, wait_async
from .loopback import Hanging, LoopbackShelly, closed_port

PLUG_PW = "plug-password-1"
PM_PW = "2pm-password-22"


@pytest.fixture
async def devices() -> AsyncIterator[dict[str, LoopbackShelly]]:
    made = {
        "plug": await LoopbackShelly("gen1_plug_s.json", password=PLUG_PW).start(),
        "2pm": await LoopbackShelly("gen2_plus_2pm.json", password=PM_PW).start(),
        "em": await LoopbackShelly("gen1_em.json").start(),
        "pro3em": await LoopbackShelly("gen2_pro_3em.json").start(),
    }
    yield made
    for server in made.values():
        await server.stop()


def at(server: LoopbackShelly | Hanging | int, **extra: str) -> dict[str, object]:
    port = server if isinstance(server, int) else server.port
    return {"host": "127.0.0.1", "port": port, **extra}


async def test_a_dead_wrong_malformed_or_hanging_device_stays_with_itself() -> None:
    good = await LoopbackShelly("gen1_plug_s.json", password=PLUG_PW).start()
    locked = await LoopbackShelly("gen2_plus_2pm.json", password=PM_PW).start()
    locked_gen1 = await LoopbackShelly("gen1_plug_s.json", password=PLUG_PW).start()
    bad_gen1 = await LoopbackShelly("gen1_plug_s.json", mode="malformed").start()
    bad_gen2 = await LoopbackShelly("gen2_plus_plug_s.json", mode="malformed").start()
    page = await LoopbackShelly("gen1_plug_s.json", mode="html").start()
    hanging = await Hanging().start()
    config = {
        "timeout": 4,
        "devices": [
            at(hanging, id="hangs"),
            at(closed_port(), id="dead"),
            at(locked, id="locked", password="not-the-password"),
            at(locked_gen1, id="locked1", username="admin", password="wrong-password"),
            at(bad_gen1, id="bad1"),
            at(bad_gen2, id="bad2"),
            at(page, id="page"),
            at(good, id="good", password=PLUG_PW),
        ],
    }
    try:
        async with running(config) as (plugin, out):
            await out.until(lambda: bool(out.of("good", "energy")), what="the good device's readings")
            # The good device's poll is done while the hanging one still waits for its timeout.
            health = (await plugin.get_health())["devices"]
            assert health["good"]["last_error"] is None and health["good"]["last_success"]
            assert health["hangs"]["consecutive_errors"] == 0
            assert out.latest("good")["energy"] == pytest.approx(2632 / 60000)

            async def all_failed() -> bool:
                devices = (await plugin.get_health())["devices"]
                return all(d["consecutive_errors"] >= 1 for name, d in devices.items() if name != "good")

            await wait_async(all_failed, what="every other device's failure recorded")
            health = await plugin.get_health()
    finally:
        for server in (good, locked, locked_gen1, bad_gen1, bad_gen2, page, hanging):
            await server.stop()
    errors = {name: device["last_error"] for name, device in health["devices"].items()}
    assert "no answer within the timeout" in errors["hangs"]
    assert "cannot connect" in errors["dead"]
    assert "wrong or missing credentials" in errors["locked"]
    assert "wrong or missing credentials" in errors["locked1"]
    assert "malformed answer" in errors["bad1"]
    assert "malformed answer: switch:0.apower is 'n/a'" in errors["bad2"]
    assert "malformed answer: not JSON" in errors["page"]
    assert errors["good"] is None
    assert {m["device_id"] for m in out.metrics} == {"good"}  # nothing of the failed ones was emitted
    text = json.dumps(health)
    assert PLUG_PW not in text and "not-the-password" not in text and "wrong-password" not in text


def config_of(devices: dict[str, LoopbackShelly]) -> dict[str, object]:
    return {
        "devices": [
            at(devices["plug"], id="plug", password=PLUG_PW, name="Kettle", room="kitchen"),
            at(devices["2pm"], password=PM_PW),  # no id: shelly_<mac>, channels _0 and _1
            at(devices["em"], id="em"),
            at(devices["pro3em"], id="pro3em"),
        ]
    }


async def test_switching_reports_the_devices_state_and_the_next_reading_shows_it(
    devices: dict[str, LoopbackShelly],
) -> None:
    plug, pm = devices["plug"], devices["2pm"]
    async with running(config_of(devices)) as (plugin, out):
        await out.until(lambda: out.of("plug", "relay_state") == [0.0], what="the plug's first reading")
        # Gen1: the relay switches (the device's own state changes) and a poll follows at once.
        assert await plugin.control_device("plug", "on") == {"state": "on"}
        assert plug.status["relays"][0]["ison"] is True and "/relay/0?turn=on" in plug.requests
        await out.until(lambda: out.of("plug", "relay_state")[-1:] == [1.0], what="the plug's new state")
        assert await plugin.control_device("plug", "toggle") == {"state": "off"}
        assert plug.status["relays"][0]["ison"] is False
        # Gen2+: Switch.Toggle, the answer read back, and the device's NotifyStatus pushed (no poll:
        # the interval is an hour).
        channel = "shelly_aabbccddeeff_1"
        await out.until(lambda: out.of(channel, "relay_state") == [0.0], what="the 2PM's first reading")
        assert await plugin.control_device(channel, "toggle") == {"state": "on"}
        assert pm.status["switch:1"]["output"] is True and pm.status["switch:0"]["output"] is False
        await out.until(lambda: out.of(channel, "relay_state")[-1:] == [1.0], what="the pushed new state")
        assert await plugin.control_device(channel, "off") == {"state": "off"}
        assert pm.status["switch:1"]["output"] is False and "Switch.Set" in pm.requests

        for device_id in ("em_0", "em", "pro3em_a", "pro3em"):
            with pytest.raises(ValueError, match="not a switchable channel"):
                await plugin.control_device(device_id, "on")
        with pytest.raises(ValueError, match="switch one of shelly_aabbccddeeff_0, shelly_aabbccddeeff_1"):
            await plugin.control_device("shelly_aabbccddeeff", "on")
        with pytest.raises(ValueError, match="not a device of this Shelly plugin"):
            await plugin.control_device("kasa_1234", "on")
        with pytest.raises(ValueError, match="not one of on, off, toggle"):
            await plugin.control_device("plug", "dim")


async def test_discovery_names_types_and_channels(devices: dict[str, LoopbackShelly]) -> None:
    async with running(config_of(devices)) as (plugin, _):
        found = {d["id"]: d for d in await plugin.discover_devices()}
    assert found["plug"] == {"id": "plug", "name": "Kettle", "type": "plug", "room": "kitchen"}
    assert found["shelly_aabbccddeeff_0"] == {
        "id": "shelly_aabbccddeeff_0",
        "name": "Test Name channel 0",  # the 2PM's own name (Shelly.GetConfig sys.device.name)
        "type": "other",
    }
    assert {"shelly_aabbccddeeff_1", "em_0", "em_1", "pro3em", "pro3em_a", "pro3em_b", "pro3em_c"} <= set(
        found
    )
    assert "shelly_aabbccddeeff" not in found and "em" not in found  # no whole-device totals there
    assert found["pro3em"]["type"] == "meter" and found["pro3em_b"]["name"] == "Test Name phase B"


async def test_a_closed_websocket_is_reconnected_and_pushes_carry_the_device_time(
    devices: dict[str, LoopbackShelly],
) -> None:
    pm = devices["2pm"]
    async with running({"devices": [at(pm, password=PM_PW)]}) as (_, out):
        await out.until(lambda: len(out.of("shelly_aabbccddeeff_0", "energy")) == 1, what="the first poll")
        for ws, _ in list(pm.sockets):
            await ws.close()
        # Reconnected and polled again at once (the interval is an hour): a second reading arrives.
        await out.until(lambda: len(out.of("shelly_aabbccddeeff_0", "energy")) == 2, what="the reconnection")
        assert pm.requests.count("Shelly.GetDeviceInfo") == 2
        seen = len(out.metrics)
        ts = await pm.notify({"switch:0": {"id": 0, "apower": 12.5}})
        await out.until(lambda: 12.5 in out.of("shelly_aabbccddeeff_0", "power"), what="a push after it")
        pushed = out.metrics[seen:]
        # Only the component the push changed (switch:0), at the device's own measurement time.
        assert {m["device_id"] for m in pushed} == {"shelly_aabbccddeeff_0"}
        times = [datetime.fromisoformat(m["time"]).timestamp() for m in pushed]
        assert times == [pytest.approx(ts, abs=1e-5)] * len(pushed)
        # A device clock far from ours is not trusted: the push is stamped on receipt instead.
        before = time.time()
        await pm.notify({"switch:0": {"id": 0, "apower": 13.5}}, ts=1_000_000.0)
        await out.until(lambda: 13.5 in out.of("shelly_aabbccddeeff_0", "power"), what="the second push")
        late = next(m for m in out.metrics if m["value"] == 13.5 and m["metric_type"] == "power")
        assert datetime.fromisoformat(late["time"]).timestamp() >= before


def test_device_passwords_are_secrets_and_the_config_is_checked() -> None:
    manifest = yaml.safe_load((BUILTIN_DIR / "shelly" / "plugin.yaml").read_text())
    config = {"devices": [{"host": "10.0.0.5", "password": "pw-1"}, {"host": "10.0.0.6"}]}
    plain, secrets = plugin_secrets.split(config, manifest["config_schema"])
    assert secrets == {"devices[0].password": "pw-1"} and "pw-1" not in json.dumps(plain)
    problems = ShellyPlugin("shelly", {}).validate_config(
        {
            "devices": [
                {"host": "10.0.0.5", "id": "a"},
                {"host": "10.0.0.5", "id": "a"},
                {"host": "10.0.0.7", "username": "admin"},
            ]
        }
    )
    assert problems == [
        "plugins.shelly.config.devices[1].host: 10.0.0.5 is already device 0",
        "plugins.shelly.config.devices[1].id: 'a' is already used by device 0",
        "plugins.shelly.config.devices[2].password: a username needs its password",
    ]


async def test_a_device_answering_for_the_first_time_is_announced_once(
    devices: dict[str, LoopbackShelly],
) -> None:
    pm = devices["2pm"]
    async with running({"devices": [at(pm, password=PM_PW)]}) as (plugin, out):
        frames: list[dict[str, object]] = []
        plugin._notify = frames.append  # the host's frame hook (what the SDK's devices_changed() uses)
        await out.until(lambda: bool(out.of("shelly_aabbccddeeff_1", "energy")), what="the first poll")
        # Answered before the core asked for the devices: the core is told to ask (again).
        assert frames == [{"type": "devices_changed"}]
        assert {d["id"] for d in await plugin.discover_devices()} == {
            "shelly_aabbccddeeff_0",
            "shelly_aabbccddeeff_1",
        }
        for ws, _ in list(pm.sockets):
            await ws.close()
        await out.until(lambda: len(out.of("shelly_aabbccddeeff_1", "energy")) == 2, what="the reconnection")
        assert frames == [{"type": "devices_changed"}]  # the same channels again: nothing new to tell
