"""Live: a state change in a real HA reaches PostgreSQL through the plugin process and the collector."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from aetherlens.costs.energy import load_energy

from .conftest import CoreFactory, ha_config, ts
from .harness import (
    HEATER_ENERGY,
    HEATER_POWER,
    KETTLE_POWER,
    OWN_ENERGY,
    OWN_POWER,
    PLANT_ENERGY,
    PLUG_ENERGY,
    PLUG_POWER,
    PLUG_VOLTAGE,
    HomeAssistant,
)


async def test_a_state_change_arrives_as_a_metric_in_well_under_a_second(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    core = await core_factory({"homeassistant": {"config": ha_config(ha, backfill_days=0)}})
    plug = await ha.device_of(PLUG_POWER)
    first = await ha.set_lab(PLUG_POWER, 100.5)
    # Initial state or live change, whichever the plugin saw: once it is stored the plugin is streaming.
    await core.wait_rows(
        lambda rows: any(r["time"] == ts(first) for r in rows), plug, "power", what="first reading"
    )
    latencies = []
    for value in (201.0, 202.0, 203.0):
        await ha.call("lab_meter", "set", {"key": "plug_power", "value": value})
        rows = await core.wait_rows(
            lambda rows, v=value: any(r["value"] == v for r in rows), plug, "power", what=f"power {value}"
        )
        seen = time.time()
        stored = next(r for r in rows if r["value"] == value)
        assert stored["unit"] == "W"
        # The row's time is HA's last_updated: the moment HA changed the state (same machine clock).
        latencies.append(seen - stored["time"].timestamp())
    print(f"\nHA state change -> row in PostgreSQL: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")


async def test_units_convert_unavailable_is_skipped_and_own_entities_are_excluded(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    core = await core_factory({"homeassistant": {"config": ha_config(ha, backfill_days=0)}})
    plug, heater, plant = [await ha.device_of(e) for e in (PLUG_POWER, HEATER_POWER, PLANT_ENERGY)]
    gone = await ha.set_lab(PLUG_POWER, "unavailable")
    unknown = await ha.set_lab(PLUG_POWER, "unknown")
    expected = {
        (heater, "power", 1500.0): await ha.set_lab(HEATER_POWER, 1.5),  # kW
        (heater, "energy", 2.5): await ha.set_lab(HEATER_ENERGY, 2500),  # Wh
        (plant, "energy", 4.0): await ha.set_lab(PLANT_ENERGY, 0.004),  # MWh
        (plug, "energy", 3.25): await ha.set_lab(PLUG_ENERGY, 3.25),  # kWh
        ("ha_grid_power", "power", -750.0): await ha.set_grid(-750),  # template sensor, no HA device
        (plug, "power", 42.0): await ha.set_lab(PLUG_POWER, 42),
    }
    await ha.set_lab(PLUG_VOLTAGE, 230)
    rows = await core.wait_rows(
        lambda rows: {(r["device_id"], r["metric_type"], r["value"]) for r in rows} >= set(expected),
        what="every converted reading",
    )
    for (device, kind, value), state in expected.items():
        assert any(
            (r["device_id"], r["metric_type"], r["value"], r["time"]) == (device, kind, value, ts(state))
            for r in rows
        ), (device, kind, value)
        assert next(r for r in rows if r["device_id"] == device and r["metric_type"] == kind)["unit"] == (
            "W" if kind == "power" else "kWh"
        )
    plug_power_times = {r["time"] for r in rows if r["device_id"] == plug and r["metric_type"] == "power"}
    assert ts(gone) not in plug_power_times and ts(unknown) not in plug_power_times  # skipped, not 0
    assert all(r["value"] != 0 for r in rows if r["device_id"] == plug and r["metric_type"] == "power")
    assert {r["metric_type"] for r in rows} <= {"power", "energy"}  # voltage is not a default device class
    own = {f"ha_{e.split('.', 1)[1]}" for e in (OWN_POWER, OWN_ENERGY)}
    assert not own & {r["device_id"] for r in rows}
    assert not any(r["value"] == 1234.0 for r in rows)  # the aetherlens-platform sensor's value
    runner = core.supervisor.runners["homeassistant"]
    await core.wait_rows(
        lambda rows: runner.health.get("skipped", {}).get("unavailable", 0) >= 1, what="health counting it"
    )


async def test_devices_get_names_and_rooms_from_the_registries(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    core = await core_factory(
        {"homeassistant": {"config": ha_config(ha, backfill_days=0, devices={PLANT_ENERGY: "solar_plant"})}}
    )
    found = {d["id"]: d for d in await core.supervisor.discover_devices("homeassistant")}
    plug, heater = await ha.device_of(PLUG_POWER), await ha.device_of(HEATER_POWER)
    assert (found[plug]["name"], found[plug]["room"]) == ("Lab plug", "Workshop")
    assert (found[heater]["name"], found[heater]["room"]) == ("Lab heater", "Cellar")
    assert found["solar_plant"]["name"] == "Lab plant"  # the override keeps HA's name
    assert found["ha_grid_power"]["name"] == "Grid power"
    assert not any("aetherlens" in d for d in found)
    # The core registers them by itself after the plugin started (DeviceDiscovery, as in the runtime).
    await core.wait_devices(
        lambda stored: (
            stored.get(plug) == ("Lab plug", "Workshop") and stored.get(heater) == ("Lab heater", "Cellar")
        )
    )
    state = await ha.set_lab(PLANT_ENERGY, 0.002)
    rows = await core.wait_rows(
        lambda rows: any(r["time"] == ts(state) for r in rows), "solar_plant", "energy"
    )
    assert rows[-1]["value"] == 2.0


async def test_counter_jitter_is_dropped_and_a_reset_reaches_the_cost_engine_as_a_reset(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    core = await core_factory({"homeassistant": {"config": ha_config(ha, backfill_days=0)}})
    plug = await ha.device_of(PLUG_ENERGY)
    warm = await ha.set_lab(PLUG_POWER, 77.0)
    await core.wait_rows(
        lambda rows: any(r["time"] == ts(warm) for r in rows), plug, "power", what="streaming"
    )
    # 10.2 is a drop of under 10 % (jitter, by HA's rule); 0.5 after 11.0 is a real reset.
    states = [await ha.set_lab(PLUG_ENERGY, v) for v in (10.0, 10.5, 10.2, 11.0, 0.5, 1.0)]
    last = ts(states[-1])
    rows = await core.wait_rows(lambda rows: any(r["time"] == last for r in rows), plug, "energy")
    assert ts(states[2]) not in {r["time"] for r in rows}
    async with core.pool.acquire() as conn:
        energy = await load_energy(conn, ts(states[0]), last + timedelta(hours=1), 60, devices=[plug])
    # 10 -> 10.5 -> 11 (+1.0), reset to 0.5 (+0.5), 0.5 -> 1.0 (+0.5); the jitter would have added 10.2.
    assert float(sum(energy.imports[plug].values())) == pytest.approx(2.0)
    assert energy.resets[plug] == 1


async def test_a_device_added_in_ha_while_the_core_runs_gets_its_name_and_room(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    core = await core_factory({"homeassistant": {"config": ha_config(ha, backfill_days=0)}})
    await ha.call("lab_meter", "add_device", {"device": "kettle", "name": "Lab kettle", "area": "Kitchen"})
    state = await ha.set_lab(KETTLE_POWER, 2200.0)
    kettle = await ha.device_of(KETTLE_POWER)
    await core.wait_rows(lambda rows: any(r["time"] == ts(state) for r in rows), kettle, "power")
    # Its readings may come before the plugin's word that its devices changed, so the device may be
    # auto-registered first (named by its id); the discovery that follows names it and sets the room.
    stored = await core.wait_devices(lambda stored: stored.get(kettle) == ("Lab kettle", "Kitchen"))
    assert stored[kettle] == ("Lab kettle", "Kitchen")
