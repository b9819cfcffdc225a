"""``influxdb_export``: write the core's metrics to InfluxDB as line protocol, batched and retried.

Line protocol is built by the ``influxdb-client`` library's ``Point`` and sent with its async write API.
A failed write is retried with exponential backoff; lines stay buffered (bounded by ``max_buffer``,
oldest dropped first and counted) until a write succeeds, so a short outage of InfluxDB loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from aetherlens.plugins.sdk import BasePlugin

_RETRYABLE = {408, 429, 500, 502, 503, 504}


def to_line(metric: dict[str, Any]) -> str:
    when = metric["time"]
    if isinstance(when, str):
        moment = datetime.fromisoformat(when)
        nanos = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    else:
        nanos = int(float(when) * 1e9)
    point = Point(str(metric["metric_type"])).tag("device_id", str(metric["device_id"]))
    if metric.get("unit"):
        point = point.tag("unit", str(metric["unit"]))
    for key, value in sorted((metric.get("tags") or {}).items()):
        point = point.tag(str(key), str(value))
    return str(point.field("value", float(metric["value"])).time(nanos, WritePrecision.NS).to_line_protocol())


class InfluxExportPlugin(BasePlugin):
    capabilities = ("metrics.export",)

    async def setup(self) -> None:
        cfg = self.config
        self.client = InfluxDBClientAsync(
            url=cfg["url"],
            token=cfg.get("token", ""),
            org=cfg.get("org", ""),
            timeout=int(float(cfg.get("timeout", 10)) * 1000),
        )
        self.write_api = self.client.write_api()
        self.buffer: list[str] = []
        self.lock = asyncio.Lock()
        self.written = 0
        self.batches = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.flusher = asyncio.create_task(self._flush_periodically())

    async def teardown(self) -> None:
        self.flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.flusher
        with contextlib.suppress(Exception):
            await self.flush()
        await self.client.close()

    async def export_metrics(self, metrics: Sequence[dict[str, Any]]) -> None:
        for metric in metrics:
            try:
                self.buffer.append(to_line(metric))
            except (KeyError, TypeError, ValueError) as exc:
                self.log.warning("skipping a metric that cannot be exported: %s", exc)
        overflow = len(self.buffer) - int(self.config.get("max_buffer", 200000))
        if overflow > 0:
            del self.buffer[:overflow]
            self.dropped += overflow
            self.log.warning("export buffer full: dropped the %d oldest lines", overflow)
        if len(self.buffer) >= int(self.config.get("batch_size", 5000)):
            await self.flush(full_batches_only=True)

    async def flush(self, *, full_batches_only: bool = False) -> None:
        """Send what is buffered, batch by batch; stops at the first batch that fails for good.

        A flush triggered by size sends only full batches; the timer and shutdown send the remainder.
        """
        async with self.lock:
            size = int(self.config.get("batch_size", 5000))
            while self.buffer and (len(self.buffer) >= size or not full_batches_only):
                batch = self.buffer[:size]
                if not await self._write_with_retry(batch):
                    return
                del self.buffer[: len(batch)]
                self.written += len(batch)
                self.batches += 1

    async def _write_with_retry(self, batch: list[str]) -> bool:
        delay = float(self.config.get("retry_initial", 0.5))
        retries = int(self.config.get("max_retries", 5))
        for attempt in range(retries + 1):
            try:
                await self.write_api.write(
                    bucket=self.config["bucket"], org=self.config.get("org", ""), record="\n".join(batch)
                )
                return True
            except ApiException as exc:
                self.failures += 1
                self.last_error = f"HTTP {exc.status}: {exc.reason}"
                if exc.status not in _RETRYABLE:
                    # The endpoint refuses this data (bad token, bad bucket): retrying cannot help.
                    self.log.error("InfluxDB refused a batch of %d lines: %s", len(batch), self.last_error)
                    return False
            except (OSError, TimeoutError) as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # aiohttp client errors and the like
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            if attempt < retries:
                self.log.warning(
                    "InfluxDB write failed (%s); retry %d in %.1f s", self.last_error, attempt + 1, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, float(self.config.get("retry_max", 30)))
        return False

    async def _flush_periodically(self) -> None:
        interval = float(self.config.get("flush_interval", 5))
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def get_health(self) -> dict[str, Any]:
        return {
            "buffered": len(self.buffer),
            "written": self.written,
            "batches": self.batches,
            "failures": self.failures,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }
