"""One problem binary sensor per alert rule of the core: on while the rule has an open event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import AetherLensConfigEntry
from .const import DOMAIN
from .coordinator import AetherLensCoordinator
from .entity import AetherLensEntity

PARALLEL_UPDATES = 0

ALERT_DESCRIPTION = BinarySensorEntityDescription(
    key="alert",
    translation_key="alert",
    device_class=BinarySensorDeviceClass.PROBLEM,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AetherLensConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a sensor per rule; rules created later appear, deleted ones leave the entity registry."""
    coordinator = entry.runtime_data.coordinator
    known: set[str] = set()

    @callback
    def sync() -> None:
        rules = set(coordinator.data.alerts)
        if new := rules - known:
            async_add_entities(AlertBinarySensor(coordinator, rule_id) for rule_id in sorted(new))
        registry = er.async_get(hass)
        for rule_id in known - rules:
            unique_id = f"{coordinator.instance_id}_alert_{rule_id}"
            if entity_id := registry.async_get_entity_id("binary_sensor", DOMAIN, unique_id):
                registry.async_remove(entity_id)
        known.clear()
        known.update(rules)

    sync()
    entry.async_on_unload(coordinator.async_add_listener(sync))


class AlertBinarySensor(AetherLensEntity, BinarySensorEntity):
    """An alert rule; attributes come from its open event."""

    entity_description = ALERT_DESCRIPTION

    def __init__(self, coordinator: AetherLensCoordinator, rule_id: str) -> None:
        super().__init__(coordinator, f"alert_{rule_id}")
        self.rule_id = rule_id
        self._attr_translation_placeholders = {"name": coordinator.data.alerts[rule_id].name}

    @property
    def available(self) -> bool:
        return super().available and self.rule_id in self.coordinator.data.alerts

    @property
    def is_on(self) -> bool:
        return self.rule_id in self.coordinator.data.open_events

    @property
    def extra_state_attributes(self) -> Mapping[str, Any]:
        rule = self.coordinator.data.alerts.get(self.rule_id)
        attributes: dict[str, Any] = {
            "alert_id": self.rule_id,
            "severity": rule.severity if rule else None,
            "device_id": rule.device_id if rule else None,
            "enabled": rule.enabled if rule else None,
        }
        event = self.coordinator.data.open_events.get(self.rule_id)
        if event is not None:
            attributes.update(
                event_id=event.id,
                severity=event.severity,
                device_id=event.device_id,
                value=event.value,
                message=event.message,
                triggered_at=event.triggered_at,
                acknowledged=event.acknowledged_at is not None,
                acknowledged_at=event.acknowledged_at,
                acknowledged_by=event.acknowledged_by,
            )
        return attributes
