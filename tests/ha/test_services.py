"""Actions, diagnostics, repair issues and the statistics hook."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.aetherlens.const import (
    CONF_STATISTICS,
    DOMAIN,
    ISSUE_API_VERSION,
    ISSUE_NO_TARIFF,
    SERVICE_ACKNOWLEDGE_ALERT,
    SERVICE_GET_BILL,
    SERVICE_REFRESH,
)
from custom_components.aetherlens.diagnostics import async_get_config_entry_diagnostics

from .conftest import CoreServer, load_fixture, stream_connected
from .test_sensor import state


async def test_refresh(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    await stream_connected(loaded)
    await hass.async_block_till_done()  # the poll the connection triggers
    polls = len(core.calls("/costs/summary"))
    comparisons = len(core.calls("/costs/comparison"))
    core.data["costs_summary"]["today"] = 2.5
    await hass.services.async_call(
        DOMAIN, SERVICE_REFRESH, {"config_entry_id": loaded.entry_id}, blocking=True
    )
    assert len(core.calls("/costs/summary")) == polls + 1
    assert state(hass, "site_cost_today").state == "2.5"
    # The refresh also reads the tariff and the comparison again (a tariff may have been edited).
    assert len(core.calls("/costs/comparison")) == comparisons + 1

    core.fail("*", 503)
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, SERVICE_REFRESH, {"config_entry_id": loaded.entry_id}, blocking=True
        )
    assert err.value.translation_key == "refresh_failed"


async def test_acknowledge_alert(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    await hass.services.async_call(
        DOMAIN, SERVICE_ACKNOWLEDGE_ALERT, {"config_entry_id": loaded.entry_id, "event_id": 17}, blocking=True
    )
    assert [r for r in core.requests if r[0] == "POST"] == [("POST", "/alerts/events/17/ack", {})]
    await hass.async_block_till_done()
    await loaded.runtime_data.coordinator.async_refresh()
    sensor = state(hass, "alert_1", "binary_sensor")
    assert sensor.state == STATE_ON and sensor.attributes["acknowledged"] is True

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_ACKNOWLEDGE_ALERT,
            {"config_entry_id": loaded.entry_id, "event_id": "999"},
            blocking=True,
        )
    assert err.value.translation_key == "event_not_found"
    core.fail("/alerts/events/17/ack", 500)
    with pytest.raises(HomeAssistantError) as api_err:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_ACKNOWLEDGE_ALERT,
            {"config_entry_id": loaded.entry_id, "event_id": "17"},
            blocking=True,
        )
    assert api_err.value.translation_key == "api_error"


async def test_get_bill(hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer) -> None:
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_GET_BILL,
        {"config_entry_id": loaded.entry_id, "start": "2026-11-01", "end": "2026-12-02"},
        blocking=True,
        return_response=True,
    )
    assert response == {"cycles": load_fixture("costs_bill.json")}
    assert core.calls("/costs/bill")[-1] == {"from": "2026-11-01", "to": "2026-12-02"}

    await hass.services.async_call(
        DOMAIN,
        SERVICE_GET_BILL,
        {
            "config_entry_id": loaded.entry_id,
            "start": datetime(2026, 11, 1, tzinfo=UTC),
            "end": date(2026, 12, 1),
            "tariff_id": "553e5a74-92fe-42d0-b628-c9a8ee49a950",
            "device_id": "sim-h001-rack",
        },
        blocking=True,
        return_response=True,
    )
    assert core.calls("/costs/bill")[-1] == {
        "from": "2026-11-01T00:00:00+00:00",
        "to": "2026-12-01",
        "tariff_id": "553e5a74-92fe-42d0-b628-c9a8ee49a950",
        "device_id": "sim-h001-rack",
    }

    with pytest.raises(ServiceValidationError) as naive:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_GET_BILL,
            {"config_entry_id": loaded.entry_id, "start": "2026-11-01T00:00:00", "end": "2026-12-01"},
            blocking=True,
            return_response=True,
        )
    assert naive.value.translation_key == "naive_datetime"

    core.fail("/costs/bill", 404, {"error": {"code": "not_found", "message": "no active tariff"}})
    with pytest.raises(HomeAssistantError, match="no active tariff"):
        await hass.services.async_call(
            DOMAIN,
            SERVICE_GET_BILL,
            {"config_entry_id": loaded.entry_id, "start": "2026-11-01", "end": "2026-12-01"},
            blocking=True,
            return_response=True,
        )


async def test_actions_check_the_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    assert await hass.config_entries.async_setup(entry.entry_id)
    with pytest.raises(ServiceValidationError) as unknown:
        await hass.services.async_call(DOMAIN, SERVICE_REFRESH, {"config_entry_id": "nope"}, blocking=True)
    assert unknown.value.translation_key == "entry_not_found"
    assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as unloaded:
        await hass.services.async_call(
            DOMAIN, SERVICE_REFRESH, {"config_entry_id": entry.entry_id}, blocking=True
        )
    assert unloaded.value.translation_key == "entry_not_loaded"


async def test_diagnostics_redact_key_and_url(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded)
    text = json.dumps(diagnostics, default=str)
    assert core.api_key not in text
    assert core.url not in text and f":{core.port}" not in text
    assert diagnostics["entry"]["data"] == {"url": "**REDACTED**", "api_key": "**REDACTED**"}
    assert diagnostics["info"]["instance_id"] == load_fixture("info.json")["instance_id"]
    assert diagnostics["summary"]["today"] == load_fixture("costs_summary.json")["today"]
    assert len(diagnostics["devices"]) == len(load_fixture("devices.json")["items"])
    assert list(diagnostics["tariff"]["periods"]) == ["peak", "off_peak"]
    assert diagnostics["cloud"] is None


async def test_repair_no_active_tariff(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    issues = ir.async_get(hass)
    issue_id = f"{ISSUE_NO_TARIFF}_{loaded.entry_id}"
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    core.data["costs_summary"]["tariff_id"] = None
    await loaded.runtime_data.coordinator.async_refresh()
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert (
        issue is not None
        and issue.translation_key == ISSUE_NO_TARIFF
        and issue.severity == ir.IssueSeverity.WARNING
    )
    core.data["costs_summary"]["tariff_id"] = load_fixture("costs_summary.json")["tariff_id"]
    await loaded.runtime_data.coordinator.async_refresh()
    assert issues.async_get_issue(DOMAIN, issue_id) is None


async def test_no_repair_from_a_core_that_does_not_say(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    """A core from before `tariff_id` existed: absence is not "no tariff"."""
    del core.data["costs_summary"]["tariff_id"]
    await loaded.runtime_data.coordinator.async_refresh()
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"{ISSUE_NO_TARIFF}_{loaded.entry_id}") is None


async def test_repair_incompatible_api_version(
    hass: HomeAssistant, loaded: MockConfigEntry, core: CoreServer
) -> None:
    issue_id = f"{ISSUE_API_VERSION}_{loaded.entry_id}"
    core.data["info"]["api_version"] = 2
    await loaded.runtime_data.coordinator.async_refresh()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None and issue.severity == ir.IssueSeverity.ERROR
    assert issue.translation_placeholders == {"version": "2", "supported": "1", "core_version": "0.1.0"}
    core.data["info"]["api_version"] = 1
    await loaded.runtime_data.coordinator.async_refresh()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


@pytest.mark.parametrize("enabled", [True, False])
async def test_statistics_hook(hass: HomeAssistant, entry: MockConfigEntry, enabled: bool) -> None:
    """`statistics.async_setup_statistics(hass, entry)` runs when the module exists and the option is on."""
    hook = AsyncMock()
    module: Any = SimpleNamespace(async_setup_statistics=hook)
    hass.config_entries.async_update_entry(entry, options={CONF_STATISTICS: enabled})
    with patch(
        "custom_components.aetherlens.async_import_module", AsyncMock(return_value=module)
    ) as imported:
        assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    if enabled:
        imported.assert_awaited_once_with(hass, "custom_components.aetherlens.statistics")
        hook.assert_awaited_once_with(hass, entry)
    else:
        imported.assert_not_awaited()


async def test_statistics_module_absent(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    with patch(
        "custom_components.aetherlens.async_import_module",
        AsyncMock(side_effect=ModuleNotFoundError("statistics")),
    ):
        assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
