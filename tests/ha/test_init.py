"""Setup, unload, not-ready and auth failure of a config entry."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.aetherlens.const import DOMAIN

from .conftest import CoreServer, stream_connected, wait_until


async def test_setup_and_unload(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    assert loaded.state is ConfigEntryState.LOADED
    stream = loaded.runtime_data.stream
    await stream_connected(loaded)
    assert stream.connected and len(core.sockets) == 1
    assert hass.states.get("sensor.aetherlens_site_cost_today") is not None

    assert await hass.config_entries.async_unload(loaded.entry_id)
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.NOT_LOADED
    # The stream task is gone with the entry: the core sees its socket closed.
    await wait_until(lambda: not core.sockets, "the stream socket to close")
    assert not loaded.update_listeners


async def test_not_ready_while_unreachable(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    await core.stop()
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_not_ready_when_a_read_fails(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    core.fail("/costs/summary", 503)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_refused_key_starts_reauth(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    core.api_key = "rotated"
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
