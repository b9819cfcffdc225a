"""Template plugin: replace the body of collect_metrics() with a call to your device's library."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aetherlens.plugins.sdk import BasePlugin, MetricLike


class MyPlugin(BasePlugin):
    capabilities = ("metrics.collect", "device.discover")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        # Checks the JSON Schema cannot express; name the key in each problem.
        if config.get("device_id") == "mains":
            return [f"config key 'plugins.{self.plugin_id}.config.device_id': 'mains' is reserved"]
        return []

    async def setup(self) -> None:
        # Open clients here (one per process); the config is already validated.
        self.energy_kwh = 0.0
        self.last = time.monotonic()

    async def collect_metrics(self) -> Sequence[MetricLike]:
        now = time.monotonic()
        watts = float(self.config["watts"])  # a real plugin asks its device here
        self.energy_kwh += watts * (now - self.last) / 3.6e6
        self.last = now
        device = self.config["device_id"]
        return [
            self.metric(device, "power", watts, "W"),
            self.metric(device, "energy", self.energy_kwh, "kWh"),
        ]

    async def discover_devices(self) -> list[dict[str, Any]]:
        return [{"id": self.config["device_id"], "name": "My device", "type": "plug"}]

    async def teardown(self) -> None:
        # Close what setup() opened.
        pass
