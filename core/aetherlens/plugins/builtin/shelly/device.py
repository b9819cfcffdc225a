"""One configured Shelly: its connection, its poll loop, its pushes, its health.

Each device lives in its own task with its own session and its own timeout, so a dead, slow or
misconfigured device only ever delays itself. Connections are made lazily (first poll, discovery or
control) and dropped after a failure, to be made again on the next attempt.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import ClientError, ClientSession, ContentTypeError
from aioshelly.exceptions import (
    DeviceConnectionError,
    DeviceConnectionTimeoutError,
    InvalidAuthError,
    RpcCallError,
)

from aetherlens.plugins.builtin.shelly import readings as rd
from aetherlens.plugins.builtin.shelly.clients import (
    DEFAULT_PORT,
    Endpoint,
    Gen1,
    Gen2,
    generation,
    identify,
    session_for,
)

#: a device clock further than this from ours is not trusted for a push's timestamp
CLOCK_TOLERANCE: Final = 300.0
ACTIONS: Final = ("on", "off", "toggle")

#: (device id, metric type, value, unit, epoch seconds)
Sample = tuple[str, str, float, str, float]
Sink = Callable[[list[Sample]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    host: str
    port: int
    id: str | None
    name: str | None
    room: str | None
    username: str | None
    password: str | None

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> DeviceSpec:
        return cls(
            host=str(item["host"]),
            port=int(item.get("port") or DEFAULT_PORT),
            id=item.get("id"),
            name=item.get("name"),
            room=item.get("room"),
            username=item.get("username"),
            password=item.get("password"),
        )

    @property
    def address(self) -> str:
        return self.host if self.port == DEFAULT_PORT else f"{self.host}:{self.port}"


def describe(exc: BaseException) -> str:
    """A sentence for health and logs (never with credentials: aioshelly's messages carry none)."""
    if isinstance(exc, InvalidAuthError):
        return "wrong or missing credentials: the device refused the username/password (check 'password')"
    if isinstance(exc, TimeoutError | DeviceConnectionTimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, rd.Malformed):
        return f"malformed answer: {exc}"
    if isinstance(exc, RpcCallError):
        return f"the device refused the call: {exc.code} {exc.message}".rstrip()
    if isinstance(exc, ContentTypeError):  # answered, but not with JSON (a web page, a proxy's error)
        return f"malformed answer: not JSON ({exc.message})"
    if isinstance(exc, DeviceConnectionError | ClientError | OSError):
        cause = exc.__cause__ or (exc.args[0] if exc.args else None)
        return f"cannot connect: {cause or exc}"
    if isinstance(exc, ValueError | KeyError | TypeError):  # an answer that is not JSON, or not shaped
        return f"malformed answer: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _now() -> float:
    return time.time()


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


class ShellyDevice:
    def __init__(
        self,
        spec: DeviceSpec,
        *,
        interval: float,
        timeout: float,
        sink: Sink,
        log: logging.Logger,
        on_learned: Callable[[ShellyDevice], None] | None = None,
    ) -> None:
        self.spec = spec
        self.interval = interval
        self.timeout = timeout
        self.sink = sink
        self.log = log
        self.on_learned = on_learned
        self.endpoint = Endpoint(spec.host, spec.port, spec.username, spec.password)
        self.session: ClientSession | None = None
        self.gen1: Gen1 | None = None
        self.gen2: Gen2 | None = None
        self.generation: int | None = None
        self.base: str | None = spec.id
        self.layout: rd.Layout | None = None
        self.model: str | None = None
        self.firmware: str | None = None
        self.device_name: str | None = None
        self._connect_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._pushed: dict[str, Any] = {}  # component key -> its status at the last emission
        self._push_tasks: set[asyncio.Task[None]] = set()
        # health
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.consecutive_errors = 0
        self.polls = 0
        self.pushes = 0
        self.samples = 0

    # -- connection ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        if self.gen1 is not None:
            return True
        return self.gen2 is not None and self.gen2.connected

    async def _connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            await self._drop()
            if self.session is None:
                self.session = session_for(self.endpoint)
            info = await identify(self.session, self.endpoint)
            self.generation = generation(info)
            if self.generation == 1:
                gen1 = Gen1(self.session, self.endpoint)
                await gen1.connect()
                status = await gen1.status()
                self.gen1 = gen1
                self._learn(gen1.shelly, gen1.shelly.get("type"), gen1.shelly.get("fw"))
                self.layout = rd.gen1_layout(gen1.settings, status)
                name = gen1.settings.get("name") or gen1.shelly.get("name")
                self.device_name = str(name) if name else None
            else:
                gen2 = Gen2(self.session, self.endpoint, self._on_push, self._on_closed)
                self.gen2 = gen2
                await gen2.connect()
                shelly, config = gen2.shelly, gen2.config
                self._learn(shelly, shelly.get("model"), shelly.get("fw_id"))
                self.layout = rd.gen2_layout(config, gen2.last_status)
                sys_device = (config.get("sys") or {}).get("device") or {}
                name = sys_device.get("name") or shelly.get("name")
                self.device_name = str(name) if name else None
                self._pushed = {}
            if self.on_learned is not None:
                self.on_learned(self)
            self.log.info(
                "%s: Shelly %s (gen %s, firmware %s) as %s",
                self.spec.address,
                self.model,
                self.generation,
                self.firmware,
                self.base,
            )

    def ids(self) -> set[str]:
        """The AetherLens ids of this device, once it has answered (empty before)."""
        if self.layout is None or self.base is None:
            return set()
        found = {self.layout.device_id(self.base, c.key) for c in self.layout.channels}
        return found | ({self.base} if self.layout.has_total else set())

    def _learn(self, info: Mapping[str, Any], model: Any, firmware: Any) -> None:
        mac = str(info.get("mac") or "").replace(":", "").lower()
        if not mac:
            raise rd.Malformed("the device did not report its MAC address")
        self.base = self.spec.id or f"shelly_{mac}"
        self.model = str(model) if model else None
        self.firmware = str(firmware) if firmware else None

    async def _drop(self) -> None:
        gen1, gen2, self.gen1, self.gen2 = self.gen1, self.gen2, None, None
        for client in (gen1, gen2):
            if client is not None:
                try:
                    await client.close()
                except Exception as exc:  # closing a broken connection may fail; it is gone either way
                    self.log.debug("%s: closing: %s", self.spec.address, exc)

    async def close(self) -> None:
        for task in list(self._push_tasks):
            task.cancel()
        await self._drop()
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- polling -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll on the interval for as long as the plugin lives; never raises (but for cancellation)."""
        while True:
            self._wake.clear()  # before the poll: a wake during it (a switch) means poll again at once
            await self.poll_once()
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def poll_once(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                await self._connect()
                samples = await self._poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            await self._drop()
            return False
        await self.sink(samples)  # outside the timeout: waiting for the core is backpressure, not failure
        self.polls += 1
        self.samples += len(samples)
        self._succeeded()
        return True

    async def _poll(self) -> list[Sample]:
        assert self.layout is not None
        if self.gen1 is not None:
            return self._samples(rd.gen1_readings(await self.gen1.status()), _now())
        assert self.gen2 is not None
        status = await self.gen2.status()
        self._remember(status, None)
        return self._samples(rd.gen2_readings(status), _now())

    def wake(self) -> None:
        self._wake.set()

    def _samples(self, items: list[rd.Reading], when: float) -> list[Sample]:
        assert self.layout is not None and self.base is not None
        return [
            (self.layout.device_id(self.base, r.channel), r.metric_type, r.value, r.unit, when) for r in items
        ]

    def _succeeded(self) -> None:
        if self.consecutive_errors:
            self.log.info("%s: answering again", self.spec.address)
        self.last_success = _now()
        self.consecutive_errors = 0

    def _failed(self, exc: BaseException) -> None:
        self.last_error = describe(exc)
        self.last_error_at = _now()
        self.consecutive_errors += 1
        if self.consecutive_errors == 1 or self.consecutive_errors % 60 == 0:
            self.log.warning("%s: %s", self.spec.address, self.last_error)

    # -- pushes (Gen2+) ------------------------------------------------------------------------------------
    def _remember(self, status: Mapping[str, Any], keys: set[str] | None) -> None:
        for key, value in status.items():
            if keys is None or key in keys:
                self._pushed[key] = copy.deepcopy(value)

    def _on_push(self, status: dict[str, Any]) -> None:
        """aioshelly merged a NotifyStatus into ``status``: emit the components it changed."""
        if self.layout is None or self.base is None:
            return
        changed = {
            key
            for key, value in status.items()
            if key.partition(":")[0] in rd.GEN2_METERED and self._pushed.get(key) != value
        }
        if not changed:
            return
        try:
            items = rd.gen2_readings(status, changed)
        except rd.Malformed as exc:
            self._failed(exc)
            return
        self._remember(status, changed)
        samples = self._samples(items, self._push_time(status.get("ts")))
        self.pushes += 1
        task = asyncio.get_running_loop().create_task(self._deliver_push(samples))
        self._push_tasks.add(task)
        task.add_done_callback(self._push_tasks.discard)

    async def _deliver_push(self, samples: list[Sample]) -> None:
        await self.sink(samples)
        self.samples += len(samples)
        self._succeeded()

    @staticmethod
    def _push_time(ts: Any) -> float:
        """NotifyStatus carries the device's measurement time (``ts``); trusted when its clock is sane."""
        now = _now()
        if isinstance(ts, int | float) and not isinstance(ts, bool) and abs(ts - now) <= CLOCK_TOLERANCE:
            return float(ts)
        return now

    def _on_closed(self) -> None:
        if self.gen2 is not None:
            self.log.info("%s: WebSocket closed; reconnecting", self.spec.address)
        self.wake()  # reconnect now rather than at the next interval

    # -- discovery and control ----------------------------------------------------------------------------
    async def ensure(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            await self._drop()
            raise ConnectionError(f"Shelly at {self.spec.address}: {describe(exc)}") from None

    def owns(self, device_id: str) -> str | None:
        """The channel key ``device_id`` names on this device ("" for the base), or None."""
        if self.base is None:
            return None
        if device_id == self.base:
            return ""
        prefix = f"{self.base}_"
        return device_id[len(prefix) :] if device_id.startswith(prefix) else None

    async def control(self, device_id: str, action: str) -> str:
        await self.ensure()
        assert self.layout is not None and self.base is not None
        key = self.owns(device_id)
        if key is None:
            raise LookupError(device_id)
        if key == "" and len(self.layout.channels) == 1 and not self.layout.has_total:
            key = self.layout.channels[0].key
        channel = self.layout.channel(key)
        switchable = [self.layout.device_id(self.base, c.key) for c in self.layout.channels if c.switchable]
        if key == "" and switchable:
            raise ValueError(
                f"{device_id!r} is the whole device, not a switchable channel; switch one of "
                f"{', '.join(switchable)}"
            )
        if channel is None or not channel.switchable:
            what = f"{self.model or 'Shelly'} at {self.spec.address}"
            raise ValueError(
                f"{device_id!r} is not a switchable channel: it is a metering-only channel of the {what}"
            )
        try:
            async with asyncio.timeout(self.timeout):
                if self.gen1 is not None:
                    on = await self.gen1.relay(channel.key, action)
                else:
                    assert self.gen2 is not None
                    on = await self.gen2.switch(channel.key, action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            raise ConnectionError(f"switching {device_id!r}: {describe(exc)}") from None
        self.log.info(
            "%s: %s switched %s (now %s)", self.spec.address, device_id, action, "on" if on else "off"
        )
        if self.gen1 is not None:
            self.wake()  # Gen1 does not push: poll now so the new state is stored without waiting
        return "on" if on else "off"

    async def devices(self) -> list[dict[str, Any]]:
        await self.ensure()
        assert self.layout is not None and self.base is not None
        name = self.spec.name or self.device_name or self.base
        is_plug = "PLG" in (self.model or "") or "plug" in str(self._app()).lower()
        found: list[dict[str, Any]] = []
        single = len(self.layout.channels) == 1 and not self.layout.has_total
        if self.layout.has_total:
            found.append({"id": self.base, "name": name, "type": "meter"})
        for channel in self.layout.channels:
            kind = "plug" if is_plug and channel.switchable else ("other" if channel.switchable else "meter")
            channel_name = name if single else f"{name} {channel.name or 'channel ' + channel.key}"
            found.append(
                {"id": self.layout.device_id(self.base, channel.key), "name": channel_name, "type": kind}
            )
        if self.spec.room:
            for item in found:
                item["room"] = self.spec.room
        return found

    def _app(self) -> str | None:
        if self.gen2 is not None and self.gen2.device is not None:
            app = self.gen2.shelly.get("app")
            return str(app) if app else None
        return None

    def health(self) -> dict[str, Any]:
        return {
            "host": self.spec.address,
            "id": self.base,
            "generation": self.generation,
            "model": self.model,
            "firmware": self.firmware,
            "connected": self.connected,
            "push": self.gen2 is not None and self.gen2.connected,
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "consecutive_errors": self.consecutive_errors,
            "polls": self.polls,
            "pushes": self.pushes,
            "readings": self.samples,
        }
