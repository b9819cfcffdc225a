"""The enphase plugin class against loopback Envoys, through the real pyenphase: readings in the
vocabulary's units and signs, token and digest auth, and each way an Envoy can fail a poll."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from aetherlens.plugins.builtin.enphase.link import EnvoyReadError
from aetherlens.plugins.builtin.enphase.plugin import EnphasePlugin

from .conftest import FW5, FW5_SERIAL, FW7, FW7_SERIAL, EnvoyFactory, closed_port, make_token, recorded

B7, B5 = f"enphase_{FW7_SERIAL}", f"enphase_{FW5_SERIAL}"
PluginFactory = Callable[..., Any]


@pytest.fixture
async def plugin() -> AsyncIterator[PluginFactory]:
    made: list[EnphasePlugin] = []

    async def make(devices: list[dict[str, Any]], timeout: float = 5) -> EnphasePlugin:
        p = EnphasePlugin("enphase", {"devices": devices, "timeout": timeout})
        assert p.validate_config(p.config) == []
        await p.setup()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.teardown()


def by_key(metrics: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, str, str]]:
    out = {(m["device_id"], m["metric_type"]): (m["value"], m["unit"], m["time"]) for m in metrics}
    assert len(out) == len(metrics), "one reading per device and type per poll"
    return out


def inverter_expectations(
    firmware: str, base: str, shift: int
) -> dict[tuple[str, str], tuple[float, str, str]]:
    """Each inverter of the dump: its lastReportWatts (as export: negative) at its lastReportDate."""
    return {
        (f"{base}_{inv['serialNumber']}", "power"): (
            -inv["lastReportWatts"],
            "W",
            datetime.fromtimestamp(inv["lastReportDate"] + shift, UTC).isoformat(),
        )
        for inv in recorded(firmware, "api_v1_production_inverters")
    }


async def test_firmware_7_with_cts_production_consumption_net_and_inverters(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    envoy = await envoys(FW7, time_shift=1000)
    p = await plugin([{"host": envoy.host, "token": envoy.token}])
    got = by_key(list(await p.collect_metrics()))
    site = {k: v[:2] for k, v in got.items() if not k[0].split("_")[-1].isdigit()}
    # production.json: production[eim] wNow 488.154, whLifetime 3183793.303; consumption[total]
    # wNow 476.686, whLifetime 5145153.621; consumption[net] wNow -11.468. ivp/meters/readings, the
    # net-consumption CT (eid 704643584): actEnergyDlvd 3738205.152, actEnergyRcvd 1776768.541.
    # pyenphase rounds each to whole W / Wh; Wh go to the core as Wh (it stores kWh).
    assert site == {
        (f"{B7}_production", "power"): (-488, "W"),
        (f"{B7}_production", "energy_exported"): (3183793, "Wh"),
        (f"{B7}_consumption", "power"): (477, "W"),
        (f"{B7}_consumption", "energy"): (5145154, "Wh"),
        (f"{B7}_net", "power"): (-11, "W"),
        (f"{B7}_net", "energy"): (3738205, "Wh"),
        (f"{B7}_net", "energy_exported"): (1776769, "Wh"),
    }
    inverters = {k: v for k, v in got.items() if k[0].split("_")[-1].isdigit()}
    assert inverters == inverter_expectations(FW7, B7, 1000) and len(inverters) == 7
    assert "/auth/check_jwt" in envoy.requests
    health = await p.get_health()
    device = health["devices"][B7]
    assert device["firmware"] == "7.6.175" and device["inverters"] == 7 and device["last_error"] is None
    assert "net-consumption CT" in device["model"] and device["last_success"] is not None
    assert envoy.token not in json.dumps(health)


@pytest.mark.parametrize("username", [None, "envoy"])
async def test_older_firmware_digest_login_reads_production_and_every_inverter(
    envoys: EnvoyFactory, plugin: PluginFactory, username: str | None
) -> None:
    # No username: pyenphase logs in as installer with the password it derives from the serial;
    # "envoy" without a password: the serial's last six digits. The loopback Envoy checks the digest.
    envoy = await envoys(FW5)
    p = await plugin([{"host": envoy.host, **({"username": username} if username else {})}])
    got = by_key(list(await p.collect_metrics()))
    # api/v1/production: wattsNow 7907, wattHoursLifetime 133798553 (no CTs: no consumption, no net)
    site = {k: v[:2] for k, v in got.items() if k[0].endswith("_production")}
    assert site == {
        (f"{B5}_production", "power"): (-7907, "W"),
        (f"{B5}_production", "energy_exported"): (133798553, "Wh"),
    }
    inverters = {k: v for k, v in got.items() if not k[0].endswith("_production")}
    assert inverters == inverter_expectations(FW5, B5, 0) and len(inverters) == 40
    assert envoy.requests.count("/api/v1/production/inverters") >= 2  # challenged, then answered
    assert "warning" not in (await p.get_health())["devices"][B5]


async def test_older_firmware_wrong_local_password_is_named_in_health(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    envoy = await envoys(FW5)
    p = await plugin([{"host": envoy.host, "username": "envoy", "password": "not-it"}])
    got = by_key(list(await p.collect_metrics()))
    assert {k[0] for k in got} == {f"{B5}_production"}  # pyenphase drops the refused inverter list
    device = (await p.get_health())["devices"][B5]
    assert "refused this local user" in device["warning"] and "not-it" not in json.dumps(device)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("eyJhbGciOiJFUzI1NiJ9.not-this-envoys.token", "refused the token"),
        (make_token(FW7_SERIAL, expires_in=-86400), "token expired on"),
        (None, "firmware 7.6.175 needs a token"),
    ],
    ids=["wrong", "expired", "missing"],
)
async def test_firmware_7_without_a_good_token_fails_with_a_clear_error(
    envoys: EnvoyFactory, plugin: PluginFactory, token: str | None, expected: str
) -> None:
    envoy = await envoys(FW7)
    p = await plugin([{"host": envoy.host, **({"token": token} if token else {})}])
    for _ in range(2):  # and again on the next poll: nothing is left half-connected
        with pytest.raises(EnvoyReadError, match=expected):
            await p.collect_metrics()
    device = (await p.get_health())["devices"][B7]
    assert expected in device["last_error"] and device["consecutive_errors"] == 2
    assert device["last_success"] is None
    if token:
        assert token not in json.dumps(await p.get_health())
    assert not any(r.startswith("/production") for r in envoy.requests)  # nothing read unauthenticated


async def test_an_unreachable_envoy_is_skipped_and_the_other_still_read(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    envoy = await envoys(FW7)
    dead = f"127.0.0.1:{closed_port()}"
    p = await plugin([{"host": dead}, {"host": envoy.host, "token": envoy.token}], timeout=2)
    got = by_key(list(await p.collect_metrics()))
    assert (f"{B7}_production", "power") in got
    health = (await p.get_health())["devices"]
    assert health[dead]["last_error"].startswith(f"Envoy at {dead}: ")
    assert "connect" in health[dead]["last_error"] and health[dead]["consecutive_errors"] == 1
    assert health[B7]["last_error"] is None


async def test_a_malformed_answer_is_an_error_and_the_envoy_is_read_again_once_it_recovers(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    envoy = await envoys(FW7)
    p = await plugin([{"host": envoy.host, "token": envoy.token}])
    assert by_key(list(await p.collect_metrics()))
    envoy.malformed = True
    with pytest.raises(EnvoyReadError, match="malformed answer while reading"):
        await p.collect_metrics()
    envoy.malformed = False
    assert (f"{B7}_net", "energy") in by_key(list(await p.collect_metrics()))
    device = (await p.get_health())["devices"][B7]
    assert device["last_error"] is None and device["consecutive_errors"] == 0


async def test_an_envoy_that_answers_garbage_from_the_start_has_no_production(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    envoy = await envoys(FW7)
    envoy.malformed = True
    p = await plugin([{"host": envoy.host, "token": envoy.token}])
    with pytest.raises(EnvoyReadError, match="no production data"):
        await p.collect_metrics()


async def test_a_hanging_envoy_does_not_hold_back_the_other(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    good, wedged = await envoys(FW7), await envoys(FW5)
    p = await plugin([{"host": wedged.host}, {"host": good.host, "token": good.token}], timeout=1.5)
    assert len(by_key(list(await p.collect_metrics()))) == (7 + 7) + (2 + 40)  # both read: site + inverters
    wedged.hang = True
    got = by_key(list(await p.collect_metrics()))
    assert {k[0] for k in got} >= {f"{B7}_production", f"{B7}_consumption", f"{B7}_net"}
    assert not any(k[0].startswith(B5) for k in got)
    health = (await p.get_health())["devices"]
    assert health[B5]["last_error"] == f"Envoy at {wedged.host}: no answer within 1.5 s while reading"
    assert health[B7]["consecutive_errors"] == 0


async def test_discovery_lists_the_site_devices_and_each_inverter(
    envoys: EnvoyFactory, plugin: PluginFactory
) -> None:
    e7, e5 = await envoys(FW7), await envoys(FW5)
    p = await plugin([{"host": e7.host, "token": e7.token, "name": "Roof"}, {"host": e5.host, "id": "barn"}])
    devices = {d["id"]: (d["name"], d["type"]) for d in await p.discover_devices()}
    assert devices[f"{B7}_production"] == ("Roof production", "inverter")
    assert devices[f"{B7}_consumption"] == ("Roof consumption", "meter")
    assert devices[f"{B7}_net"] == ("Roof grid (net)", "meter")
    assert devices["barn_production"] == (f"Envoy {FW5_SERIAL} production", "inverter")
    inverters = {i["serialNumber"] for i in recorded(FW5, "api_v1_production_inverters")}
    assert {d for d in devices if d.startswith("barn_")} == {"barn_production"} | {
        f"barn_{s}" for s in inverters
    }
    assert devices["barn_121547059079"] == (f"Envoy {FW5_SERIAL} inverter 121547059079", "inverter")
    assert len(devices) == 3 + 7 + 1 + 40


def test_config_problems_name_the_key() -> None:
    p = EnphasePlugin("enphase", {})
    problems = p.validate_config(
        {"devices": [{"host": "10.0.0.5"}, {"host": "10.0.0.5"}, {"host": "10.0.0.6", "password": "x"}]}
    )
    assert problems == [
        "plugins.enphase.config.devices[1].host: '10.0.0.5' is already devices[0].host",
        "plugins.enphase.config.devices[2].password: give 'username' with it",
    ]
