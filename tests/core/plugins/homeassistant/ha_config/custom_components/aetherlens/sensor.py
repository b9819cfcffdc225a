"""``sensor: [{platform: aetherlens}]``: a power and an energy sensor with unique ids (so registered)."""

from __future__ import annotations

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.typing import ConfigType, DiscoveryInfoType


class OwnSensor(SensorEntity):
    _attr_should_poll = False

    def __init__(self, key: str, device_class: str, unit: str, value: float) -> None:
        self._attr_unique_id = f"aetherlens_{key}"
        self._attr_name = f"AetherLens {key}"
        self._attr_device_class = SensorDeviceClass(device_class)
        self._attr_native_unit_of_measurement = unit
        self._attr_state_class = (
            SensorStateClass.MEASUREMENT if device_class == "power" else SensorStateClass.TOTAL_INCREASING
        )
        self._attr_native_value = value


async def async_setup_platform(
    hass: HomeAssistant,
    config: ConfigType,
    add: AddEntitiesCallback,
    discovery_info: DiscoveryInfoType | None = None,
) -> None:
    add([OwnSensor("site_power", "power", "W", 1234.0), OwnSensor("site_energy", "energy", "kWh", 42.0)])
