"""MQTT to PostgreSQL: a Shelly status through the plugin, the supervisor, the collector and the writer
arrives in the vocabulary's units (Wh counters as kWh), on the device the preset names."""

from __future__ import annotations

import json
from typing import Any

import aiomqtt
from dbtest import wait_until

from plugins.conftest import CoreFactory, make_settings

from . import payloads
from .test_mqtt import unique, wait_subscribed


async def test_a_shelly_status_is_stored_in_canonical_units(core: CoreFactory) -> None:
    config = {"broker": "mqtt://127.0.0.1:1883", "presets": ["shelly_gen2"]}
    c = await core(make_settings({"mqtt": {"config": config}}))
    runner = c.supervisor.runners["mqtt"]
    await wait_subscribed(runner)
    prefix = unique("shellyplus1pm")
    component, _, status = payloads.SHELLY[0]
    energy_wh = 123456.7  # the switch's aenergy.total, a counter in Wh
    status = {**status, "aenergy": {**status["aenergy"], "total": energy_wh}}
    async with aiomqtt.Client("127.0.0.1", 1883) as publisher:
        await publisher.publish(f"{prefix}/status/{component}", json.dumps(status), qos=1)
    device = f"{prefix}-switch-0"
    # acknowledged = committed, so the rows are there once the pushes are acknowledged
    await wait_until(lambda: runner.metrics_emitted >= 7, what="the switch's readings acknowledged")
    rows: dict[str, Any] = {}
    for row in await c.database.pool.fetch(
        "SELECT metric_type, value, unit FROM metrics WHERE device_id = $1", device
    ):
        rows[row["metric_type"]] = (row["value"], row["unit"])
    assert rows["energy"] == (energy_wh / 1000, "kWh")
    assert rows["power"] == (8.9, "W") and rows["voltage"] == (237.5, "V")
    registered = await c.database.pool.fetchval("SELECT count(*) FROM devices WHERE id = $1", device)
    assert registered == 1
