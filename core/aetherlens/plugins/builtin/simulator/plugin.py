"""The ``simulator`` plugin: simulated households on the wall clock (see model.py for the physics)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aetherlens.plugins.builtin.simulator.model import Simulation
from aetherlens.plugins.sdk import BasePlugin, MetricLike


class SimulatorPlugin(BasePlugin):
    capabilities = ("metrics.collect", "device.discover")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        try:
            ZoneInfo(str(config.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            return [
                f"config key 'plugins.{self.plugin_id}.config.timezone': "
                f"{config.get('timezone')!r} is not an IANA time zone"
            ]
        return []

    async def setup(self) -> None:
        cfg = self.config
        self.sim = Simulation(
            int(cfg.get("households", 1)), int(cfg.get("seed", 42)), str(cfg.get("timezone", "UTC"))
        )
        self.samples = int(cfg.get("samples_per_poll", 1))
        self.max_batch = int(cfg.get("max_batch", 20000))
        now = time.time()
        backfill = float(cfg.get("backfill_hours", 0)) * 3600
        step = float(cfg.get("backfill_step_seconds", 60))
        start = now - backfill
        resume = cfg.get("resume")
        if resume:
            # A restart over stored history: counters carry on, and only the gap since the last stored
            # reading is filled (history is never generated twice).
            self.sim.resume_counters(resume.get("counters", {}))
            start = max(start, float(resume["after"]) + step)
        # History first: the timestamps still to emit, oldest first, handed out over the first polls.
        self.pending = [start + i * step for i in range(int((now - start) // step))] if now > start else []
        self.last_time: float | None = None

    def _emit(self, t: float) -> list[MetricLike]:
        return [
            self.metric(device, kind, value, unit, time=t) for device, kind, value, unit in self.sim.sample(t)
        ]

    async def collect_metrics(self) -> Sequence[MetricLike]:
        now = time.time()
        out: list[MetricLike] = []
        if self.pending:
            while self.pending and len(out) < self.max_batch:
                t = self.pending.pop(0)
                out += self._emit(t)
                self.last_time = t
            if self.pending:
                return out
        if self.last_time is None or self.samples == 1:
            times = [now]
        else:
            span = now - self.last_time
            times = [self.last_time + span * (i + 1) / self.samples for i in range(self.samples)]
        for t in times:
            if self.last_time is None or t > self.last_time:
                out += self._emit(t)
                self.last_time = t
        return out

    async def discover_devices(self) -> list[dict[str, Any]]:
        return [
            {"id": device_id, "name": name, "type": dtype, "source": self.plugin_id}
            for device_id, name, dtype in self.sim.devices()
        ]
