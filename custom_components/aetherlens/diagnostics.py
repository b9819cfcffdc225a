"""Diagnostics: what the integration sees of the core, with the API key and URL redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_API_KEY, CONF_URL

if TYPE_CHECKING:
    from . import AetherLensConfigEntry

TO_REDACT = {CONF_API_KEY, CONF_URL}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: AetherLensConfigEntry
) -> dict[str, Any]:
    runtime = entry.runtime_data
    coordinator = runtime.coordinator
    data = coordinator.data
    return {
        "entry": {"data": async_redact_data(dict(entry.data), TO_REDACT), "options": dict(entry.options)},
        "stream_connected": runtime.stream.connected,
        "last_update_success": coordinator.last_update_success,
        "info": asdict(data.info),
        "summary": asdict(data.summary),
        "devices": [asdict(d) for d in data.devices.values()],
        "metrics": {d: {k: asdict(v) for k, v in m.items()} for d, m in data.metrics.items()},
        "tariff": asdict(data.tariff) if data.tariff else None,
        "comparison": [asdict(row) for row in data.comparison or ()],
        "cloud": [asdict(a) for a in (data.cloud or {}).values()] if data.cloud is not None else None,
        "alerts": [asdict(a) for a in data.alerts.values()],
        "open_events": [asdict(e) for e in data.open_events.values()],
    }
