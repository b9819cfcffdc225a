"""The ``mqtt`` plugin in a real plugin process under the real supervisor, against real Mosquitto:
the machine's (127.0.0.1:1883, a unique topic prefix per test) and private ones for restarts and TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from dbtest import wait_until

from aetherlens.plugins.discovery import discover
from aetherlens.plugins.runner import PluginRunner
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.plugins.testkit import MemorySink
from plugins.conftest import FAST, make_settings

from . import payloads
from .broker import PrivateBroker, make_certificate

SHARED = "mqtt://127.0.0.1:1883"


def unique(name: str) -> str:
    return f"al{uuid.uuid4().hex[:10]}-{name}"


async def publish(messages: list[tuple[str, Any]], port: int = 1883, **client: Any) -> None:
    """Publish with QoS 1 (each awaited until the broker acknowledged it)."""
    async with aiomqtt.Client("127.0.0.1", port, **client) as publisher:
        for topic, payload in messages:
            if isinstance(payload, dict | list):
                payload = json.dumps(payload)
            await publisher.publish(topic, payload, qos=1)


async def health(runner: PluginRunner) -> dict[str, Any]:
    result: dict[str, Any] = await runner.request("health")
    return result


async def wait_subscribed(runner: PluginRunner, within: float = 30.0) -> None:
    state: dict[str, Any] = {}

    async def check() -> bool:
        if runner.state == "running":
            state.update(await health(runner))
        return bool(state.get("subscribed"))

    await _wait_async(check, within, "the plugin to be connected and subscribed")


async def _wait_async(check: Any, within: float, what: str) -> None:
    """``wait_until`` for an async condition (asking the plugin for its health is a request)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out after {within} s waiting for: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def start_mqtt(supervisor_factory: Any) -> AsyncIterator[Any]:
    async def start(config: dict[str, Any], *, subscribed: bool = True) -> PluginRunner:
        sup = await supervisor_factory(make_settings({"mqtt": {"config": config}}))
        assert "mqtt" not in sup.problems, sup.problems
        runner: PluginRunner = sup.runners["mqtt"]
        if subscribed:
            await wait_subscribed(runner)
        return runner

    yield start


def values(sink: MemorySink, device: str) -> dict[str, tuple[float, str | None]]:
    return {m["metric_type"]: (m["value"], m.get("unit")) for m in sink.of(device)}


async def test_shelly_and_tasmota_presets_read_the_documented_payloads(
    start_mqtt: Any, sink: MemorySink
) -> None:
    runner = await start_mqtt({"broker": SHARED, "presets": ["shelly_gen2", "tasmota"]})
    shelly, plug, duo = unique("shellypro3em"), unique("sonoff"), unique("duo")
    messages: list[tuple[str, Any]] = [(f"{shelly}/status/{c}", p) for c, _, p in payloads.SHELLY]
    messages += [
        (f"{shelly}/status/sys", {"mac": "A8032AB1", "uptime": 10}),  # not a meter: nothing, no error
        (f"tele/{plug}/SENSOR", payloads.TASMOTA_SENSOR["payload"]),
        (f"tele/{duo}/SENSOR", payloads.TASMOTA_TWO_CHANNEL["payload"]),
        (f"tele/{plug}/STATE", {"POWER": "ON"}),  # not SENSOR: not subscribed at all
    ]
    await publish(messages)
    await wait_until(lambda: len(sink.of(f"{duo}-2")) >= 1, what="the last message's readings")
    await wait_until(lambda: len(sink.of(f"{shelly}-em1-1")) >= 7, what="em1:1 and em1data:1")

    switch = values(sink, f"{shelly}-switch-0")
    assert switch["power"] == (8.9, "W") and switch["voltage"] == (237.5, "V")
    assert switch["current"] == (0.068, "A") and switch["frequency"] == (50.0, "Hz")
    assert switch["power_factor"] == (0.56, "ratio")
    assert switch["energy"] == (6.532, "Wh") and switch["energy_exported"] == (0.0, "Wh")
    em = values(sink, f"{shelly}-em-0")
    # em:0 totals and emdata:0 counters land on one device; phases on their own
    assert em == {
        "power": (715.5, "W"),
        "current": (11.086, "A"),
        "energy": (892.97, "Wh"),
        "energy_exported": (536.5, "Wh"),
    }
    phase_b = values(sink, f"{shelly}-em-0-b")
    assert phase_b["power"] == (-951.1, "W") and phase_b["energy_exported"] == (536.5, "Wh")
    assert values(sink, f"{shelly}-em1-1")["energy"] == (2776.53, "Wh")
    assert values(sink, f"{shelly}-em1-1")["power_factor"] == (0.84, "ratio")

    tasmota = values(sink, plug)
    assert tasmota == {
        "power": (45.0, "W"),
        "voltage": (230.0, "V"),
        "current": (0.217, "A"),
        "power_factor": (0.9, "ratio"),
        "energy": (12.102, "kWh"),
        "energy_today": (0.204, "kWh"),
    }
    assert values(sink, f"{duo}-1")["power"] == (10.0, "W") and values(sink, duo)["energy"] == (3.5, "kWh")
    assert not sink.rejected
    state = await health(runner)
    assert state["malformed"] == 0 and runner.crashes == 0


