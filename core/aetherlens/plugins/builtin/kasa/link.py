"""One reachable Kasa device: its python-kasa object (connected lazily), a lock, and its health."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kasa import Device
from kasa.deviceconfig import DeviceConnectionParameters

from aetherlens.plugins.builtin.kasa.channels import Channel, base_id, channels
from aetherlens.plugins.builtin.kasa.connection import Target, connect

log = logging.getLogger(__name__)


@dataclass
class Health:
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_errors: int = 0

    def ok(self) -> None:
        self.last_success = datetime.now(UTC)
        self.consecutive_errors = 0

    def failed(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = datetime.now(UTC)
        self.consecutive_errors += 1


def describe(exc: BaseException) -> str:
    """An error as one line for health and logs (python-kasa's messages carry no credentials)."""
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@dataclass
class Link:
    target: Target
    device: Device | None = None
    #: the transport that answered first (so ``auto`` searches once, reconnects go straight to it)
    params: DeviceConnectionParameters | None = None
    health: Health = field(default_factory=Health)
    #: the device id, model, firmware and outlet count of the last answer (kept while it is down)
    known_base: str | None = None
    model: str | None = None
    firmware: str | None = None
    outlets: int = 0
    mac: str | None = None
    # One request at a time per device: a switch and a poll must not interleave on one connection.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> str:
        """Health key: the device id once known, else the address."""
        return self.known_base or self.target.device_id or self.target.address

    def channels(self) -> list[Channel]:
        if self.device is None or self.known_base is None:
            return []
        return channels(self.device, self.known_base, self.target.name)

    async def refresh(self, timeout: float) -> Device:
        """Connect (first time, or after a failure) or update; on failure drop the connection so the
        next call reconnects, and re-raise. The caller bounds the whole call (python-kasa retries on
        its own); ``timeout`` is what python-kasa gets per request. A timeout reaches this as a
        cancellation: the caller records it."""
        try:
            if self.device is None:
                self.device = await connect(self.target, timeout, self.params)
                self.params = self.device.config.connection_type
            else:
                await self.device.update()
            self.known_base = base_id(self.device, self.target.device_id)
        except BaseException as exc:
            await self.drop()
            if isinstance(exc, Exception):
                self.health.failed(describe(exc))
            raise
        device = self.device
        assert device is not None
        self.mac = (device.mac or "").lower() or None
        self.model, self.firmware = device.model, device.hw_info.get("sw_ver")
        self.outlets = len(device.children)
        self.health.ok()
        return device

    async def drop(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            try:
                await device.disconnect()
            except Exception as exc:  # closing a broken connection may fail as well; nothing to keep
                log.debug("closing %s: %s", self.target.address, exc)

    def health_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "host": self.target.address,
            "last_success": self.health.last_success.isoformat() if self.health.last_success else None,
            "last_error": self.health.last_error,
            "last_error_at": self.health.last_error_at.isoformat() if self.health.last_error_at else None,
            "consecutive_errors": self.health.consecutive_errors,
            "discovered": self.target.discovered,
        }
        if self.model:
            record["model"] = self.model
            record["firmware"] = self.firmware
        if self.outlets:
            record["outlets"] = self.outlets
        return record
