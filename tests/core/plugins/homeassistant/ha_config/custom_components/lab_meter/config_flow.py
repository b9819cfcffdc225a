"""One entry, imported from YAML (no UI in the test HA)."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult


class LabMeterFlow(ConfigFlow, domain="lab_meter"):
    VERSION = 1

    async def async_step_import(self, import_data: dict[str, Any]) -> ConfigFlowResult:
        await self.async_set_unique_id("lab")
        self._abort_if_unique_id_configured()
        return self.async_create_entry(title="Lab", data={})
