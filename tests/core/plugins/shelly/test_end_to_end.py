"""Shelly devices → the plugin in its own process under the real supervisor → collector → writer →
PostgreSQL: the stored readings equal the recorded answers in canonical units, a Gen2+ push is stored
without waiting for a poll, and ``POST /api/v1/devices/{id}/control`` switches the loopback relay (200
with the device's state; 409 ``not_controllable`` for a metering-only channel)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aetherlens.api.app import create_app
from aetherlens.api.context import ApiContext, StaticCapabilities
from aetherlens.api.security import AUTH_SERVICE_KEY
from aetherlens.config import Settings
from plugins.conftest import Core, CoreFactory, make_settings

from .harness import wait_async
from .loopback import LoopbackShelly, closed_port

PLUG_PW = "plug-password-1"
PM_PW = "2pm-password-22"
PM = "shelly_aabbccddeeff"  # the 2PM has no configured id: shelly_<its mac>


@pytest.fixture
async def devices() -> AsyncIterator[dict[str, LoopbackShelly]]:
    made = {
        "plug": await LoopbackShelly("gen1_plug_s.json", password=PLUG_PW).start(),
        "2pm": await LoopbackShelly("gen2_plus_2pm.json", password=PM_PW).start(),
        "em": await LoopbackShelly("gen1_em.json").start(),
        "3em": await LoopbackShelly("gen1_3em.json").start(),
        "pro3em": await LoopbackShelly("gen2_pro_3em.json").start(),
        "plugs": await LoopbackShelly("gen2_plus_plug_s.json").start(),
        "locked": await LoopbackShelly("gen2_plus_plug_s.json", password=PM_PW).start(),
    }
    yield made
    for server in made.values():
        await server.stop()


async def stored(c: Core) -> dict[tuple[str, str], tuple[float, str]]:
    """The newest stored value of each (device, metric)."""
    rows = await c.database.pool.fetch(
        "SELECT DISTINCT ON (device_id, metric_type) device_id, metric_type, value, unit"
        " FROM metrics ORDER BY device_id, metric_type, time DESC"
    )
    return {(r["device_id"], r["metric_type"]): (r["value"], r["unit"]) for r in rows}


def expected(devices: dict[str, LoopbackShelly]) -> dict[tuple[str, str], tuple[float, str]]:
    """The recorded answers, converted by hand: watt-minutes and Wh to kWh, |pf|."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    plug = devices["plug"].recorded
    out[("plug", "energy")] = (plug["meters"][0]["total"] / 60 / 1000, "kWh")
    out[("plug", "power")] = (plug["meters"][0]["power"], "W")
    out[("plug", "temperature")] = (plug["tmp"]["tC"], "°C")
    out[("plug", "relay_state")] = (0.0, "state")
    for ch in ("0", "1"):
        switch = devices["2pm"].recorded[f"switch:{ch}"]
        out[(f"{PM}_{ch}", "energy")] = (switch["aenergy"]["total"] / 1000, "kWh")
        out[(f"{PM}_{ch}", "voltage")] = (switch["voltage"], "V")
        out[(f"{PM}_{ch}", "frequency")] = (switch["freq"], "Hz")
    for i, meter in enumerate(devices["3em"].recorded["emeters"]):
        out[(f"em3_{i}", "energy")] = (meter["total"] / 1000, "kWh")
        out[(f"em3_{i}", "energy_exported")] = (meter["total_returned"] / 1000, "kWh")
        out[(f"em3_{i}", "current")] = (meter["current"], "A")
        out[(f"em3_{i}", "power_factor")] = (abs(meter["pf"]), "ratio")
    out[("em3", "power")] = (devices["3em"].recorded["total_power"], "W")
    em = devices["em"].recorded["emeters"][0]
    out[("em_0", "power")] = (em["power"], "W")
    out[("em_0", "power_factor")] = (abs(em["pf"]), "ratio")  # recorded -0.66
    out[("em_0", "energy_exported")] = (em["total_returned"] / 1000, "kWh")
    pro = devices["pro3em"].recorded
    for p in "abc":
        out[(f"pro3em_{p}", "power")] = (pro["em:0"][f"{p}_act_power"], "W")
        out[(f"pro3em_{p}", "energy")] = (pro["emdata:0"][f"{p}_total_act_energy"] / 1000, "kWh")
        out[(f"pro3em_{p}", "energy_exported")] = (pro["emdata:0"][f"{p}_total_act_ret_energy"] / 1000, "kWh")
    out[("pro3em", "power")] = (pro["em:0"]["total_act_power"], "W")
    out[("pro3em", "energy")] = (pro["emdata:0"]["total_act"] / 1000, "kWh")
    out[("pro3em", "energy_exported")] = (pro["emdata:0"]["total_act_ret"] / 1000, "kWh")
    plugs = devices["plugs"].recorded["switch:0"]
    out[("plugs", "energy")] = (plugs["aenergy"]["total"] / 1000, "kWh")
    out[("plugs", "power")] = (plugs["apower"], "W")
    out[("plugs", "relay_state")] = (1.0, "state")
    return out


