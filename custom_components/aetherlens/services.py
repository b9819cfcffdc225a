"""Actions: aetherlens.refresh, aetherlens.acknowledge_alert, aetherlens.get_bill."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .api import AetherLensError, AetherLensNotFoundError
from .const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DEVICE_ID,
    ATTR_END,
    ATTR_EVENT_ID,
    ATTR_START,
    ATTR_TARIFF_ID,
    DOMAIN,
    SERVICE_ACKNOWLEDGE_ALERT,
    SERVICE_GET_BILL,
    SERVICE_REFRESH,
)

if TYPE_CHECKING:
    from . import AetherLensConfigEntry

_ENTRY: dict[vol.Marker, Any] = {vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string}

REFRESH_SCHEMA = vol.Schema(_ENTRY)
ACKNOWLEDGE_SCHEMA = vol.Schema({**_ENTRY, vol.Required(ATTR_EVENT_ID): vol.Coerce(str)})
BILL_SCHEMA = vol.Schema(
    {
        **_ENTRY,
        vol.Required(ATTR_START): vol.Any(cv.date, cv.datetime),
        vol.Required(ATTR_END): vol.Any(cv.date, cv.datetime),
        vol.Optional(ATTR_TARIFF_ID): cv.string,
        vol.Optional(ATTR_DEVICE_ID): cv.string,
    }
)


def _entry(hass: HomeAssistant, call: ServiceCall) -> AetherLensConfigEntry:
    entry_id = call.data[ATTR_CONFIG_ENTRY_ID]
    entry: AetherLensConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"entry": entry.title},
        )
    return entry


def _api_error(err: AetherLensError) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN, translation_key="api_error", translation_placeholders={"error": str(err)}
    )


def _range_value(value: date | datetime) -> str:
    """Dates go as ISO dates (the tariff's local midnight); datetimes need an offset."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="naive_datetime")
        return value.isoformat()
    return value.isoformat()


async def _refresh(call: ServiceCall) -> None:
    entry = _entry(call.hass, call)
    coordinator = entry.runtime_data.coordinator
    coordinator.invalidate_caches()
    await coordinator.async_refresh()
    if not coordinator.last_update_success:
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="refresh_failed")


async def _acknowledge(call: ServiceCall) -> None:
    entry = _entry(call.hass, call)
    try:
        await entry.runtime_data.client.acknowledge(call.data[ATTR_EVENT_ID])
    except AetherLensNotFoundError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="event_not_found",
            translation_placeholders={"event_id": call.data[ATTR_EVENT_ID]},
        ) from err
    except AetherLensError as err:
        raise _api_error(err) from err
    await entry.runtime_data.coordinator.async_request_refresh()


async def _get_bill(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call.hass, call)
    start, end = _range_value(call.data[ATTR_START]), _range_value(call.data[ATTR_END])
    try:
        cycles: list[dict[str, Any]] = await entry.runtime_data.client.bill(
            start, end, tariff_id=call.data.get(ATTR_TARIFF_ID), device_id=call.data.get(ATTR_DEVICE_ID)
        )
    except AetherLensError as err:
        raise _api_error(err) from err
    # The bill JSON is plain JSON (numbers, strings, lists, objects) as the core sent it.
    return cast(ServiceResponse, {"cycles": cycles})


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    hass.services.async_register(DOMAIN, SERVICE_REFRESH, _refresh, schema=REFRESH_SCHEMA)
    hass.services.async_register(DOMAIN, SERVICE_ACKNOWLEDGE_ALERT, _acknowledge, schema=ACKNOWLEDGE_SCHEMA)
    hass.services.async_register(
        DOMAIN, SERVICE_GET_BILL, _get_bill, schema=BILL_SCHEMA, supports_response=SupportsResponse.ONLY
    )
