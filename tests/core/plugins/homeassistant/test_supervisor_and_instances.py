"""Add-on mode through a Supervisor-proxy stand-in (502 while HA is down), and several instances."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from .conftest import CoreFactory, ha_config, ts
from .harness import HEATER_POWER, PLUG_POWER, HomeAssistant
from .proxy import SupervisorProxy

ADDON_TOKEN = "addon-supervisor-token"


@pytest.fixture
async def proxy(ha: HomeAssistant, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SupervisorProxy]:
    instance = SupervisorProxy(ha, ADDON_TOKEN)
    await instance.start()
    # The add-on's environment: the core passes it on to plugins with the `supervisor` permission.
    monkeypatch.setenv("SUPERVISOR_TOKEN", ADDON_TOKEN)
    yield instance
    await instance.close()


def addon_config(proxy: SupervisorProxy, **extra: object) -> dict[str, object]:
    # No url, no token: the Supervisor proxy, moved to the loopback stand-in.
    return {"supervisor_api_url": proxy.api_url, "supervisor_ws_url": proxy.ws_url, **extra}


async def test_supervisor_proxy_mode_and_a_502_while_ha_restarts(
    ha: HomeAssistant, proxy: SupervisorProxy, core_factory: CoreFactory
) -> None:
    core = await core_factory(
        {"homeassistant": {"config": addon_config(proxy, backfill_days=1, reconnect_max=1)}}
    )
    plug = await ha.device_of(PLUG_POWER)
    sent = [await ha.set_lab(PLUG_POWER, 401.0)]
    await core.wait_rows(lambda rows: ts(sent[0]) in {r["time"] for r in rows}, plug, "power")
    runner = core.supervisor.runners["homeassistant"]
    assert runner.health["mode"] == "supervisor" and ADDON_TOKEN not in json.dumps(runner.status())

    await ha.stop()
    await core.wait_rows(lambda rows: proxy.bad_gateway >= 2, what="the plugin retrying against a 502")
    assert runner.health["connected"] is False and "502" in str(runner.health["last_error"])
    await ha.start()
    sent.append(await ha.set_lab(PLUG_POWER, 402.0))
    rows = await core.wait_rows(
        lambda rows: {ts(s) for s in sent} <= {r["time"] for r in rows}, plug, "power", within=60
    )
    assert proxy.ws_sessions >= 2 and runner.crashes == 0
    assert await core.duplicates() == []
    assert [r["value"] for r in rows if r["time"] in {ts(s) for s in sent}] == [401.0, 402.0]


async def test_two_instances_each_with_its_own_config_and_state(
    ha: HomeAssistant, proxy: SupervisorProxy, core_factory: CoreFactory
) -> None:
    core = await core_factory(
        {
            "ha_url": {
                "plugin": "homeassistant",
                "config": ha_config(ha, backfill_days=0, entities=[PLUG_POWER]),
            },
            "ha_addon": {
                "plugin": "homeassistant",
                "config": addon_config(proxy, backfill_days=0, entities=["sensor.lab_heater_*"]),
            },
        }
    )
    plug, heater = await ha.device_of(PLUG_POWER), await ha.device_of(HEATER_POWER)
    a, b = await ha.set_lab(PLUG_POWER, 55.0), await ha.set_lab(HEATER_POWER, 0.25)
    await core.wait_rows(lambda rows: ts(a) in {r["time"] for r in rows}, plug, "power")
    await core.wait_rows(lambda rows: any(r["value"] == 250.0 for r in rows), heater, "power")
    runners = core.supervisor.runners
    assert runners["ha_url"].health["mode"] == "url" and runners["ha_addon"].health["mode"] == "supervisor"
    assert runners["ha_url"].health["entities_tracked"] == 1
    state = core.settings.data_dir / "plugins"
    marks_url = json.loads((state / "ha_url" / "state" / "watermarks.json").read_text())["entities"]
    marks_addon = json.loads((state / "ha_addon" / "state" / "watermarks.json").read_text())["entities"]
    assert set(marks_url) == {PLUG_POWER}
    assert PLUG_POWER not in marks_addon and HEATER_POWER in marks_addon
    assert b["state"] == "0.25"
