"""Sensors: per device (power, energy, costs), the site (costs, price, period, carbon, cheapest
tariff) and per cloud account (month to date, forecast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import UnitOfEnergy, UnitOfMass, UnitOfPower
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from . import AetherLensConfigEntry
from .coordinator import AetherLensCoordinator, AetherLensData
from .entity import AetherLensCloudEntity, AetherLensDeviceEntity, AetherLensEntity

# Pushed values and polls both land in the coordinator; no entity does its own I/O.
PARALLEL_UPDATES = 0


def _metric(kind: str) -> Callable[[AetherLensData, str], StateType]:
    def value(data: AetherLensData, device_id: str) -> StateType:
        metric = data.metrics.get(device_id, {}).get(kind)
        return None if metric is None else metric.value

    return value


def _has_metric(kind: str) -> Callable[[AetherLensData, str], bool]:
    return lambda data, device_id: kind in data.metrics.get(device_id, {})


def _currency(data: AetherLensData) -> str:
    return data.info.currency


@dataclass(frozen=True, kw_only=True)
class UnitAndResetDescription(SensorEntityDescription):
    """The unit (e.g. the core's currency) and the reset instant, both read from the coordinator's data."""

    unit_fn: Callable[[AetherLensData], str] | None = None
    last_reset_fn: Callable[[AetherLensData], datetime | None] | None = None


class UnitAndResetSensor(SensorEntity):
    """Unit and last_reset from a ``UnitAndResetDescription`` (shared by the device and site sensors)."""

    entity_description: UnitAndResetDescription
    coordinator: AetherLensCoordinator

    @property
    def native_unit_of_measurement(self) -> str | None:
        if self.entity_description.unit_fn is not None:
            return self.entity_description.unit_fn(self.coordinator.data)
        return self.entity_description.native_unit_of_measurement

    @property
    def last_reset(self) -> datetime | None:
        if self.entity_description.last_reset_fn is None:
            return None
        return self.entity_description.last_reset_fn(self.coordinator.data)


@dataclass(frozen=True, kw_only=True)
class DeviceSensorDescription(UnitAndResetDescription):
    """A sensor of one AetherLens device."""

    value_fn: Callable[[AetherLensData, str], StateType]
    exists_fn: Callable[[AetherLensData, str], bool] = lambda _data, _device: True
    attrs_fn: Callable[[AetherLensData, str], Mapping[str, Any] | None] | None = None


def _device_cost(period: str) -> Callable[[AetherLensData, str], StateType]:
    def value(data: AetherLensData, device_id: str) -> StateType:
        item = (data.costs_today if period == "today" else data.costs_cycle).get(device_id)
        return None if item is None else item.cost

    return value


def _device_cost_attrs(period: str) -> Callable[[AetherLensData, str], Mapping[str, Any] | None]:
    def attrs(data: AetherLensData, device_id: str) -> Mapping[str, Any] | None:
        item = (data.costs_today if period == "today" else data.costs_cycle).get(device_id)
        if item is None:
            return None
        return {"kwh": item.kwh, "carbon_kg": item.carbon_kg, "estimated": item.estimated}

    return attrs


DEVICE_SENSORS: tuple[DeviceSensorDescription, ...] = (
    DeviceSensorDescription(
        key="power",
        translation_key="power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_metric("power"),
        exists_fn=_has_metric("power"),
    ),
    DeviceSensorDescription(
        key="energy",
        translation_key="energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=_metric("energy"),
        exists_fn=_has_metric("energy"),
    ),
    DeviceSensorDescription(
        key="cost_today",
        translation_key="cost_today",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=_device_cost("today"),
        # The site meter itself gets no share of the bill: no cost sensor for it.
        exists_fn=lambda data, device_id: device_id in data.costs_today or device_id in data.costs_cycle,
        unit_fn=_currency,
        last_reset_fn=lambda data: data.day_start,
        attrs_fn=_device_cost_attrs("today"),
    ),
    DeviceSensorDescription(
        key="cost_cycle",
        translation_key="cost_cycle",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=_device_cost("cycle"),
        exists_fn=lambda data, device_id: device_id in data.costs_today or device_id in data.costs_cycle,
        unit_fn=_currency,
        last_reset_fn=lambda data: data.summary.cycle_start,
        attrs_fn=_device_cost_attrs("cycle"),
    ),
)


@dataclass(frozen=True, kw_only=True)
class SiteSensorDescription(UnitAndResetDescription):
    """A sensor of the whole site (on the hub device)."""

    value_fn: Callable[[AetherLensData], StateType]
    options_fn: Callable[[AetherLensData], list[str] | None] | None = None
    attrs_fn: Callable[[AetherLensData], Mapping[str, Any] | None] | None = None


def _period_options(data: AetherLensData) -> list[str] | None:
    options = list(data.tariff.periods) if data.tariff is not None else []
    current = data.summary.current_period
    if current is not None and current not in options:
        options.append(current)
    return options or None


def _cheapest_name(data: AetherLensData) -> StateType:
    return data.comparison[0].name if data.comparison else None


def _cheapest_attrs(data: AetherLensData) -> Mapping[str, Any] | None:
    """The cheapest stored tariff over the last full cycle, and what switching would have saved."""
    if not data.comparison:
        return None
    cheapest = data.comparison[0]
    active = next((row for row in data.comparison if row.tariff_id == data.summary.tariff_id), None)
    saving = None
    if active is not None and active.total is not None and cheapest.total is not None:
        saving = round(active.total - cheapest.total, 2)
    return {
        "tariff_id": cheapest.tariff_id,
        "total": cheapest.total,
        "currency": cheapest.currency,
        "active_tariff": active.name if active else None,
        "active_total": active.total if active else None,
        "saving": saving,
        "cycle_start": data.summary.previous_cycle_start,
        "cycle_end": data.summary.cycle_start,
    }


SITE_SENSORS: tuple[SiteSensorDescription, ...] = (
    SiteSensorDescription(
        key="site_cost_today",
        translation_key="site_cost_today",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda data: data.summary.today,
        unit_fn=_currency,
        last_reset_fn=lambda data: data.day_start,
    ),
    SiteSensorDescription(
        key="month_to_date",
        translation_key="month_to_date",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda data: data.summary.month_to_date,
        unit_fn=_currency,
        last_reset_fn=lambda data: data.summary.cycle_start or data.month_start,
    ),
    SiteSensorDescription(
        key="projected_month",
        translation_key="projected_month",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        value_fn=lambda data: data.summary.projected_month,
        unit_fn=_currency,
    ),
    SiteSensorDescription(
        key="current_price",
        translation_key="current_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=4,
        value_fn=lambda data: data.summary.current_price,
        # `<currency>/kWh`: the unit the Energy dashboard takes for a price entity.
        unit_fn=lambda data: f"{data.info.currency}/{UnitOfEnergy.KILO_WATT_HOUR}",
    ),
    SiteSensorDescription(
        key="current_period",
        translation_key="current_period",
        device_class=SensorDeviceClass.ENUM,
        value_fn=lambda data: data.summary.current_period,
        options_fn=_period_options,
    ),
    SiteSensorDescription(
        key="carbon_today",
        translation_key="carbon_today",
        device_class=SensorDeviceClass.WEIGHT,
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement=UnitOfMass.KILOGRAMS,
        suggested_display_precision=2,
        value_fn=lambda data: data.summary.carbon_today_kg,
        last_reset_fn=lambda data: data.day_start,
    ),
    SiteSensorDescription(
        key="cheapest_tariff",
        translation_key="cheapest_tariff",
        value_fn=_cheapest_name,
        attrs_fn=_cheapest_attrs,
    ),
)


@dataclass(frozen=True, kw_only=True)
class CloudSensorDescription(SensorEntityDescription):
    """A sensor of one cloud account."""

    value_fn: Callable[[AetherLensData, str], StateType]
    month_reset: bool = False


CLOUD_SENSORS: tuple[CloudSensorDescription, ...] = (
    CloudSensorDescription(
        key="cloud_month_to_date",
        translation_key="cloud_month_to_date",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda data, key: (
            (data.cloud or {})[key].month_to_date if key in (data.cloud or {}) else None
        ),
        month_reset=True,
    ),
    CloudSensorDescription(
        key="cloud_forecast",
        translation_key="cloud_forecast",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        value_fn=lambda data, key: (
            (data.cloud or {})[key].forecast_month if key in (data.cloud or {}) else None
        ),
    ),
    # The provider's estimate of today so far (it changes until the day closes, so no state class).
    CloudSensorDescription(
        key="cloud_today",
        translation_key="cloud_today",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        value_fn=lambda data, key: (
            (data.cloud or {})[key].estimated_today if key in (data.cloud or {}) else None
        ),
    ),
    CloudSensorDescription(
        key="cloud_budget",
        translation_key="cloud_budget",
        device_class=SensorDeviceClass.MONETARY,
        suggested_display_precision=2,
        value_fn=lambda data, key: (data.cloud or {})[key].budget if key in (data.cloud or {}) else None,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AetherLensConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors now, and those of devices and accounts that appear later (without a reload)."""
    coordinator = entry.runtime_data.coordinator
    known: set[str] = set()

    @callback
    def add_new() -> None:
        candidates = dict(_candidates(coordinator))
        # Entities whose device left go with the device registry entry; forget them so that a device
        # which comes back gets its entities again.
        known.intersection_update(candidates)
        new = [factory() for key, factory in candidates.items() if key not in known]
        known.update(candidates)
        if new:
            async_add_entities(new)

    add_new()
    entry.async_on_unload(coordinator.async_add_listener(add_new))


def _candidates(coordinator: AetherLensCoordinator) -> Iterator[tuple[str, Callable[[], SensorEntity]]]:
    data = coordinator.data
    for description in SITE_SENSORS:
        yield description.key, partial(SiteSensor, coordinator, description)
    for device_id in coordinator.exposed_devices():
        for device_description in DEVICE_SENSORS:
            if device_description.exists_fn(data, device_id):
                yield (
                    f"{device_id}/{device_description.key}",
                    partial(DeviceSensor, coordinator, device_id, device_description),
                )
    for account in coordinator.exposed_cloud():
        for cloud_description in CLOUD_SENSORS:
            yield (
                f"cloud/{account}/{cloud_description.key}",
                partial(CloudSensor, coordinator, account, cloud_description),
            )


class SiteSensor(AetherLensEntity, UnitAndResetSensor):
    """A site total."""

    entity_description: SiteSensorDescription

    def __init__(self, coordinator: AetherLensCoordinator, description: SiteSensorDescription) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> StateType:
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def options(self) -> list[str] | None:
        if self.entity_description.options_fn is None:
            return None
        return self.entity_description.options_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        if self.entity_description.attrs_fn is None:
            return None
        return self.entity_description.attrs_fn(self.coordinator.data)


class DeviceSensor(AetherLensDeviceEntity, UnitAndResetSensor):
    """A value of one AetherLens device."""

    entity_description: DeviceSensorDescription

    def __init__(
        self, coordinator: AetherLensCoordinator, device_id: str, description: DeviceSensorDescription
    ) -> None:
        super().__init__(coordinator, device_id, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> StateType:
        return self.entity_description.value_fn(self.coordinator.data, self.device_id)

    @property
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        if self.entity_description.attrs_fn is None:
            return None
        return self.entity_description.attrs_fn(self.coordinator.data, self.device_id)


class CloudSensor(AetherLensCloudEntity, SensorEntity):
    """A figure of one cloud account."""

    entity_description: CloudSensorDescription

    def __init__(
        self, coordinator: AetherLensCoordinator, account_key: str, description: CloudSensorDescription
    ) -> None:
        super().__init__(coordinator, account_key, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> StateType:
        return self.entity_description.value_fn(self.coordinator.data, self.account_key)

    @property
    def native_unit_of_measurement(self) -> str | None:
        account = (self.coordinator.data.cloud or {}).get(self.account_key)
        return account.currency if account is not None else None

    @property
    def last_reset(self) -> datetime | None:
        return self.coordinator.data.cloud_month_start if self.entity_description.month_reset else None
