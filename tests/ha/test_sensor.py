"""Every sensor's state and attributes, from the answers recorded from the core."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from homeassistant.components.sensor import (
    ATTR_OPTIONS,
    ATTR_STATE_CLASS,
    SensorDeviceClass,
    SensorStateClass,
)
from homeassistant.const import ATTR_DEVICE_CLASS, ATTR_UNIT_OF_MEASUREMENT, STATE_UNKNOWN
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.aetherlens.const import DOMAIN

from .conftest import ACTIVE_TARIFF, INSTANCE_ID, CoreServer, load_fixture

SUMMARY = load_fixture("costs_summary.json")
TODAY = {i["device_id"]: i for i in load_fixture("costs_devices_today.json")["items"]}
CURRENT = {d["device_id"]: d["metrics"] for d in load_fixture("metrics_current.json")["devices"]}
COMPARISON = load_fixture("costs_comparison.json")


def state(hass: HomeAssistant, unique_suffix: str, platform: str = "sensor") -> State:
    registry = er.async_get(hass)
    entity_id = registry.async_get_entity_id(platform, DOMAIN, f"{INSTANCE_ID}_{unique_suffix}")
    assert entity_id is not None, f"no entity {unique_suffix}"
    found = hass.states.get(entity_id)
    assert found is not None
    return found


def last_reset(value: str) -> str:
    return datetime.fromisoformat(value).isoformat()


async def test_device_sensors(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    for device_id, metrics in CURRENT.items():
        if "power" in metrics:
            power = state(hass, f"{device_id}_power")
            assert float(power.state) == pytest.approx(metrics["power"]["value"], rel=1e-12)
            assert power.attributes[ATTR_UNIT_OF_MEASUREMENT] == "W"
            assert power.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.POWER
            assert power.attributes[ATTR_STATE_CLASS] == SensorStateClass.MEASUREMENT
        if "energy" in metrics:
            energy = state(hass, f"{device_id}_energy")
            assert float(energy.state) == pytest.approx(metrics["energy"]["value"], rel=1e-12)
            assert energy.attributes[ATTR_UNIT_OF_MEASUREMENT] == "kWh"
            assert energy.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.ENERGY
            assert energy.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
        if device_id not in TODAY:
            continue  # the site meter (site.meter_device) gets no share of the bill
        cost = state(hass, f"{device_id}_cost_today")
        assert float(cost.state) == pytest.approx(TODAY[device_id]["cost"], rel=1e-12)
        assert cost.attributes[ATTR_UNIT_OF_MEASUREMENT] == "USD"
        assert cost.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.MONETARY
        assert cost.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL
        assert cost.attributes["last_reset"] == last_reset(SUMMARY["day_start"])
        assert cost.attributes["kwh"] == TODAY[device_id]["kwh"]
        assert cost.attributes["estimated"] is True
        cycle = state(hass, f"{device_id}_cost_cycle")
        # The recorded cycle starts at the same midnight as the day: the same answer.
        assert float(cycle.state) == pytest.approx(TODAY[device_id]["cost"], rel=1e-12)
        assert cycle.attributes["last_reset"] == last_reset(SUMMARY["cycle_start"])
    # The solar inverter reports no import counter: no energy sensor; the meter gets no cost share.
    registry = er.async_get(hass)
    assert registry.async_get_entity_id("sensor", DOMAIN, f"{INSTANCE_ID}_sim-h001-solar_energy") is None
    assert registry.async_get_entity_id("sensor", DOMAIN, f"{INSTANCE_ID}_sim-h001-mains_cost_today") is None


async def test_cycle_costs_from_cycle_start(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    core.data["costs_summary"]["cycle_start"] = "2026-11-01T00:00:00+00:00"
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    cycle_items = {i["device_id"]: i for i in load_fixture("costs_devices_cycle_nov.json")["items"]}
    rack = state(hass, "sim-h001-rack_cost_cycle")
    assert float(rack.state) == pytest.approx(cycle_items["sim-h001-rack"]["cost"], rel=1e-12)
    assert rack.attributes["last_reset"] == "2026-11-01T00:00:00+00:00"
    assert {q["from"] for q in core.calls("/costs/devices")} == {
        "2026-12-01T00:00:00+00:00",
        "2026-11-01T00:00:00+00:00",
    }


async def test_site_sensors(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    today = state(hass, "site_cost_today")
    assert float(today.state) == pytest.approx(SUMMARY["today"], rel=1e-12)
    assert today.attributes[ATTR_UNIT_OF_MEASUREMENT] == "USD"
    assert today.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL
    assert today.attributes["last_reset"] == last_reset(SUMMARY["day_start"])

    month = state(hass, "month_to_date")
    assert float(month.state) == pytest.approx(SUMMARY["month_to_date"], rel=1e-12)
    assert month.attributes["last_reset"] == last_reset(SUMMARY["cycle_start"])

    projected = state(hass, "projected_month")
    assert float(projected.state) == pytest.approx(SUMMARY["projected_month"], rel=1e-12)
    assert projected.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.MONETARY
    assert ATTR_STATE_CLASS not in projected.attributes

    price = state(hass, "current_price")
    assert float(price.state) == pytest.approx(SUMMARY["current_price"], rel=1e-12)
    assert price.attributes[ATTR_UNIT_OF_MEASUREMENT] == "USD/kWh"

    period = state(hass, "current_period")
    assert period.state == "off_peak"
    assert period.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.ENUM
    assert period.attributes[ATTR_OPTIONS] == ["peak", "off_peak"]

    carbon = state(hass, "carbon_today")
    assert float(carbon.state) == pytest.approx(SUMMARY["carbon_today_kg"], rel=1e-12)
    assert carbon.attributes[ATTR_UNIT_OF_MEASUREMENT] == "kg"
    assert carbon.attributes["last_reset"] == last_reset(SUMMARY["day_start"])

    cheapest = state(hass, "cheapest_tariff")
    flat, demo = COMPARISON
    assert cheapest.state == flat["name"] == "Flat rate"
    assert cheapest.attributes["tariff_id"] == flat["tariff_id"]
    assert cheapest.attributes["total"] == flat["total"]
    assert cheapest.attributes["active_tariff"] == "Demo time-of-use"
    assert demo["tariff_id"] == ACTIVE_TARIFF
    assert cheapest.attributes["saving"] == round(demo["total"] - flat["total"], 2)
    assert cheapest.attributes["cycle_start"] == datetime(2026, 11, 1, tzinfo=UTC)


async def test_comparison_asks_for_the_last_full_cycle(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    assert core.calls("/costs/comparison") == [
        {"from": SUMMARY["previous_cycle_start"], "to": SUMMARY["cycle_start"]}
    ]
    # Polls within the same cycle do not ask again.
    await loaded.runtime_data.coordinator.async_refresh()
    assert len(core.calls("/costs/comparison")) == 1
    assert len(core.calls(f"/tariffs/{ACTIVE_TARIFF}")) == 1


async def test_unknown_costs_are_unknown_not_zero(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    """A core without a tariff: numbers null -> unknown (a 0 would spike the Energy dashboard)."""
    core.data["costs_summary"].update(
        today=None,
        month_to_date=None,
        projected_month=None,
        current_price=None,
        current_period=None,
        carbon_today_kg=None,
        tariff_id=None,
        day_start=None,
        cycle_start=None,
        cycle_end=None,
        previous_cycle_start=None,
    )
    core.data["costs_devices_today"] = {"items": []}
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    for key in (
        "site_cost_today",
        "month_to_date",
        "current_price",
        "current_period",
        "carbon_today",
        "cheapest_tariff",
    ):
        assert state(hass, key).state == STATE_UNKNOWN, key
    # No device has a share of an unknown bill: no cost sensors at all (rather than zeros).
    registry = er.async_get(hass)
    assert registry.async_get_entity_id("sensor", DOMAIN, f"{INSTANCE_ID}_sim-h001-rack_cost_today") is None
    # Without day_start the local midnight of the core's zone is the day's start.
    assert core.calls("/costs/devices")[0]["from"].endswith("T00:00:00+00:00")
    assert core.calls("/costs/comparison") == []


async def test_cloud_accounts(hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer) -> None:
    core.data["cloud_costs_summary"] = load_fixture("cloud_costs_summary.json")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    aws = state(hass, "cloud_aws:123456789012_cloud_month_to_date")
    assert float(aws.state) == pytest.approx(41.27, rel=1e-12)
    assert aws.attributes[ATTR_UNIT_OF_MEASUREMENT] == "USD"
    # Clouds bill UTC days: month to date resets at the first of this month in UTC.
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert aws.attributes["last_reset"] == month.isoformat()
    assert float(state(hass, "cloud_aws:123456789012_cloud_forecast").state) == 212.5
    assert float(state(hass, "cloud_aws:123456789012_cloud_today").state) == 1.93
    assert float(state(hass, "cloud_aws:123456789012_cloud_budget").state) == 250.0
    assert state(hass, "cloud_azure:sub-home-lab_cloud_budget").state == STATE_UNKNOWN
    azure = state(hass, "cloud_azure:sub-home-lab_cloud_month_to_date")
    assert azure.attributes[ATTR_UNIT_OF_MEASUREMENT] == "EUR"
    assert state(hass, "cloud_azure:sub-home-lab_cloud_forecast").state == STATE_UNKNOWN
    device = dr.async_get(hass).async_get_device({(DOMAIN, f"{INSTANCE_ID}_cloud_aws:123456789012")})
    assert device is not None and device.name == "AWS 123456789012"


async def test_no_cloud_route_no_cloud_entities(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    registry = er.async_get(hass)
    entries = er.async_entries_for_config_entry(registry, loaded.entry_id)
    assert not [e for e in entries if "_cloud_" in (e.unique_id or "")]
    assert loaded.runtime_data.coordinator.data.cloud is None


async def test_devices(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    registry = dr.async_get(hass)
    hub = registry.async_get_device({(DOMAIN, INSTANCE_ID)})
    assert hub is not None and hub.sw_version == "0.1.0" and hub.name == "AetherLens"
    rack = registry.async_get_device({(DOMAIN, f"{INSTANCE_ID}_sim-h001-rack")})
    assert rack is not None
    assert rack.name == "Server rack 1" and rack.model == "server" and rack.manufacturer == "simulator"
    assert rack.via_device_id == hub.id
    devices = dr.async_entries_for_config_entry(registry, loaded.entry_id)
    assert len(devices) == 1 + len(CURRENT)


async def test_tariff_and_comparison_unreadable(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    """The active tariff is gone (404) and the comparison fails: the period still shows, options come
    from the current period alone, the cheapest tariff is unknown; nothing else suffers."""
    core.data["costs_summary"]["tariff_id"] = "deleted-tariff"
    core.fail("/costs/comparison", 500)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    period = state(hass, "current_period")
    assert period.state == "off_peak" and period.attributes[ATTR_OPTIONS] == ["off_peak"]
    assert state(hass, "cheapest_tariff").state == STATE_UNKNOWN
    assert float(state(hass, "site_cost_today").state) == pytest.approx(SUMMARY["today"], rel=1e-12)
    # Both are asked again at the next poll (nothing cached from a failure).
    core.heal("/costs/comparison")
    await entry.runtime_data.coordinator.async_refresh()
    assert state(hass, "cheapest_tariff").state == "Flat rate"
