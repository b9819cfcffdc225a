"""Template plugin: replace the bodies with calls to your device's library.

It shows both ways to deliver metrics: ``collect_metrics()`` is polled every ``poll_interval``
(capability ``metrics.collect``); ``run(emit)`` is the push path (capability ``metrics.push``) for
sources that tell you when something changes (a WebSocket, MQTT, a callback). Keep the one your source
fits and delete the other (and its capability in plugin.yaml).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from aetherlens.plugins.sdk import BasePlugin, Emit, MetricLike, PushError


class MyPlugin(BasePlugin):
    capabilities = ("metrics.collect", "metrics.push", "device.discover")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        # Checks the JSON Schema cannot express; name the key in each problem.
        if config.get("device_id") == "mains":
            return [f"config key 'plugins.{self.plugin_id}.config.device_id': 'mains' is reserved"]
        return []

    async def setup(self) -> None:
        # Open clients here (one per process); the config is already validated. state_dir is this
        # instance's own folder and survives restarts: the energy counter continues where it was.
        self.counter_file = self.state_dir / "energy.json"
        saved = json.loads(self.counter_file.read_text()) if self.counter_file.exists() else {}
        self.energy_kwh = float(saved.get("energy_kwh", 0.0))
        self.last = time.monotonic()

    def _reading(self) -> list[MetricLike]:
        now = time.monotonic()
        watts = float(self.config["watts"])  # a real plugin asks its device here
        self.energy_kwh += watts * (now - self.last) / 3.6e6
        self.last = now
        device = self.config["device_id"]
        return [
            self.metric(device, "power", watts, "W"),
            self.metric(device, "energy", self.energy_kwh, "kWh"),
        ]

    async def collect_metrics(self) -> Sequence[MetricLike]:
        return self._reading()

    async def run(self, emit: Emit) -> None:
        interval = float(self.config["push_interval"])
        if interval <= 0:
            await asyncio.Event().wait()  # pushing is off: idle (returning would count as a crash)
        while True:
            # A real plugin awaits its source here (the next message, event or callback).
            try:
                result = await emit(self._reading())  # returns once the core took the batch
            except PushError as exc:
                self.log.warning("the core did not take a batch (%s); sending it with the next", exc)
            else:
                if result.rejected:
                    self.log.warning("rejected: %s", result.rejected)
                # Only what the core acknowledged counts as delivered: remember it now.
                self.counter_file.write_text(json.dumps({"energy_kwh": self.energy_kwh}))
            await asyncio.sleep(interval)

    async def discover_devices(self) -> list[dict[str, Any]]:
        return [{"id": self.config["device_id"], "name": "My device", "type": "plug"}]

    async def teardown(self) -> None:
        # Close what setup() opened.
        pass
