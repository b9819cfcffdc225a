"""The AetherLens integration: costs, energy and alerts of an AetherLens core in Home Assistant."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.importlib import async_import_module
from homeassistant.helpers.typing import ConfigType

from .api import AetherLensAuthError, AetherLensClient, AetherLensError
from .const import CONF_API_KEY, CONF_STATISTICS, CONF_URL, DEFAULT_STATISTICS, DOMAIN, LOGGER
from .coordinator import AetherLensCoordinator
from .services import async_setup_services
from .stream import LiveStream, StreamCallbacks

PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(slots=True)
class AetherLensRuntimeData:
    """What one config entry holds while it is loaded."""

    client: AetherLensClient
    coordinator: AetherLensCoordinator
    stream: LiveStream


type AetherLensConfigEntry = ConfigEntry[AetherLensRuntimeData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions (once, whatever entries exist)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: AetherLensConfigEntry) -> bool:
    """Connect to the core, read everything once, then start the stream and the platforms."""
    client = AetherLensClient(entry.data[CONF_URL], entry.data[CONF_API_KEY], async_get_clientsession(hass))
    try:
        await client.info()
    except AetherLensAuthError as err:
        raise ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="invalid_auth") from err
    except AetherLensError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err

    coordinator = AetherLensCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()

    stream = LiveStream(
        client,
        StreamCallbacks(
            on_event=coordinator.handle_stream_event,
            on_connected=coordinator.stream_state_changed,
            on_disconnected=coordinator.stream_state_changed,
            on_auth_failed=lambda: entry.async_start_reauth(hass),
        ),
    )
    entry.runtime_data = AetherLensRuntimeData(client=client, coordinator=coordinator, stream=stream)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)

    # A background task: HA's start does not wait for it, and unloading the entry cancels it.
    entry.async_create_background_task(hass, stream.run(), f"{DOMAIN} stream {entry.entry_id}")
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))

    if entry.options.get(CONF_STATISTICS, DEFAULT_STATISTICS):
        await _async_setup_statistics(hass, entry)
    return True


async def _async_setup_statistics(hass: HomeAssistant, entry: AetherLensConfigEntry) -> None:
    """Hook for the long-term statistics (module `statistics`, optional): it exposes
    `async def async_setup_statistics(hass, entry) -> None` and registers its own cleanup with
    `entry.async_on_unload`."""
    try:
        module = await async_import_module(hass, f"{__package__}.statistics")
    except ModuleNotFoundError:
        LOGGER.debug("long-term statistics are not part of this build")
        return
    await module.async_setup_statistics(hass, entry)


async def _async_options_updated(hass: HomeAssistant, entry: AetherLensConfigEntry) -> None:
    """New options (interval, exposed devices, statistics): set the entry up again with them."""
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: AetherLensConfigEntry) -> bool:
    """Unload platforms; the stream task and listeners go with the entry's unload callbacks."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
