"""Every step and error path of the config, discovery, reauth, reconfigure and options flows."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.aetherlens.const import (
    CONF_API_KEY,
    CONF_CLOUD_ACCOUNTS,
    CONF_DEVICES,
    CONF_SCAN_INTERVAL,
    CONF_STATISTICS,
    CONF_URL,
    DOMAIN,
)
from custom_components.aetherlens.coordinator import OPT_EXCLUDED_CLOUD, OPT_EXCLUDED_DEVICES

from .conftest import INSTANCE_ID, CoreServer, free_port, load_fixture


async def test_user_flow(hass: HomeAssistant, core: CoreServer) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "user"
    assert result["errors"] == {}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: core.url + "/", CONF_API_KEY: core.api_key}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "AetherLens"
    assert result["data"] == {CONF_URL: core.url, CONF_API_KEY: core.api_key}
    assert result["result"].unique_id == INSTANCE_ID
    assert core.calls("/info")
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("breakage", "error"),
    [("down", "cannot_connect"), ("key", "invalid_auth"), ("url", "invalid_url"), ("bug", "unknown")],
)
async def test_user_flow_errors_then_recovers(
    hass: HomeAssistant, core: CoreServer, breakage: str, error: str
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    url, key = core.url, core.api_key
    if breakage == "down":
        await core.stop()
    elif breakage == "key":
        key = "wrong"
    elif breakage == "url":
        url = "ftp://nope"
    if breakage == "bug":
        with patch(
            "custom_components.aetherlens.config_flow.AetherLensClient.info", side_effect=RuntimeError("boom")
        ):
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_URL: url, CONF_API_KEY: key}
            )
    else:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: url, CONF_API_KEY: key}
        )
    assert result["type"] is FlowResultType.FORM
    field = "url" if breakage == "url" else "base"
    assert result["errors"] == {field: error}
    if breakage == "down":
        await core.start()
    with patch("custom_components.aetherlens.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: core.url, CONF_API_KEY: core.api_key}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_already_configured(
    hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: core.url, CONF_API_KEY: core.api_key}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"


def _discovery(core: CoreServer, key: str | None = None) -> HassioServiceInfo:
    return HassioServiceInfo(
        config={
            "host": "127.0.0.1",
            "port": core.port,
            "api_key": key or core.api_key,
            "addon": "AetherLens",
        },
        name="AetherLens",
        slug="aetherlens",
        uuid="5d7e4bc3b0c24a9c9b6a3c0e9f0e1d2a",
    )


async def test_hassio_discovery_and_confirm(hass: HomeAssistant, core: CoreServer) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_discovery(core)
    )
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "AetherLens"}
    with patch("custom_components.aetherlens.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_URL: core.url, CONF_API_KEY: core.api_key}
    assert result["result"].unique_id == INSTANCE_ID


async def test_hassio_rediscovery_updates_known_instance(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    """The add-on re-announces a new key: the entry takes it and reloads (discovery-update-info)."""
    core.api_key = "al_newkey"
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_discovery(core, "al_newkey")
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    await hass.async_block_till_done()
    assert loaded.data[CONF_API_KEY] == "al_newkey"
    assert loaded.state is ConfigEntryState.LOADED
    # The reloaded entry reads with the new key.
    assert loaded.runtime_data.client._api_key == "al_newkey"


@pytest.mark.parametrize(("breakage", "reason"), [("down", "cannot_connect"), ("key", "invalid_auth")])
async def test_hassio_discovery_unusable(
    hass: HomeAssistant, core: CoreServer, breakage: str, reason: str
) -> None:
    if breakage == "down":
        await core.stop()
    info = _discovery(core, "wrong" if breakage == "key" else None)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_HASSIO}, data=info)
    assert result["type"] is FlowResultType.ABORT and result["reason"] == reason


async def test_reauth(hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer) -> None:
    core.api_key = "al_rotated"
    assert not await hass.config_entries.async_setup(entry.entry_id)
    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_API_KEY: "still-wrong"})
    assert result["type"] is FlowResultType.FORM and result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_API_KEY: "al_rotated"})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_API_KEY] == "al_rotated"
    assert entry.state is ConfigEntryState.LOADED


async def test_reauth_other_instance(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    result = await loaded.start_reauth_flow(hass)
    core.data["info"]["instance_id"] = "another-core"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_API_KEY: core.api_key})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "wrong_instance"


async def test_reconfigure(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    result = await loaded.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://127.0.0.1:1"}
    )
    assert result["type"] is FlowResultType.FORM and result["errors"] == {"base": "cannot_connect"}
    # The core moved to another port; given without a scheme, the URL is normalised.
    await core.stop()
    core.port = free_port()
    await core.start()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"127.0.0.1:{core.port}/"}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded.data[CONF_URL] == f"http://127.0.0.1:{core.port}"
    assert loaded.runtime_data.client.url == core.url
    assert loaded.state is ConfigEntryState.LOADED


async def test_reconfigure_other_instance(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    result = await loaded.start_reconfigure_flow(hass)
    core.data["info"]["instance_id"] = "another-core"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_URL: core.url})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "wrong_instance"
    assert loaded.data[CONF_URL] == core.url


async def test_options(hass: HomeAssistant, entry: MockConfigEntry, core: CoreServer) -> None:
    core.data["cloud_costs_summary"] = load_fixture("cloud_costs_summary.json")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "init"
    schema = {str(k): k for k in result["data_schema"].schema}
    assert set(schema) == {CONF_SCAN_INTERVAL, CONF_DEVICES, CONF_CLOUD_ACCOUNTS, CONF_STATISTICS}
    all_devices = [d["id"] for d in load_fixture("devices.json")["items"]]
    assert schema[CONF_DEVICES].default() == sorted(all_devices)

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_SCAN_INTERVAL: 30,
            CONF_DEVICES: [d for d in all_devices if d != "sim-h001-washer"],
            CONF_CLOUD_ACCOUNTS: ["aws:123456789012"],
            CONF_STATISTICS: False,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options == {
        CONF_SCAN_INTERVAL: 30,
        CONF_STATISTICS: False,
        OPT_EXCLUDED_DEVICES: ["sim-h001-washer"],
        OPT_EXCLUDED_CLOUD: ["azure:sub-home-lab"],
    }
    # Reloaded with the new options: interval, and the hidden device and account are gone.
    coordinator = entry.runtime_data.coordinator
    assert coordinator.update_interval is not None and coordinator.update_interval.total_seconds() == 30
    assert "sim-h001-washer" not in coordinator.exposed_devices()
    assert hass.states.get("sensor.washing_machine_1_power") is None
    assert set(coordinator.exposed_cloud()) == {"aws:123456789012"}

    # The form shows the stored choices next time.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    schema = {str(k): k for k in result["data_schema"].schema}
    assert "sim-h001-washer" not in schema[CONF_DEVICES].default()
    assert schema[CONF_CLOUD_ACCOUNTS].default() == ["aws:123456789012"]
    assert schema[CONF_STATISTICS].default() is False


async def test_options_need_a_loaded_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "not_loaded"
