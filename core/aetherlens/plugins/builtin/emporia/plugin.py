"""The ``emporia`` plugin: minute power of every Vue circuit and smart plug of an Emporia cloud account.

Each poll makes at most one usage request for all devices of the account (``getDeviceListUsages``,
scale ``1MIN``), never more often than ``request_interval`` (at least 60 s) whatever the poll
interval: Emporia asked API users to stay under about 2000 requests a day (PyEmVue issue #19), which
one request a minute (1440 a day) keeps. A 429 answer stops every request until its ``Retry-After``
has passed (or a doubling backoff when it gives none); refused credentials stop sign-in attempts for
5 minutes, doubling to an hour, instead of retrying them every poll (a restart with a new config tries
at once). A channel the cloud has no data for (``usage: null``, e.g. a plug that is offline) is skipped
and noted in its health; the others' readings are returned.

Energy: the API offers no lifetime counter, only the energy of a window (minute, day, month...). The
plugin reports the minute's average power and lets the core integrate it into energy (as it does for
every power-only device); a ``1D`` total would be a second request per poll and a counter that resets
at the device's local midnight, which Emporia is known to answer late or lower at times (the HA
integration debounces it), and the core would read every such dip as a counter reset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import pyemvue.pyemvue

from aetherlens.plugins.builtin.emporia.channels import Channel, channels, is_single, usages, watts
from aetherlens.plugins.builtin.emporia.cloud import CloudError, EmporiaCloud, LoginFailed, RateLimited
from aetherlens.plugins.sdk import BasePlugin, MetricLike

#: The shortest ``request_interval`` accepted. Module-level so that the tests' loopback harness, which
#: runs the plugin inside a real plugin process, can lower it there; users cannot.
MIN_REQUEST_INTERVAL: float = 60.0
DEVICE_REFRESH: Final = 3600.0  # the device list is read again hourly (new plugs, renamed circuits)
LOGIN_BACKOFF_FIRST: Final = 300.0
LOGIN_BACKOFF_MAX: Final = 3600.0
RATE_BACKOFF_MAX: Final = 1800.0  # a 429 without Retry-After: the interval, doubling up to this


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


class EmporiaPlugin(BasePlugin):
    capabilities = ("metrics.collect", "device.discover")

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        key = f"plugins.{self.plugin_id}.config"
        problems: list[str] = []
        interval = config.get("request_interval", 60)
        if not isinstance(interval, int | float) or interval < MIN_REQUEST_INTERVAL:
            problems.append(
                f"{key}.request_interval: {interval} is below {MIN_REQUEST_INTERVAL:g} s; Emporia asks API "
                "users to stay under about 2000 requests a day, and minute data changes once a minute"
            )
        if not str(config.get("username", "")).strip():
            problems.append(f"{key}.username: the Emporia account's e-mail address is required")
        return problems

    async def setup(self) -> None:
        self.interval = float(self.config.get("request_interval", 60))
        self.state_dir.mkdir(parents=True, exist_ok=True)  # the host made it; a bare unit test may not
        self.budget = float(self.config.get("timeout", 20))
        self.cloud = EmporiaCloud(
            str(self.config["username"]).strip(),
            str(self.config["password"]),
            self.state_dir / "tokens.json",
            self.budget,
        )
        self.channels: dict[str, Channel] = {}
        self.singles: set[int] = set()
        self.gids: list[int] = []
        self.devices_read: float | None = None  # monotonic
        self.next_request = 0.0  # monotonic: the cadence (request_interval)
        self.blocked_until = 0.0  # monotonic: a 429's Retry-After or the sign-in backoff
        self.blocked_why: str | None = None
        self.login_failures = 0
        self.rate_streak = 0
        self.requests = 0
        self.rate_limited = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.consecutive_errors = 0
        self.device_health: dict[str, dict[str, Any]] = {}

    async def teardown(self) -> None:
        self.cloud.close()

    # -- polling ---------------------------------------------------------------------------------------
    async def collect_metrics(self) -> Sequence[MetricLike]:
        now = time.monotonic()
        if now < self.blocked_until or now < self.next_request:
            return []  # nothing is asked of the cloud before it may be (health says why)
        self.next_request = now + self.interval
        try:
            metrics = await self._within_budget(self._poll())
        except LoginFailed as exc:
            self.login_failures += 1
            self.cloud.forget_session()
            wait = min(LOGIN_BACKOFF_MAX, LOGIN_BACKOFF_FIRST * 2 ** (self.login_failures - 1))
            self._block(wait, str(exc))
            raise CloudError(f"{exc}; next sign-in attempt in {wait:g} s") from None
        except RateLimited as exc:
            self.rate_limited += 1
            self.rate_streak += 1
            if exc.retry_after is not None:
                wait = max(exc.retry_after, self.interval)
            else:
                wait = min(RATE_BACKOFF_MAX, max(self.interval, 60.0) * 2 ** (self.rate_streak - 1))
            self._block(wait, str(exc))
            raise CloudError(f"{exc}; next request in {wait:g} s") from None
        except CloudError as exc:
            self._failed(str(exc))
            raise
        self.rate_streak = 0
        return metrics

    async def _within_budget[T](self, work: Coroutine[Any, Any, T]) -> T:
        # One poll may need sign-in, the device list and the usage: ``timeout`` bounds them together, so
        # a poll always ends before the manifest's 30 s (past which the supervisor kills the process).
        try:
            async with asyncio.timeout(self.budget):
                return await work
        except TimeoutError:
            raise CloudError(f"the Emporia cloud did not finish within {self.budget:g} s") from None

    async def _poll(self) -> list[MetricLike]:
        await self._ensure_devices()
        self.requests += 1
        answer = await self.cloud.usage(self.gids, datetime.now(UTC))
        now = time.time()
        metrics: list[MetricLike] = []
        seen: set[str] = set()
        for usage in usages(answer, self.singles):
            if usage.device_id in seen:
                continue  # a plug may appear nested under its circuit and on its own
            seen.add(usage.device_id)
            if usage.device_id not in self.channels:  # e.g. Balance: only the usage answer names it
                self.channels[usage.device_id] = Channel(
                    usage.device_id,
                    usage.name or usage.channel_num,
                    "meter",
                    usage.gid,
                    usage.channel_num,
                    "",
                    "",
                )
            health = self._health_of(usage.device_id)
            if usage.kwh is None:
                health["last_error"] = "no usage for the last minute (device offline, or no data yet)"
                health["consecutive_errors"] += 1
                continue
            metrics.append(self.metric(usage.device_id, "power", watts(usage.kwh), "W", time=usage.time))
            health.update(last_success=_iso(now), last_error=None, consecutive_errors=0)
        self.last_success, self.last_error, self.consecutive_errors = now, None, 0
        return metrics

    async def _ensure_devices(self) -> None:
        if not self.cloud.signed_in:
            await self.cloud.login()
            self.login_failures = 0
            self.blocked_why = None
        fresh = self.devices_read is not None and time.monotonic() - self.devices_read < DEVICE_REFRESH
        if self.gids and fresh:
            return
        devices = await self.cloud.devices()
        found = channels(devices)
        self.channels.update(found)
        self.singles = {int(d.device_gid) for d in devices if is_single(d)}
        self.gids = sorted({int(d.device_gid) for d in devices})
        self.devices_read = time.monotonic()
        if not self.gids:
            raise CloudError("device list: the account has no devices")

    def _block(self, wait: float, why: str) -> None:
        self.blocked_until = time.monotonic() + wait
        self.blocked_why = f"{why} (waiting until {_iso(time.time() + wait)})"
        self._failed(why)

    def _failed(self, error: str) -> None:
        self.last_error = error
        self.consecutive_errors += 1
        for device in self.channels:
            health = self._health_of(device)
            health["last_error"] = error
            health["consecutive_errors"] += 1

    def _health_of(self, device: str) -> dict[str, Any]:
        health = self.device_health.get(device)
        if health is None:
            channel = self.channels.get(device)
            health = {
                "host": _api_host(),
                "last_success": None,
                "last_error": None,
                "consecutive_errors": 0,
                "model": channel.model if channel else "",
                "firmware": channel.firmware if channel else "",
            }
            self.device_health[device] = health
        return health

    # -- discovery and health --------------------------------------------------------------------------
    async def discover_devices(self) -> list[dict[str, Any]]:
        if time.monotonic() < self.blocked_until:
            raise CloudError(f"not asking the Emporia cloud yet: {self.blocked_why}")
        try:
            self.devices_read = None  # discovery always reads the list afresh
            await self._within_budget(self._ensure_devices())
        except LoginFailed as exc:
            self.cloud.forget_session()
            self._failed(str(exc))
            raise
        return [{"id": c.device_id, "name": c.name, "type": c.type} for c in self.channels.values()]

    async def get_health(self) -> dict[str, Any]:
        now = time.monotonic()
        waiting = self.blocked_why if now < self.blocked_until else None
        return {
            "host": _api_host(),
            "signed_in": self.cloud.signed_in,
            "password_logins": self.cloud.logins,
            "token_logins": self.cloud.token_logins,
            "login_failures": self.login_failures,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "request_interval": self.interval,
            "next_request_in": round(max(0.0, self.next_request - now, self.blocked_until - now), 1),
            "waiting": waiting,
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "consecutive_errors": self.consecutive_errors,
            "devices": {device: dict(health) for device, health in self.device_health.items()},
        }


def _api_host() -> str:
    # Read at call time: pyemvue's API root is where its requests go.
    return urlsplit(str(pyemvue.pyemvue.API_ROOT)).netloc or str(pyemvue.pyemvue.API_ROOT)
