"""The kasa plugin class against loopback devices replaying python-kasa's recorded dumps, through the
real python-kasa client (legacy XOR transport over TCP, KLAP over HTTP): readings in canonical units for
both firmware styles, strips per outlet, names, dead / hanging / malformed devices, wrong credentials,
switching errors, discovery and its scope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from aetherlens.plugins.builtin.kasa.plugin import KasaPlugin
from aetherlens.plugins.builtin.kasa.scope import segment_of

from .conftest import HS110, HS300, KP115, KP125, KP303, StartDevice
from .klapserver import KlapServer
from .xorserver import FixtureDevice, closed_port, load_fixture

MakePlugin = Callable[[dict[str, Any]], Awaitable[KasaPlugin]]


@pytest.fixture
async def make_plugin() -> AsyncIterator[MakePlugin]:
    made: list[KasaPlugin] = []

    async def make(config: dict[str, Any]) -> KasaPlugin:
        config = {"timeout": 2.0, **config}
        plugin = KasaPlugin("kasa", config)
        assert plugin.validate_config(config) == []
        await plugin.setup()
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        await plugin.teardown()


def by_device(metrics: Any) -> dict[str, dict[str, tuple[float, str]]]:
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for m in metrics:
        assert (m["metric_type"]) not in out.get(m["device_id"], {}), "one value per device and type"
        out.setdefault(m["device_id"], {})[m["metric_type"]] = (m["value"], m["unit"])
    return out


def realtime(fixture: str) -> dict[str, Any]:
    data: dict[str, Any] = load_fixture(fixture)["emeter"]["get_realtime"]
    return data


def local(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, **extra}


async def test_plugs_report_what_the_firmware_said_in_canonical_units(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    hs110, kp115, kp125 = [await kasa_device(f) for f in (HS110, KP115, KP125)]
    plugin = await make_plugin(
        {"devices": [local(hs110.port), local(kp115.port), local(kp125.port, id="kasa_desk")]}
    )
    got = by_device(await plugin.collect_metrics())
    # HS110 1.2.5 answers in W, V, A and kWh ...
    old = realtime(HS110)
    assert got["kasa_50c7bf000000"] == {
        "power": (old["power"], "W"),
        "energy": (old["total"], "kWh"),
        "voltage": (old["voltage"], "V"),
        "current": (old["current"], "A"),
    }
    assert got["kasa_50c7bf000000"]["power"] == (0.928511, "W")
    # ... KP115 / KP125 in mW, mV, mA and Wh: stored as W, V, A and kWh
    for device_id, fixture in (("kasa_c006c3000000", KP115), ("kasa_desk", KP125)):
        new = realtime(fixture)
        assert got[device_id] == {
            "power": (new["power_mw"] / 1000, "W"),
            "energy": (new["total_wh"] / 1000, "kWh"),
            "voltage": (new["voltage_mv"] / 1000, "V"),
            "current": (new["current_ma"] / 1000, "A"),
        }
    assert got["kasa_desk"]["power"] == (100.277, "W") and got["kasa_desk"]["energy"] == (12.17, "kWh")
    assert set(got) == {"kasa_50c7bf000000", "kasa_c006c3000000", "kasa_desk"}


async def test_a_strip_is_one_device_per_outlet_and_the_kp303_only_switches(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    hs300, kp303 = await kasa_device(HS300), await kasa_device(KP303)
    plugin = await make_plugin({"devices": [local(hs300.port), local(kp303.port, name="Desk strip")]})
    got = by_device(await plugin.collect_metrics())
    rt = realtime(HS300)
    outlets = [f"kasa_c006c3000000_{i}" for i in range(6)]
    # Each outlet's meter was read on its own (context.child_ids), the strip has no device of its own
    # (python-kasa's strip total is only its sum of the outlets), and the KP303 has no meter at all.
    assert sorted(got) == outlets
    for outlet in outlets:
        assert got[outlet] == {
            "power": (rt["power_mw"] / 1000, "W"),
            "energy": (rt["total_wh"] / 1000, "kWh"),
            "voltage": (rt["voltage_mv"] / 1000, "V"),
            "current": (rt["current_ma"] / 1000, "A"),
        }
    children = [r["context"]["child_ids"] for r in hs300.device.requests if "emeter" in r]
    assert len(children) == 6 and len({tuple(c) for c in children}) == 6

    devices = await plugin.discover_devices()
    kp303_children = load_fixture(KP303)["system"]["get_sysinfo"]["children"]
    assert [d for d in devices if d["id"].startswith("kasa_b0a7b9000000")] == [
        {"id": f"kasa_b0a7b9000000_{i}", "name": child["alias"], "type": "plug"}
        for i, child in enumerate(kp303_children)
    ]
    assert len(devices) == 9
    health = (await plugin.get_health())["devices"]
    assert health["kasa_c006c3000000"]["model"] == "HS300" and health["kasa_c006c3000000"]["outlets"] == 6


async def test_names_come_from_the_device_unless_the_config_gives_one(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    hs110, kp125 = await kasa_device(HS110), await kasa_device(KP125)
    hs110.device.sysinfo["alias"] = "Fridge"  # the Kasa app's name (masked in the recorded dump)
    plugin = await make_plugin({"devices": [local(hs110.port), local(kp125.port, id="desk", name="Desk")]})
    devices = await plugin.discover_devices()  # before any poll: it contacts them itself
    assert sorted(devices, key=lambda d: d["id"]) == [
        {"id": "desk", "name": "Desk", "type": "plug"},
        {"id": "kasa_50c7bf000000", "name": "Fridge", "type": "plug"},
    ]


async def test_dead_hanging_and_malformed_devices_do_not_hold_up_the_others(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    good = await kasa_device(HS110)
    hanging = await kasa_device(KP125, mode="hang")
    malformed = await kasa_device(KP115, mode="malformed")
    dead = closed_port()
    plugin = await make_plugin(
        {
            "timeout": 1.0,
            "devices": [
                local(good.port),
                local(hanging.port, id="hanging"),
                local(malformed.port, id="malformed"),
                local(dead, id="dead"),
            ],
        }
    )
    got = by_device(await plugin.collect_metrics())
    # Same poll: the good plug's readings are there, the three others are skipped.
    assert set(got) == {"kasa_50c7bf000000"} and len(got["kasa_50c7bf000000"]) == 4
    assert hanging.device.requests, "the hanging device got the request and never answered"
    health = (await plugin.get_health())["devices"]
    assert health["kasa_50c7bf000000"]["last_error"] is None
    assert health["kasa_50c7bf000000"]["last_success"] is not None
    assert health["hanging"]["last_error"] == "no answer within the timeout"
    assert health["dead"]["last_error"] and health["malformed"]["last_error"]
    for key in ("hanging", "malformed", "dead"):
        assert health[key]["consecutive_errors"] == 1 and health[key]["last_success"] is None
    # A device that recovers is reconnected by the next poll (no restart needed).
    malformed.device.mode = "ok"
    got = by_device(await plugin.collect_metrics())
    assert set(got) == {"kasa_50c7bf000000", "malformed"}
    health = (await plugin.get_health())["devices"]
    assert health["malformed"]["consecutive_errors"] == 0 and health["hanging"]["consecutive_errors"] == 2


async def test_a_poll_where_no_device_answers_is_a_failed_poll(make_plugin: MakePlugin) -> None:
    dead = closed_port()
    plugin = await make_plugin({"devices": [local(dead, id="gone")]})
    with pytest.raises(ConnectionError, match=f"no Kasa device answered: 127.0.0.1:{dead}: "):
        await plugin.collect_metrics()


async def test_switching_refuses_what_is_not_a_plug_or_outlet(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    hs300, hs110 = await kasa_device(HS300), await kasa_device(HS110)
    plugin = await make_plugin({"devices": [local(hs300.port), local(hs110.port)]})
    await plugin.collect_metrics()
    with pytest.raises(ValueError, match="power strip"):
        await plugin.control_device("kasa_c006c3000000", "off")
    with pytest.raises(ValueError, match="not a Kasa plug or outlet"):
        await plugin.control_device("kasa_c006c3000000_6", "off")  # there are outlets 0..5
    with pytest.raises(ValueError, match="not a Kasa plug or outlet"):
        await plugin.control_device("somebody_else", "on")
    with pytest.raises(ValueError, match="unknown action"):
        await plugin.control_device("kasa_50c7bf000000", "dim")
    assert hs300.device.relay_states() == [1] * 6 and hs110.device.relay_states() == [1]
    # The plug itself switches, and the answer is the state the device reports afterwards.
    assert await plugin.control_device("kasa_50c7bf000000", "toggle") == {"state": "off"}
    assert hs110.device.relay_states() == [0]


def test_discovery_target_must_be_a_local_broadcast_address() -> None:
    plugin = KasaPlugin("kasa", {})

    def problems(target: str | None) -> list[str]:
        discovery: dict[str, Any] = {"enabled": True}
        if target is not None:
            discovery["target"] = target
        return plugin.validate_config({"discovery": discovery})

    assert problems("192.168.1.255") == [] and problems("10.0.0.255") == []
    assert problems("169.254.255.255") == []
    for public in ("8.8.8.255", "255.255.255.255", "100.64.0.255"):
        (problem,) = problems(public)
        assert "plugins.kasa.config.discovery.target" in problem and "not a private" in problem
    (problem,) = problems("192.168.1.20")
    assert "not a broadcast address" in problem
    (problem,) = problems(None)
    assert "broadcast address" in problem
    # And what answers from outside the segment is never taken into the polled set.
    segment = segment_of("192.168.1.255")
    assert segment.holds("192.168.1.7") and not segment.holds("192.168.7.7")
    assert not segment.holds("8.8.8.8")


async def test_discovery_adds_what_answers_on_the_segment(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    # Loopback stands in for the segment's broadcast address: a test cannot broadcast on the machine's
    # real network (it would reach real devices and the other tests' servers), while 127.0.0.1 gets the
    # same probe python-kasa sends to 192.168.x.255, answered by one recorded device. The device's TCP
    # server and its discovery answer share the port number, as python-kasa's discovery port does.
    found = await kasa_device(KP115)
    await found.start_discovery()
    listed = await kasa_device(HS110)
    plugin = await make_plugin(
        {
            "devices": [local(listed.port)],
            "discovery": {"enabled": True, "target": "127.0.0.1", "port": found.port, "wait": 2},
        }
    )
    await plugin.discovered_once.wait()
    got = by_device(await plugin.collect_metrics())
    assert set(got) == {"kasa_50c7bf000000", "kasa_c006c3000000"}
    assert got["kasa_c006c3000000"]["power"] == (realtime(KP115)["power_mw"] / 1000, "W")
    health = await plugin.get_health()
    assert health["devices"]["kasa_c006c3000000"]["discovered"] is True
    assert health["discovery"] == {"target": "127.0.0.1", "rounds": 1, "last_error": None}
    assert json.dumps(health)  # health is plain JSON


async def test_a_device_a_later_round_finds_is_announced_to_the_core(
    kasa_device: StartDevice, make_plugin: MakePlugin
) -> None:
    found = await kasa_device(KP115)  # not answering discovery yet: the first round finds nothing
    discovery = {"enabled": True, "target": "127.0.0.1", "port": found.port, "wait": 1}
    plugin = await make_plugin({"discovery": discovery})
    frames: list[dict[str, Any]] = []
    plugin._notify = frames.append  # what the host sends to the core as frames
    await plugin.discovered_once.wait()
    assert frames == [] and (await plugin.discover_devices()) == []

    await found.start_discovery()  # the plug is switched on
    await plugin._discover_once(plugin.config["discovery"])  # the next round (every `interval` s)
    assert frames == [{"type": "devices_changed"}]  # the core then asks for the devices again
    assert {d["id"] for d in await plugin.discover_devices()} == {"kasa_c006c3000000"}


async def test_klap_firmware_needs_the_owner_account_and_wrong_credentials_are_named(
    make_plugin: MakePlugin, caplog: pytest.LogCaptureFixture
) -> None:
    owner, secret, wrong = "owner@example.com", "kasa-owner-secret", "not-the-password"
    servers = [await KlapServer(FixtureDevice.from_fixture(KP125), owner, secret).start() for _ in range(3)]
    try:
        klap = {"host": "127.0.0.1", "username": owner, "transport": "klap"}
        plugin = await make_plugin(
            {
                "devices": [
                    {**klap, "port": servers[0].port, "id": "desk", "password": secret},
                    {**klap, "port": servers[1].port, "id": "locked", "password": wrong},
                    # The plugin-wide account and no transport: python-kasa finds KLAP by itself
                    # (auto; the legacy probe on this port fails first).
                    {"host": "127.0.0.1", "port": servers[2].port, "id": "found"},
                ],
                "username": owner,
                "password": secret,
            }
        )
        got = by_device(await plugin.collect_metrics())
        new = realtime(KP125)
        for device_id in ("desk", "found"):
            assert got[device_id]["power"] == (new["power_mw"] / 1000, "W")
            assert got[device_id]["energy"] == (new["total_wh"] / 1000, "kWh")
        assert "locked" not in got
        health = await plugin.get_health()
        error = health["devices"]["locked"]["last_error"]
        assert error.startswith("AuthenticationError") and "e-mail and password" in error
        # The device never accepted the wrong account's handshake (the client stopped after step 1).
        assert servers[1].handshakes >= 1 and not any(s.verified for s in servers[1].sessions.values())
        everything = json.dumps(health) + caplog.text + repr(plugin.links)
        assert secret not in everything and wrong not in everything
    finally:
        for server in servers:
            await server.close()
