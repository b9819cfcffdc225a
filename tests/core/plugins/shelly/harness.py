"""Runs the plugin class in this process against loopback devices (the fast tests; the supervisor
tests run it in its own process): the real aioshelly, the real ``run(emit)``, an ``emit`` that records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from aetherlens.plugins.builtin.shelly.plugin import ShellyPlugin
from aetherlens.plugins.sdk import MetricLike, PushResult, to_wire


class Emitted:
    """What the plugin emitted, with a wait for a condition on it."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def emit(self, batch: Sequence[MetricLike]) -> PushResult:
        self.metrics += [to_wire(m) for m in batch]
        self._changed.set()
        return PushResult(len(batch), [])

    def of(self, device_id: str, metric_type: str) -> list[float]:
        return [
            m["value"]
            for m in self.metrics
            if m["device_id"] == device_id and m["metric_type"] == metric_type
        ]

    def latest(self, device_id: str) -> dict[str, float]:
        return {m["metric_type"]: m["value"] for m in self.metrics if m["device_id"] == device_id}

    async def until(
        self, condition: Callable[[], bool], within: float = 15.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within
        while not condition():
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                continue


async def wait_async(
    condition: Callable[[], Awaitable[bool]], within: float = 15.0, what: str = "condition"
) -> None:
    """Wait for a condition that must be asked (the plugin's health), checking every 50 ms."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(config: dict[str, Any]) -> AsyncIterator[tuple[ShellyPlugin, Emitted]]:
    plugin = ShellyPlugin("shelly", {"interval": 3600, "timeout": 2, **config})
    assert plugin.validate_config(plugin.config) == []
    await plugin.setup()
    emitted = Emitted()
    task = asyncio.create_task(plugin.run(emitted.emit))
    try:
        yield plugin, emitted
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await plugin.teardown()
