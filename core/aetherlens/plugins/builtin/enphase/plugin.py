"""The ``enphase`` plugin: each configured Envoy read concurrently through pyenphase, every poll.

Each Envoy is read under its own timeout (``timeout``, below the manifest's, which would kill the
process), so a dead or hanging Envoy is skipped for that poll with its error in the health while the
others' readings are returned. Only when no Envoy answered does the poll fail as a whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pyenphase.ssl import NO_VERIFY_SSL_CONTEXT

from aetherlens.plugins.builtin.enphase import readings
from aetherlens.plugins.builtin.enphase.link import EnvoyConfig, EnvoyLink, EnvoyReadError
from aetherlens.plugins.sdk import BasePlugin, MetricLike


class EnphasePlugin(BasePlugin):
    capabilities = ("metrics.collect", "device.discover")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        key = f"plugins.{self.plugin_id}.config.devices"
        problems: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(config.get("devices") or []):
            for field in ("host", "id"):
                if (value := item.get(field)) is None:
                    continue
                if (first := seen.get(f"{field}:{value}")) is not None:
                    problems.append(f"{key}[{i}].{field}: '{value}' is already devices[{first}].{field}")
                seen.setdefault(f"{field}:{value}", i)
            if item.get("password") and not item.get("username"):
                problems.append(f"{key}[{i}].password: give 'username' with it")
        return problems

    async def setup(self) -> None:
        # One session for all Envoys, not verifying certificates: Envoys serve HTTPS with a
        # self-signed certificate (pyenphase's own default session does the same).
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=NO_VERIFY_SSL_CONTEXT))
        timeout = float(self.config.get("timeout", 20))
        self.links = [
            EnvoyLink(EnvoyConfig.parse(item), self.session, timeout) for item in self.config["devices"]
        ]
        self.polls = 0

    async def teardown(self) -> None:
        await self.session.close()

    async def collect_metrics(self) -> Sequence[MetricLike]:
        self.polls += 1
        results = await asyncio.gather(*(link.read() for link in self.links), return_exceptions=True)
        now = datetime.now(UTC)
        out: list[MetricLike] = []
        failures: list[str] = []
        for link, result in zip(self.links, results, strict=True):
            if isinstance(result, EnvoyReadError):
                failures.append(str(result))
                continue
            if isinstance(result, BaseException):
                raise result  # not an Envoy's failure (a bug, MemoryError): let the core see it
            base = link.base_id
            assert base is not None  # a successful read has the serial
            for r in readings.readings(base, result, now):
                out.append(self.metric(r.device_id, r.metric_type, r.value, r.unit, time=r.time))
        for failure in failures:
            self.log.warning("%s", failure)
        if failures and len(failures) == len(self.links):
            raise EnvoyReadError("no Envoy answered: " + "; ".join(failures))
        return out

    async def discover_devices(self) -> list[dict[str, Any]]:
        """The devices of every Envoy that answers now: its site devices and one per inverter."""
        results = await asyncio.gather(*(link.read() for link in self.links), return_exceptions=True)
        devices: list[dict[str, Any]] = []
        for link, result in zip(self.links, results, strict=True):
            if isinstance(result, EnvoyReadError):
                continue
            if isinstance(result, BaseException):
                raise result
            base = link.base_id
            assert base is not None
            name = link.config.name or f"Envoy {link.serial}"
            if result.system_production is not None:
                devices.append(self._device(readings.production_id(base), f"{name} production", "inverter"))
            if result.system_consumption is not None:
                devices.append(self._device(readings.consumption_id(base), f"{name} consumption", "meter"))
            if result.system_net_consumption is not None:
                devices.append(self._device(readings.net_id(base), f"{name} grid (net)", "meter"))
            for serial in sorted(result.inverters or {}):
                devices.append(
                    self._device(readings.inverter_id(base, serial), f"{name} inverter {serial}", "inverter")
                )
        return devices

    def _device(self, device_id: str, name: str, kind: str) -> dict[str, Any]:
        return {"id": device_id, "name": name, "type": kind, "source": self.plugin_id}

    async def get_health(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "devices": {link.health_key: link.health() for link in self.links},
        }
