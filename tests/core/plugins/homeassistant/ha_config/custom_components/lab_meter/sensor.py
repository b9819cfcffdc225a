"""Sensors on three devices; units chosen to exercise every conversion the plugin does. The service
``lab_meter.add_device`` (``device``, ``name``, ``area``) adds a power sensor on a new device at runtime."""

from __future__ import annotations

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddEntitiesCallback

DOMAIN = "lab_meter"

# key: (device key, device name, area, entity name, device class, unit, state class)
SENSORS = {
    "plug_power": ("plug", "Lab plug", "Workshop", "Power", "power", "W", "measurement"),
    "plug_energy": ("plug", "Lab plug", "Workshop", "Energy", "energy", "kWh", "total_increasing"),
    "heater_power": ("heater", "Lab heater", "Cellar", "Power", "power", "kW", "measurement"),
    "heater_energy": ("heater", "Lab heater", "Cellar", "Energy", "energy", "Wh", "total_increasing"),
    "plant_energy": ("plant", "Lab plant", None, "Energy", "energy", "MWh", "total_increasing"),
    "plug_voltage": ("plug", "Lab plug", "Workshop", "Voltage", "voltage", "V", "measurement"),
}


class LabSensor(SensorEntity):
    _attr_should_poll = False
    _attr_has_entity_name = True

    def __init__(self, key: str) -> None:
        dev, dev_name, area, name, device_class, unit, state_class = SENSORS[key]
        self.key = key
        self._attr_unique_id = f"lab_{key}"
        self._attr_name = name
        self._attr_device_class = SensorDeviceClass(device_class)
        self._attr_native_unit_of_measurement = unit
        self._attr_state_class = SensorStateClass(state_class)
        self._attr_native_value = None
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, dev)}, name=dev_name, suggested_area=area, manufacturer="Lab"
        )


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, add: AddEntitiesCallback) -> None:
    sensors = {key: LabSensor(key) for key in SENSORS}
    add(list(sensors.values()))

    @callback
    def set_value(call: ServiceCall) -> None:
        sensor = sensors[call.data["key"]]
        raw = call.data["value"]
        if raw == "unavailable":
            sensor._attr_available = False
        else:
            sensor._attr_available = True
            sensor._attr_native_value = None if raw == "unknown" else raw
        sensor.async_write_ha_state()

    @callback
    def add_device(call: ServiceCall) -> None:
        # A device that appears while HA runs (a new plug paired): a power sensor on a new device.
        key = f"{call.data['device']}_power"
        SENSORS[key] = (
            call.data["device"],
            call.data["name"],
            call.data.get("area"),
            "Power",
            "power",
            "W",
            "measurement",
        )
        sensors[key] = LabSensor(key)
        add([sensors[key]])

    hass.services.async_register(DOMAIN, "set", set_value)
    hass.services.async_register(DOMAIN, "add_device", add_device)
