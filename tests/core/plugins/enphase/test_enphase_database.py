"""Envoys to PostgreSQL: the enphase plugin in its own process under the real supervisor, its readings
through the collector and writer. Stored values equal the recorded answers in canonical units (kWh
counters, production as export), each inverter at its own report time; an Envoy whose token is
refused shows in the plugin's health without holding back the others or crashing the plugin."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dbtest import wait_until

from plugins.conftest import CoreFactory, make_settings

from .conftest import FW5, FW5_SERIAL, FW7, FW7_SERIAL, EnvoyFactory, fresh_shift, make_token, recorded

B7, B5 = f"enphase_{FW7_SERIAL}", f"enphase_{FW5_SERIAL}"


async def test_envoy_readings_are_stored_as_recorded(core: CoreFactory, envoys: EnvoyFactory) -> None:
    shift7, shift5 = fresh_shift(FW7), fresh_shift(FW5)
    e7 = await envoys(FW7, time_shift=shift7)
    e5 = await envoys(FW5, time_shift=shift5)
    # a second firmware-7 Envoy with a token of its own, configured with the first Envoy's token
    refused = await envoys(FW7, token=make_token(FW7_SERIAL, expires_in=7200))
    assert refused.token != e7.token
    config = {
        "devices": [
            {"host": e7.host, "token": e7.token},
            {"host": e5.host},  # older firmware: pyenphase's installer login
            {"host": refused.host, "token": e7.token, "id": "garage"},
        ],
        "timeout": 5,
    }
    c = await core(make_settings({"enphase": {"config": config, "poll_interval": 0.5}}))
    runner = c.supervisor.runners["enphase"]
    expected_rows = (7 + 7) + (2 + 40)

    # accepted by the writer = committed, so the rows are there once the first poll was accepted
    await wait_until(lambda: runner.metrics_emitted >= expected_rows, what="every Envoy reading stored")
    rows = await c.database.pool.fetch(
        "SELECT device_id, metric_type, value, unit, time FROM metrics WHERE device_id LIKE 'enphase_%'"
    )
    seen = {(r["device_id"], r["metric_type"]): (r["value"], r["unit"], r["time"]) for r in rows}
    site = {k: v[:2] for k, v in seen.items() if not k[0].split("_")[-1].isdigit()}
    # The recorded values (see test_enphase.py for the fields), Wh stored as kWh.
    assert site == {
        (f"{B7}_production", "power"): (-488, "W"),
        (f"{B7}_production", "energy_exported"): (pytest.approx(3183.793), "kWh"),
        (f"{B7}_consumption", "power"): (477, "W"),
        (f"{B7}_consumption", "energy"): (pytest.approx(5145.154), "kWh"),
        (f"{B7}_net", "power"): (-11, "W"),
        (f"{B7}_net", "energy"): (pytest.approx(3738.205), "kWh"),
        (f"{B7}_net", "energy_exported"): (pytest.approx(1776.769), "kWh"),
        (f"{B5}_production", "power"): (-7907, "W"),
        (f"{B5}_production", "energy_exported"): (pytest.approx(133798.553), "kWh"),
    }
    for firmware, base, shift in ((FW7, B7, shift7), (FW5, B5, shift5)):
        for inverter in recorded(firmware, "api_v1_production_inverters"):
            value, unit, when = seen[(f"{base}_{inverter['serialNumber']}", "power")]
            assert (value, unit) == (-inverter["lastReportWatts"], "W")
            assert when == datetime.fromtimestamp(inverter["lastReportDate"] + shift, UTC)
    assert len(seen) == expected_rows
    assert await c.rows("garage_production") == 0  # nothing of the refused Envoy

    types = dict(await c.database.pool.fetch("SELECT id, type FROM devices WHERE id LIKE 'enphase_%'"))
    assert len(types) == 2 * 3 + 7 + 40 - 2  # FW5 has no consumption / net devices

    await wait_until(
        lambda: "garage" in runner.health.get("devices", {}), what="the health of the refused Envoy"
    )
    garage = runner.health["devices"]["garage"]
    assert "refused the token" in garage["last_error"] and garage["last_success"] is None
    assert runner.health["devices"][B7]["last_error"] is None
    assert runner.crashes == 0 and runner.state == "running"
    assert e7.token not in json.dumps(runner.status())