def config(devices: dict[str, LoopbackShelly], dead_port: int) -> dict[str, Any]:
    def at(name: str, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": devices[name].port, **extra}

    return {
        "interval": 3600,  # one poll when the plugin starts: every later row is a push or a control's poll
        "timeout": 3,
        "devices": [
            at("plug", id="plug", password=PLUG_PW),
            at("2pm", password=PM_PW),
            at("em", id="em"),
            at("3em", id="em3"),
            at("pro3em", id="pro3em"),
            at("plugs", id="plugs"),
            {"host": "127.0.0.1", "port": dead_port, "id": "dead"},
            at("locked", id="locked", password="not-the-password"),
        ],
    }


async def test_readings_pushes_and_control_end_to_end(
    devices: dict[str, LoopbackShelly], core: CoreFactory
) -> None:
    c = await core(make_settings({"shelly": {"config": config(devices, closed_port())}}))
    want = expected(devices)

    async def all_stored() -> bool:
        return set(want) <= set(await stored(c))

    await wait_async(all_stored, within=20, what="every device's first readings in the database")
    got = await stored(c)
    for key, (value, unit) in want.items():
        assert got[key][1] == unit, key
        assert got[key][0] == pytest.approx(value, rel=1e-9), key
    # A device that is not there is in the plugin's health; the others were stored regardless.
    runner = c.supervisor.runners["shelly"]

    async def failures_in_health() -> bool:
        devices = (runner.status().get("health") or {}).get("devices", {})
        dead, locked = (str(devices.get(d, {}).get("last_error")) for d in ("dead", "locked"))
        return "cannot connect" in dead and "wrong or missing credentials" in locked

    await wait_async(failures_in_health, what="the unreachable and the locked device's errors in the health")
    status = str(runner.status())
    assert PLUG_PW not in status and PM_PW not in status and "not-the-password" not in status
    assert not [k for k in got if k[0] in ("dead", "locked")]

    # A Gen2+ push: stored without a poll (the next poll is an hour away).
    await devices["2pm"].notify({"switch:1": {"id": 1, "apower": 51.3, "current": 0.225}})

    async def pushed() -> bool:
        now = await stored(c)
        return now.get((f"{PM}_1", "power")) == (51.3, "W") and now.get((f"{PM}_1", "current")) == (
            0.225,
            "A",
        )

    await wait_async(pushed, what="the pushed reading in the database")

    async with ApiClient(c) as (client, key):
        headers = {"Authorization": f"Bearer {key}"}
        resp = await client.post("/api/v1/devices/plug/control", json={"action": "on"}, headers=headers)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"state": "on"}
        assert devices["plug"].status["relays"][0]["ison"] is True

        async def plug_on() -> bool:
            return (await stored(c)).get(("plug", "relay_state")) == (1.0, "state")

        await wait_async(plug_on, what="the plug's next reading showing it on")

        resp = await client.post(
            f"/api/v1/devices/{PM}_0/control", json={"action": "toggle"}, headers=headers
        )
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"state": "on"}
        assert devices["2pm"].status["switch:0"]["output"] is True

        async def pm_on() -> bool:
            return (await stored(c)).get((f"{PM}_0", "relay_state")) == (1.0, "state")

        await wait_async(pm_on, what="the 2PM's pushed state")

        for meter in ("pro3em_a", "em_0"):
            resp = await client.post(
                f"/api/v1/devices/{meter}/control", json={"action": "on"}, headers=headers
            )
            assert resp.status == 409, await resp.text()
            error = (await resp.json())["error"]
            assert error["code"] == "not_controllable" and "not a switchable channel" in error["message"]

    sources = await c.database.pool.fetch("SELECT DISTINCT source FROM devices WHERE id LIKE 'pro3em%'")
    assert [r["source"] for r in sources] == ["shelly"]


class ApiClient:
    """The core's HTTP API on the same database, with the running supervisor (as ``serve`` wires it)."""

    def __init__(self, c: Core) -> None:
        self.c = c
        self.client: TestClient[Any, Any] | None = None

    async def __aenter__(self) -> tuple[TestClient[Any, Any], str]:
        data_dir = Path(tempfile.mkdtemp(prefix="aetherlens-shelly-api-"))
        settings = Settings(data_dir=data_dir, auth={"admin_password": "admin-password-123"})
        context = ApiContext(
            settings=settings,
            pool=self.c.database.pool,
            capabilities=StaticCapabilities({"timescaledb": False, "timescaledb_tsl": False}),
            supervisor=self.c.supervisor,
            instance_id="shelly-test",
            version="0.1.0-test",
        )
        self.client = TestClient(TestServer(create_app(context)))
        await self.client.start_server()
        key = (await self.client.app[AUTH_SERVICE_KEY].create_key("control", ["control"])).key
        return self.client, key

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.close()
