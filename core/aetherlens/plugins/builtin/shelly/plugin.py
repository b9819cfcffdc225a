"""The ``shelly`` plugin: one ``run(emit)`` for every configured device.

Design: each device gets its own task inside ``run``. Gen1 devices are polled over HTTP every
``interval`` seconds. Gen2+ devices keep their WebSocket open: every ``NotifyStatus`` the device sends is
emitted as it arrives (only the components it changed), and the same socket is polled on the interval
too, so a steady load still gets a reading per interval and a lost push is made good by the next poll.
A Gen2+ device whose socket closes is reconnected at once, then on each interval until it answers.
All readings go through one queue to one delivery task that batches them into ``emit``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aetherlens.plugins.builtin.shelly.device import ACTIONS, DeviceSpec, Sample, ShellyDevice
from aetherlens.plugins.sdk import BasePlugin, Emit, emit_until_taken

BATCH_MAX: Final = 1000
QUEUE_MAX: Final = 20_000
CONTROL_DEADLINE: Final = 25.0


class ShellyPlugin(BasePlugin):
    capabilities = ("metrics.push", "device.discover", "device.control")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        key = f"plugins.{self.plugin_id}.config.devices"
        problems: list[str] = []
        seen: dict[tuple[str, int], int] = {}
        ids: dict[str, int] = {}
        for i, item in enumerate(config.get("devices") or []):
            spec = DeviceSpec.from_config(item)
            where = (spec.host.lower(), spec.port)
            if where in seen:
                problems.append(f"{key}[{i}].host: {spec.address} is already device {seen[where]}")
            seen.setdefault(where, i)
            if spec.id is not None:
                if spec.id in ids:
                    problems.append(f"{key}[{i}].id: '{spec.id}' is already used by device {ids[spec.id]}")
                ids.setdefault(spec.id, i)
            if spec.username and not spec.password:
                problems.append(f"{key}[{i}].password: a username needs its password")
        return problems

    async def setup(self) -> None:
        interval = float(self.config.get("interval") or 10)
        timeout = float(self.config.get("timeout") or 5)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.devices = [
            ShellyDevice(
                DeviceSpec.from_config(item),
                interval=interval,
                timeout=timeout,
                sink=self._sink,
                log=self.log,
                on_learned=self._learned,
            )
            for item in self.config["devices"]
        ]
        self.reported: set[str] = set()  # ids the core has been given by discover_devices()
        self.discovering = False
        self.delivered = 0
        self.rejected = 0
        self.last_error: str | None = None

    async def teardown(self) -> None:
        for device in self.devices:
            await device.close()

    async def _sink(self, samples: list[Sample]) -> None:
        for device_id, metric_type, value, unit, when in samples:
            # Waits while the queue is full (the core is slower than the devices): backpressure.
            await self.queue.put(self.metric(device_id, metric_type, value, unit, time=when))

    # -- the push path -----------------------------------------------------------------------------------
    async def run(self, emit: Emit) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._deliver(emit))
            for device in self.devices:
                group.create_task(device.run(), name=f"shelly {device.spec.address}")

    async def _deliver(self, emit: Emit) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH_MAX and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            # Waits while the core's write queue is full; resends what the core refused.
            result, refusal = await emit_until_taken(emit, batch, self.log)
            if refusal is not None:
                self.last_error = refusal
            self.delivered += result.accepted
            self.rejected += len(result.rejected)
            for rejection in result.rejected[:3]:
                item = batch[int(rejection["index"])]
                self.log.warning(
                    "the core rejected %s %s: %s", item["device_id"], item["metric_type"], rejection["reason"]
                )

    # -- discovery and control -------------------------------------------------------------------------
    def _learned(self, device: ShellyDevice) -> None:
        """A device answered for the first time (or with other channels): have the core ask again, so it
        registers the device's name and type (one that was down at the start gets them now)."""
        if not self.discovering and not device.ids() <= self.reported:
            self.devices_changed()

    async def discover_devices(self) -> list[dict[str, Any]]:
        self.discovering = True
        try:
            results = await asyncio.gather(*(d.devices() for d in self.devices), return_exceptions=True)
        finally:
            self.discovering = False
        found: list[dict[str, Any]] = []
        for device, result in zip(self.devices, results, strict=True):
            if isinstance(result, BaseException):
                self.log.warning("discovery skipped %s: %s", device.spec.address, result)
                continue
            found += result
        self.reported |= {str(d["id"]) for d in found}
        return found

    async def control_device(self, device_id: str, action: str) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        # Bounded below the manifest's 30 s call timeout (which would kill the process).
        async with asyncio.timeout(CONTROL_DEADLINE):
            owner = next((d for d in self.devices if d.owns(device_id) is not None), None)
            if owner is None:
                # Not known yet: a device that has not answered since the plugin started may own it.
                unknown = [d for d in self.devices if d.base is None]
                await asyncio.gather(*(d.ensure() for d in unknown), return_exceptions=True)
                owner = next((d for d in unknown if d.owns(device_id) is not None), None)
            if owner is None:
                raise ValueError(f"{device_id!r} is not a device of this Shelly plugin instance")
            return {"state": await owner.control(device_id, action)}

    async def get_health(self) -> dict[str, Any]:
        return {
            "devices": {(d.base or d.spec.address): d.health() for d in self.devices},
            "delivered": self.delivered,
            "rejected": self.rejected,
            "queued": self.queue.qsize(),
            "last_error": self.last_error,
        }
