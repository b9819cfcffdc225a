"""Fixtures: the loopback Azure server and a factory of plugins pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from api.conftest import api_dsn, make_api  # noqa: F401 - re-exported fixtures: the HTTP API on a real database

from aetherlens.plugins.builtin.azure_cost.plugin import AzureCostPlugin

from .azure_server import AzureServer

SUB_A = "00000000-0000-0000-0000-000000000000"  # the id Microsoft's examples use
SUB_B = "11111111-2222-3333-4444-555555555555"
UNKNOWN = "99999999-9999-9999-9999-999999999999"
SECRET = "s3cr3t~Value.NeverShown_Q8"
NOW = dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC)

type MakePlugin = Callable[..., Awaitable[AzureCostPlugin]]


@pytest.fixture
async def azure(tmp_path: Path) -> AsyncIterator[AzureServer]:
    server = AzureServer(tmp_path, subscriptions={SUB_A: "USD", SUB_B: "EUR"})
    await server.start()
    yield server
    await server.stop()


def plugin_config(server: AzureServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "tenant_id": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
        "client_id": "11111111-1111-1111-1111-111111111111",
        "client_secret": SECRET,
        "subscriptions": [{"id": SUB_A, "name": "lab", "budget": 50}, {"id": SUB_B, "name": "family"}],
        "budget": 200,
        "endpoint": server.base_url,
        "authority": server.authority,
        "ca_file": str(server.ca_file),
        "retry_total": 2,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}  # None: leave the key out


@pytest.fixture
async def make_plugin(azure: AzureServer, tmp_path: Path) -> AsyncIterator[MakePlugin]:
    made: list[AzureCostPlugin] = []

    async def make(
        now: dt.datetime = NOW, state_dir: Path | None = None, **overrides: Any
    ) -> AzureCostPlugin:
        config = plugin_config(azure, **overrides)
        plugin = AzureCostPlugin("azure_cost", config)
        assert plugin.validate_config(config) == []
        plugin.state_dir = state_dir or tmp_path / "state"
        plugin.clock = lambda: now  # type: ignore[method-assign,assignment]
        await plugin.setup()
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        await plugin.teardown()
