"""The emporia plugin through the real supervisor, against moto's Cognito and a loopback Emporia API.

Every test runs the plugin in a real plugin process: pyemvue signs in with SRP at Cognito, keeps its
tokens, and reads the recorded answers over HTTP; only the plugin's metrics sink is in memory (one test
writes through the collector into PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import stat
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbtest import wait_until
from pyemvue.device import VueDevice, VueUsageDevice

from aetherlens.plugins.builtin.emporia import channels as ch
from aetherlens.plugins.builtin.emporia.cloud import CloudError, EmporiaCloud, retry_after_seconds
from aetherlens.plugins.builtin.emporia.plugin import EmporiaPlugin
from aetherlens.plugins.discovery import BUILTIN_DIR
from aetherlens.plugins.testkit import MemorySink
from plugins.conftest import CoreFactory, SupervisorFactory

from .conftest import PLUGIN, plugin_config, settings_for
from .servers import PASSWORD, USERNAME, Answer, Cognito, EmporiaApi, fixture

MAINS, OVEN, BAR, BALANCE = "emporia_2345_mains", "emporia_2345_1", "emporia_2345_6", "emporia_2345_balance"
PLUG, DEAD_PLUG = "emporia_123458", "emporia_3456"


def recorded_watts() -> dict[str, float]:
    """The recorded usage answer (kWh over the minute), as average W: kWh x 1000 x 60."""
    usage = fixture("usage_1min.json")["deviceListUsages"]["devices"][0]["channelUsages"]
    mains, oven, bar, balance = usage
    kitchen = mains["nestedDevices"][1]["channelUsages"][0]
    return {
        MAINS: mains["usage"] * 60_000,
        OVEN: oven["usage"] * 60_000,
        BAR: bar["usage"] * 60_000,
        BALANCE: balance["usage"] * 60_000,
        PLUG: kitchen["usage"] * 60_000,
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def health(supervisor: Any) -> dict[str, Any]:
    result: dict[str, Any] = await supervisor.runners[PLUGIN].request("health")
    return result


# -- the plugin's own pieces, without a process ---------------------------------------------------------
def test_the_recorded_answers_map_to_one_device_per_channel() -> None:
    devices = [VueDevice().from_json_dictionary(d) for d in fixture("devices.json")["devices"]]
    found = ch.channels(devices)
    assert {k: (c.name, c.type) for k, c in found.items()} == {
        MAINS: ("MyHome", "meter"),  # the mains channel has no name: the Vue's location name
        DEAD_PLUG: ("myplug", "plug"),
        PLUG: ("Kitchen Counter", "plug"),
    }
    answer = fixture("usage_1min.json")["deviceListUsages"]
    parsed = {d["deviceGid"]: VueUsageDevice().from_json_dictionary(d) for d in answer["devices"]}
    flat = {u.device_id: u for u in ch.usages(parsed, singles={3456, 123458})}
    assert {k: u.kwh for k, u in flat.items()} == {
        MAINS: 0.018625023078918456,
        DEAD_PLUG: None,
        PLUG: 5.368702827258442e-05,
        OVEN: 0.0,
        BAR: 0.0020457032945421006,
        BALANCE: 0.00037836666266123273,
    }
    assert flat[BAR].name == "Bar Area"
    assert ch.watts(0.018625023078918456) == pytest.approx(1117.5013847351074)  # 18.6 Wh in a minute
    assert ch.device_id(2345, "8,12", single=False) == "emporia_2345_8-12"


def test_request_interval_below_a_minute_is_refused_with_the_reason() -> None:
    plugin = EmporiaPlugin("emporia", {})
    problems = plugin.validate_config({"username": "you@email.com", "password": "x", "request_interval": 30})
    assert len(problems) == 1
    assert problems[0].startswith("plugins.emporia.config.request_interval: 30 is below 60 s")
    assert "2000 requests a day" in problems[0]
    assert (
        plugin.validate_config({"username": "you@email.com", "password": "x", "request_interval": 60}) == []
    )


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_the_manifest_keeps_the_password_secret_and_polls_once_a_minute() -> None:
    manifest = yaml.safe_load((BUILTIN_DIR / "emporia" / "plugin.yaml").read_text())
    props = manifest["config_schema"]["properties"]
    assert props["password"]["writeOnly"] is True and "writeOnly" not in props["username"]
    assert manifest["poll_interval"] == 60 and manifest["default_enabled"] is False
    assert manifest["permissions"] == ["network"]


# -- end to end --------------------------------------------------------------------------------------
async def test_readings_reach_the_database_in_watts(
    core: CoreFactory, cognito: Cognito, api: EmporiaApi, plugin_dir: Path
) -> None:
    c = await core(settings_for(plugin_dir, plugin_config(cognito, api.url), poll_interval=0.3))
    expected = recorded_watts()

    async def stored() -> dict[str, float]:
        rows = await c.database.pool.fetch(
            "SELECT DISTINCT ON (device_id) device_id, value, unit FROM metrics "
            "WHERE metric_type = 'power' AND device_id LIKE 'emporia_%' ORDER BY device_id, time"
        )
        assert all(r["unit"] == "W" for r in rows)
        return {r["device_id"]: r["value"] for r in rows}

    found: dict[str, float] = {}

    async def poll() -> bool:
        found.update(await stored())
        return set(found) >= set(expected)

    for _ in range(300):
        if await poll():
            break
        await asyncio.sleep(0.05)
    assert found == pytest.approx(expected)  # the plug without data (usage null) is absent, the rest arrive
    first = api.usage_requests()[0]["query"]
    assert first["deviceGids"].replace("+", " ").split() == ["2345", "3456", "123458"]  # one request for all
    # The reading's time is the answer's instant (the loopback API answers for the instant asked).
    when = await c.database.pool.fetchval(
        "SELECT min(time) FROM metrics WHERE device_id = $1 AND metric_type = 'power'", MAINS
    )
    assert when == datetime.fromisoformat(first["instant"])
    status = c.supervisor.runners[PLUGIN].status()
    assert status["restarts"] == 0 and status["last_error"] is None
    report = await health(c.supervisor)
    assert report["devices"][DEAD_PLUG]["last_error"].startswith("no usage for the last minute")
    assert report["devices"][PLUG]["last_error"] is None and report["devices"][PLUG]["model"] == "SSO001"
    assert PASSWORD not in str(report) and "token" not in str(report["devices"])

    devices = {d["id"]: d for d in await c.supervisor.discover_devices(PLUGIN)}
    assert devices[MAINS]["name"] == "MyHome" and devices[BAR]["name"] == "Bar Area"
    assert (devices[PLUG]["name"], devices[PLUG]["type"]) == ("Kitchen Counter", "plug")
    source = await c.database.pool.fetchval("SELECT source FROM devices WHERE id = $1", PLUG)
    assert source == PLUGIN  # auto-registered as this instance's device


async def test_a_restart_signs_in_with_the_kept_tokens_not_the_password(
    supervisor_factory: SupervisorFactory,
    sink: MemorySink,
    cognito: Cognito,
    api: EmporiaApi,
    plugin_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    data_dir = tmp_path / "data"
    for run in (1, 2):
        sup = await supervisor_factory(
            settings_for(plugin_dir, plugin_config(cognito, api.url), data_dir=data_dir)
        )
        await wait_until(lambda: sink.of(PLUG, "power") != [], what=f"run {run}'s readings")
        await sup.stop()
        sink.metrics.clear()
    assert cognito.logins("USER_SRP_AUTH") == 1  # the password was used once, by the first run
    assert cognito.logins("REFRESH_TOKEN_AUTH") >= 2  # the second run signed in with the kept refresh token
    tokens = data_dir / "plugins" / PLUGIN / "state" / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    kept = json.loads(tokens.read_text())
    assert PASSWORD not in tokens.read_text() and kept["username"] == "you@email.com"
    logged = caplog.text  # everything both plugin processes wrote to the core's log
    assert "emporia_loopback" in logged
    assert PASSWORD not in logged and kept["id_token"] not in logged and kept["refresh_token"] not in logged


async def test_revoked_kept_tokens_fall_back_to_the_password(
    supervisor_factory: SupervisorFactory,
    sink: MemorySink,
    cognito: Cognito,
    api: EmporiaApi,
    plugin_dir: Path,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    for run in (1, 2):
        sup = await supervisor_factory(
            settings_for(plugin_dir, plugin_config(cognito, api.url), data_dir=data_dir)
        )
        await wait_until(lambda: sink.of(PLUG, "power") != [], what=f"run {run}'s readings")
        if run == 2:
            assert (await health(sup))["password_logins"] == 1
        await sup.stop()
        sink.metrics.clear()
        # Signed out everywhere (as after a password change): the kept refresh token is revoked.
        cognito.idp.admin_user_global_sign_out(UserPoolId=cognito.pool_id, Username=USERNAME)
    assert cognito.logins("USER_SRP_AUTH") == 2  # run 2's kept tokens were refused, the password was used


async def test_refused_credentials_are_reported_and_not_retried_every_poll(
    supervisor_factory: SupervisorFactory, cognito: Cognito, api: EmporiaApi, plugin_dir: Path
) -> None:
    cognito.refuse_user()
    sup = await supervisor_factory(
        settings_for(plugin_dir, plugin_config(cognito, api.url), poll_interval=0.1)
    )
    runner = sup.runners[PLUGIN]
    await wait_until(lambda: runner.errors >= 1, what="the failed sign-in")
    polls = runner.collections
    await wait_until(lambda: runner.collections >= polls + 5, what="five more polls")
    assert "login failed" in (runner.last_error or "")
    report = await health(sup)
    assert report["last_error"].startswith("login failed") and report["signed_in"] is False
    assert "waiting until" in report["waiting"]
    assert cognito.logins("USER_SRP_AUTH") == 1  # backoff: the five polls after it asked nothing
    assert api.log == [] and runner.errors == 1 and runner.restarts == 0  # no crash loop


async def test_a_429_holds_every_request_back_for_its_retry_after(
    supervisor_factory: SupervisorFactory,
    cognito: Cognito,
    api: EmporiaApi,
    plugin_dir: Path,
    sink: MemorySink,
) -> None:
    api.usage_answers.append(Answer(429, {"Retry-After": "2"}, '{"message": "Too Many Requests"}'))
    sup = await supervisor_factory(
        settings_for(plugin_dir, plugin_config(cognito, api.url), poll_interval=0.1)
    )
    runner = sup.runners[PLUGIN]
    await wait_until(lambda: runner.errors >= 1, what="the 429")
    assert "429" in (runner.last_error or "") and "Retry-After 2 s" in (runner.last_error or "")
    polls = runner.collections
    await wait_until(lambda: len(api.usage_requests()) >= 2, what="the request after Retry-After")
    refused, retried = api.usage_requests()[:2]
    assert refused["status"] == 429 and retried["status"] == 200
    assert retried["at"] - refused["at"] >= 2.0  # the server saw nothing before Retry-After had passed
    assert runner.collections > polls  # polls went on meanwhile, without asking the cloud
    await wait_until(lambda: sink.of(PLUG, "power") != [], what="readings after the wait")
    assert (await health(sup))["rate_limited"] == 1


async def test_a_429_without_retry_after_backs_off_at_least_a_minute(
    supervisor_factory: SupervisorFactory, cognito: Cognito, api: EmporiaApi, plugin_dir: Path
) -> None:
    api.usage_answers.append(Answer(429, {}, '{"message": "Too Many Requests"}'))
    sup = await supervisor_factory(
        settings_for(plugin_dir, plugin_config(cognito, api.url), poll_interval=0.1)
    )
    runner = sup.runners[PLUGIN]
    await wait_until(lambda: runner.errors >= 1, what="the 429")
    assert "no Retry-After; next request in 60 s" in (runner.last_error or "")
    polls = runner.collections
    await wait_until(lambda: runner.collections >= polls + 5, what="five more polls")
    assert len(api.usage_requests()) == 1  # none of them asked the cloud
    assert (await health(sup))["next_request_in"] > 50


async def test_malformed_answers_are_errors_and_the_next_good_one_is_read(
    supervisor_factory: SupervisorFactory,
    cognito: Cognito,
    api: EmporiaApi,
    plugin_dir: Path,
    sink: MemorySink,
) -> None:
    api.usage_answers.extend([Answer(200, {}, "{not json"), Answer(200, {}, '{"deviceListUsages": {}}')])
    sup = await supervisor_factory(
        settings_for(plugin_dir, plugin_config(cognito, api.url), poll_interval=0.1)
    )
    runner = sup.runners[PLUGIN]
    errors: set[str] = set()

    def two_errors() -> bool:
        if runner.last_error:
            errors.add(runner.last_error)
        return runner.errors >= 2

    await wait_until(two_errors, what="two malformed answers")
    await wait_until(lambda: sink.of(MAINS, "power") != [], what="the good answer's readings")
    assert any("malformed answer" in e for e in errors)
    assert sink.of(MAINS, "power")[0]["value"] == pytest.approx(recorded_watts()[MAINS])
    assert runner.restarts == 0


async def test_an_unreachable_api_is_reported_without_a_crash(
    supervisor_factory: SupervisorFactory, cognito: Cognito, plugin_dir: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    sup = await supervisor_factory(settings_for(plugin_dir, plugin_config(cognito, url), poll_interval=0.1))
    runner = sup.runners[PLUGIN]
    await wait_until(lambda: runner.errors >= 2, what="two failed polls")
    assert "cannot reach the Emporia API (ConnectionError)" in (runner.last_error or "")
    assert runner.restarts == 0 and runner.state == "running"


async def test_a_hanging_api_times_out_and_the_next_poll_reads_again(
    supervisor_factory: SupervisorFactory,
    cognito: Cognito,
    api: EmporiaApi,
    plugin_dir: Path,
    sink: MemorySink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    release = asyncio.Event()
    api.usage_answers.append(Answer(hold=release))  # the first usage request gets no answer (yet)
    config = plugin_config(cognito, api.url, timeout=1)
    sup = await supervisor_factory(settings_for(plugin_dir, config, poll_interval=0.1))
    runner = sup.runners[PLUGIN]
    try:
        await wait_until(lambda: runner.errors >= 1, what="the poll that timed out")
        # The first request still hangs at the server, and later polls read the answers that do come.
        await wait_until(lambda: sink.of(MAINS, "power") != [], what="readings while the first request hangs")
        assert not release.is_set() and runner.restarts == 0 and runner.state == "running"
        assert "the Emporia cloud did not finish within 1 s" in caplog.text  # the plugin's own log line
    finally:
        release.set()


async def test_a_cloud_call_still_running_refuses_the_next_one(tmp_path: Path) -> None:
    cloud = EmporiaCloud("you@email.com", "x", tmp_path / "tokens.json", timeout=0.2)
    stuck = threading.Event()
    try:
        with pytest.raises(CloudError, match=r"no answer within 0\.2 s"):
            await cloud._call("usage", stuck.wait)
        with pytest.raises(CloudError, match="the previous cloud call has not returned yet"):
            await cloud._call("usage", lambda: None)
        stuck.set()
        await wait_until(lambda: cloud._running is not None and cloud._running.done(), what="the call ends")
        assert await cloud._call("usage", lambda: 42) == 42
    finally:
        stuck.set()
        cloud.close()