async def test_home_assistant_discovery_picks_up_announced_sensors(
    start_mqtt: Any, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    prefix, base = unique("ha"), unique("garage")
    caplog.set_level(logging.INFO)  # before the start: the plugin process logs at the core's level
    runner = await start_mqtt({"broker": SHARED, "presets": ["ha_discovery"], "discovery_prefix": prefix})
    configs = payloads.ha_configs(prefix, base)
    with caplog.at_level(logging.INFO):
        await publish(list(configs.items()))
        await _wait_async(
            lambda: _health_has(runner, discovered_sensors=2, ignored_sensors=2), 20, "discovery handled"
        )
        await publish(
            [
                (f"{base}/plug/state", {"power": 1.25, "other": 3}),
                (f"{base}/plug/energy", "1530.5"),
                (f"{base}/plug/energy", "unavailable"),  # no reading now: skipped, not stored as 0
                (f"{base}/plug/humidity", "55"),
            ]
        )
        device = f"{base}-plug"
        await wait_until(lambda: len(sink.of(device)) >= 2, what="the discovered sensors' states")
        # an empty config removes a sensor: its later states are not read
        await publish([(f"{prefix}/sensor/{base}/energy/config", ""), (f"{base}/plug/energy", "1600")])
        await publish([(f"{base}/plug/state", {"power": 2.5})])
        await wait_until(lambda: len(sink.of(device, "power")) >= 2, what="the second power state")
    assert [(m["value"], m["unit"]) for m in sink.of(device, "power")] == [(1.25, "kW"), (2.5, "kW")]
    assert [(m["value"], m["unit"]) for m in sink.of(device, "energy")] == [(1530.5, "Wh")]
    assert "device_class 'humidity' is not one AetherLens reads" in caplog.text
    assert "is more than a value_json path" in caplog.text
    state = await health(runner)
    assert state["malformed"] == 0 and state["discovered_sensors"] == 1


async def _health_has(runner: PluginRunner, **expected: Any) -> bool:
    state = await health(runner)
    return all(state.get(key) == value for key, value in expected.items())


async def test_custom_subscriptions_with_paths_numbers_and_segment_templates(
    start_mqtt: Any, sink: MemorySink
) -> None:
    root = unique("home")
    runner = await start_mqtt(
        {
            "broker": SHARED,
            "subscriptions": [
                {"topic": f"{root}/+/power", "device_id": "{2}", "metric_type": "power", "unit": "W"},
                {
                    "topic": f"{root}/meter/+/json",
                    "device_id": "meter-{3}",
                    "metric_type": "energy",
                    "path": "data.totals.0",
                    "unit": "Wh",
                },
            ],
        }
    )
    await publish(
        [
            (f"{root}/fridge/power", "87.5"),
            (f"{root}/meter/main/json", {"data": {"totals": [1234.5, 1]}}),
        ]
    )
    await wait_until(lambda: bool(sink.of("fridge")) and bool(sink.of("meter-main")), what="both readings")
    assert values(sink, "fridge") == {"power": (87.5, "W")}
    assert values(sink, "meter-main") == {"energy": (1234.5, "Wh")}
    assert runner.crashes == 0


async def test_garbage_is_counted_and_logged_with_its_topic_and_never_stops_the_plugin(
    start_mqtt: Any, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    root = unique("junk")
    runner = await start_mqtt(
        {
            "broker": SHARED,
            "presets": ["shelly_gen2", "tasmota"],
            "subscriptions": [
                {"topic": f"{root}/n", "device_id": "junk-n", "metric_type": "power"},
                {"topic": f"{root}/j", "device_id": "junk-j", "metric_type": "power", "path": "a.b"},
            ],
        }
    )
    garbage = [
        (f"{root}/status/switch:0", b"\xff\xfe not json"),
        (f"{root}/status/em:0", "[1, 2, 3]"),
        (f"tele/{root}/SENSOR", {"ENERGY": {"Power": "lots"}}),
        (f"tele/{root}/SENSOR", {"ENERGY": "off"}),
        (f"{root}/n", "abc"),
        (f"{root}/n", "inf"),
        (f"{root}/j", {"a": {"c": 1}}),
        (f"{root}/j", {"a": {"b": True}}),
    ]
    with caplog.at_level(logging.WARNING):
        await publish([*garbage, (f"{root}/n", "42")])
        await wait_until(lambda: bool(sink.of("junk-n")), what="the good message after the garbage")
        await _wait_async(lambda: _health_has(runner, malformed=len(garbage)), 10, "every bad one counted")
    assert values(sink, "junk-n") == {"power": (42.0, None)}
    state = await health(runner)
    assert state["malformed_topics"][f"{root}/n"] == 2 and state["malformed_topics"][f"{root}/j"] == 2
    assert f"malformed payload on {root}/status/switch:0: not JSON" in caplog.text
    assert f"malformed payload on {root}/j: no 'a.b' in the payload" in caplog.text
    assert runner.crashes == 0 and runner.state == "running"
    # the same counts reach the plugin's status (plugins status / GET /api/v1/plugins/mqtt)
    await wait_until(lambda: runner.status()["health"].get("malformed") == len(garbage), what="status health")


async def test_a_broker_restart_is_ridden_out_without_losing_later_messages(
    start_mqtt: Any, sink: MemorySink, tmp_path: Path
) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    await broker.start()
    try:
        runner = await start_mqtt(
            {
                "broker": f"mqtt://127.0.0.1:{broker.port}",
                "subscriptions": [{"topic": "meter/+/power", "device_id": "{2}", "metric_type": "power"}],
                "reconnect_max": 2,
            }
        )
        await publish([("meter/restart/power", "1")], port=broker.port)
        await wait_until(lambda: len(sink.of("restart")) == 1, what="the first reading")
        # Acknowledged to the broker only after the core took it: wait for that, or the broker (which
        # keeps unacknowledged messages across its restart) rightly sends it again.
        await _wait_async(
            lambda: _health_has(runner, unacknowledged=0, acknowledged=1), 20, "the acknowledgement"
        )
        await broker.stop()
        await _wait_async(lambda: _health_has(runner, connected=False), 20, "the plugin to notice")
        await broker.start()
        # Published at once, while the plugin may still be waiting to reconnect: the broker keeps them
        # for the plugin's persistent session (QoS 1), so none may be missing.
        await publish([("meter/restart/power", str(n)) for n in range(2, 12)], port=broker.port)
        await wait_until(lambda: len(sink.of("restart")) >= 11, what="every message after the restart")
        assert sorted(m["value"] for m in sink.of("restart")) == [float(n) for n in range(1, 12)]
        state = await health(runner)
        assert state["connections"] >= 2 and runner.crashes == 0
    finally:
        await broker.stop()


async def test_tls_with_a_ca_file_and_a_password(start_mqtt: Any, sink: MemorySink, tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = make_certificate(folder)
    broker = PrivateBroker(folder, tls=(cert, key), users={"meter": "s3cret-pass"})
    await broker.start()
    try:
        config = {
            "broker": f"mqtts://127.0.0.1:{broker.port}",
            "ca_file": str(cert),
            "username": "meter",
            "password": "s3cret-pass",
            "subscriptions": [{"topic": "tls/+/power", "device_id": "{2}", "metric_type": "power"}],
        }
        runner = await start_mqtt(config)
        context = ssl.create_default_context(cafile=str(cert))
        await publish(
            [("tls/secure/power", "7")],
            port=broker.port,
            tls_context=context,
            username="meter",
            password="s3cret-pass",
        )
        await wait_until(lambda: bool(sink.of("secure")), what="a reading over TLS")
        assert values(sink, "secure") == {"power": (7.0, None)}
        assert runner.crashes == 0
    finally:
        await broker.stop()


async def test_a_wrong_password_keeps_retrying_and_says_why(start_mqtt: Any, tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "auth", users={"meter": "right-password"})
    await broker.start()
    try:
        runner = await start_mqtt(
            {
                "broker": f"mqtt://127.0.0.1:{broker.port}",
                "username": "meter",
                "password": "wrong-password",
                "presets": ["tasmota"],
            },
            subscribed=False,
        )
        await wait_until(lambda: runner.state == "running", what="the plugin to start")

        async def refused() -> bool:
            return "broker 127.0.0.1" in str((await health(runner)).get("last_error"))

        await _wait_async(refused, 20, "the refusal to be reported")
        state = await health(runner)
        assert not state["connected"] and "wrong-password" not in json.dumps(state)
        assert runner.crashes == 0
    finally:
        await broker.stop()


async def test_config_problems_are_named(start_mqtt: Any, supervisor_factory: Any) -> None:
    sup = await supervisor_factory(
        make_settings(
            {
                "mqtt": {
                    "config": {
                        "broker": "http://127.0.0.1",
                        "subscriptions": [{"topic": "a/#/b", "device_id": "x", "metric_type": "power"}],
                    }
                }
            }
        )
    )
    assert "plugins.mqtt.config.broker" in sup.problems["mqtt"]
    sup = await supervisor_factory(
        make_settings(
            {
                "mqtt": {
                    "config": {
                        "broker": SHARED,
                        "subscriptions": [{"topic": "a/#/b", "device_id": "{x}", "metric_type": "power"}],
                    }
                }
            }
        )
    )
    runner = sup.runners["mqtt"]
    await wait_until(lambda: runner.state == "failed", what="validate_config to refuse")
    assert runner.last_exit is not None
    detail = runner.last_exit["detail"]
    assert "plugins.mqtt.config.subscriptions[0].topic" in detail
    assert "plugins.mqtt.config.subscriptions[0].device_id" in detail


class GatedSink(MemorySink):
    """A core whose write path is stuck until ``gate`` opens (a full write queue, a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def submit(self, batch: Any, *, wait: bool = True, source: str = "plugin") -> Any:
        await self.gate.wait()
        return await super().submit(batch, wait=wait, source=source)


async def test_a_message_is_acknowledged_only_once_the_core_took_it_so_a_crash_loses_nothing(
    tmp_path: Path,
) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    await broker.start()
    sink = GatedSink()
    config = {
        "broker": f"mqtt://127.0.0.1:{broker.port}",
        "subscriptions": [{"topic": "meter/+/power", "device_id": "{2}", "metric_type": "power"}],
    }
    sup = Supervisor(
        make_settings({"mqtt": {"config": config}}, data_dir=tmp_path / "data"),
        sink,
        plugins=discover(make_settings({}), include_packages=False),
        options=FAST,
    )
    await sup.start()
    try:
        runner = sup.runners["mqtt"]
        await wait_subscribed(runner)
        await publish([("meter/crash/power", str(n)) for n in (1, 2, 3)], port=broker.port)

        async def held() -> bool:
            state = await health(runner)
            return bool(state["readings"] == 3 and state["unacknowledged"] == 3)

        # The plugin has the three readings and is waiting for the core; the broker still has them.
        await _wait_async(held, 20, "three readings held, unacknowledged")
        first_pid = runner.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await wait_until(lambda: runner.pid != first_pid and runner.state == "running", what="a restart")
        sink.gate.set()
        # The restarted plugin (same persistent session) gets them again from the broker.
        await wait_until(lambda: len(sink.of("crash")) >= 3, what="the three readings after the crash")
        assert sorted(m["value"] for m in sink.of("crash")) == [1.0, 2.0, 3.0]

        async def acknowledged() -> bool:
            state = await health(runner)
            return bool(state["unacknowledged"] == 0 and state["acknowledged"] == 3)

        await _wait_async(acknowledged, 20, "the three acknowledged once the core took them")
    finally:
        await sup.stop()
        await broker.stop()
