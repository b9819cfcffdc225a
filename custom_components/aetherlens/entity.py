"""Base entities: one device for the core (the hub), one per AetherLens device and cloud account."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import AetherLensCoordinator, cloud_identifier, device_identifier


class AetherLensEntity(CoordinatorEntity[AetherLensCoordinator]):
    """An entity of the hub (the core itself: site totals, alerts)."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: AetherLensCoordinator, key: str) -> None:
        super().__init__(coordinator)
        info = coordinator.data.info
        self._attr_unique_id = f"{info.instance_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, info.instance_id)},
            name="AetherLens",
            manufacturer="AetherLens",
            model="AetherLens core",
            sw_version=info.version,
            configuration_url=coordinator.client.url,
            entry_type=DeviceEntryType.SERVICE,
        )


class AetherLensDeviceEntity(CoordinatorEntity[AetherLensCoordinator]):
    """An entity of one AetherLens device (a plug, a meter, a rack ...)."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: AetherLensCoordinator, device_id: str, key: str) -> None:
        super().__init__(coordinator)
        instance = coordinator.data.info.instance_id
        device = coordinator.data.devices[device_id]
        self.device_id = device_id
        self._attr_unique_id = f"{device_identifier(instance, device_id)}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, device_identifier(instance, device_id))},
            name=device.name,
            manufacturer=device.source or "AetherLens",
            model=device.type,
            suggested_area=device.room,
            via_device=(DOMAIN, instance),
        )

    @property
    def available(self) -> bool:
        """Unavailable (never 0) while the core is unreachable or the device is gone from it."""
        return super().available and self.device_id in self.coordinator.exposed_devices()


class AetherLensCloudEntity(CoordinatorEntity[AetherLensCoordinator]):
    """An entity of one cloud provider account."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: AetherLensCoordinator, account_key: str, key: str) -> None:
        super().__init__(coordinator)
        instance = coordinator.data.info.instance_id
        account = (coordinator.data.cloud or {})[account_key]
        self.account_key = account_key
        self._attr_unique_id = f"{cloud_identifier(instance, account_key)}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, cloud_identifier(instance, account_key))},
            name=f"{account.provider.upper()} {account.account}",
            manufacturer=account.provider,
            model="Cloud account",
            entry_type=DeviceEntryType.SERVICE,
            via_device=(DOMAIN, instance),
        )

    @property
    def available(self) -> bool:
        return super().available and self.account_key in self.coordinator.exposed_cloud()
