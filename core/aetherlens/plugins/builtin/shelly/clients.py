"""The two transports, both through aioshelly: Gen1 over HTTP (``BlockDevice``) and Gen2+ over the
device's WebSocket JSON-RPC (``RpcDevice``, which also carries the device's ``NotifyStatus`` pushes).

Gen1 is read over HTTP only (``/shelly``, ``/settings``, ``/status``, ``/relay/N``): aioshelly's CoAP
path needs UDP multicast on port 5683 and cannot cross a router or a port forward, and ``/status`` has
every value the plugin stores. ``BlockDevice.http_request`` builds URLs without a port (CoAP-era Gen1
devices always listen on 80), so a configured ``port`` is put in by the session's middleware below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, ClientSession, ClientTimeout
from aioshelly.block_device import COAP, BlockDevice
from aioshelly.common import ConnectionOptions, get_info
from aioshelly.rpc_device import RpcDevice, RpcUpdateType

DEFAULT_PORT = 80
GEN2_USERNAME = "admin"  # Gen2+ digest auth has one user, always "admin"


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    username: str | None
    password: str | None


def session_for(endpoint: Endpoint) -> ClientSession:
    """One session per device, so a hanging device ties up only its own connections."""

    async def with_port(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        url = request.url
        if url.host == endpoint.host and url.explicit_port is None and url.port == DEFAULT_PORT:
            request.url = url.with_port(endpoint.port)
        return await handler(request)

    middlewares = (with_port,) if endpoint.port != DEFAULT_PORT else ()
    return ClientSession(middlewares=middlewares, timeout=ClientTimeout(total=None))


async def identify(session: ClientSession, endpoint: Endpoint) -> dict[str, Any]:
    """The device's unauthenticated ``/shelly`` answer (Gen2+ has ``gen``; Gen1 does not)."""
    return await get_info(session, endpoint.host, port=endpoint.port)


def generation(info: dict[str, Any]) -> int:
    gen = info.get("gen", 1)
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else 1


class Gen1:
    """A Gen1 device over HTTP (basic auth when ``username``/``password`` are given)."""

    def __init__(self, session: ClientSession, endpoint: Endpoint) -> None:
        user = (endpoint.username or GEN2_USERNAME) if endpoint.password else None
        options = ConnectionOptions(
            ip_address=endpoint.host, username=user, password=endpoint.password if user else None
        )
        # The COAP object is inert until initialize() (which is never called): no socket is opened.
        self.device = BlockDevice(COAP(), session, options)
        self.shelly: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}

    async def connect(self) -> None:
        await self.device.update_shelly()
        self.shelly = self.device.shelly
        self.settings = await self.device.http_request("get", "settings")

    async def status(self) -> dict[str, Any]:
        return await self.device.http_request("get", "status")

    async def relay(self, channel: str, turn: str) -> bool:
        """``turn`` is on, off or toggle; returns the relay's state as the device reports it after."""
        answer = await self.device.http_request("get", f"relay/{channel}", {"turn": turn})
        ison = answer.get("ison")
        if not isinstance(ison, bool):
            raise ValueError(f"the device answered /relay/{channel} without 'ison': {answer!r}")
        return ison

    async def close(self) -> None:
        await self.device.shutdown()


class Gen2:
    """A Gen2+ device over its WebSocket; ``on_status(status)`` is called for each pushed status."""

    def __init__(
        self,
        session: ClientSession,
        endpoint: Endpoint,
        on_status: Callable[[dict[str, Any]], None],
        on_closed: Callable[[], None],
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.on_status = on_status
        self.on_closed = on_closed
        self.device: RpcDevice | None = None

    @property
    def connected(self) -> bool:
        return self.device is not None and self.device.connected and self.device.initialized

    async def connect(self) -> None:
        await self.close()
        options = ConnectionOptions(
            ip_address=self.endpoint.host,
            username=GEN2_USERNAME if self.endpoint.password else None,
            password=self.endpoint.password,
            port=self.endpoint.port,
        )
        device = await RpcDevice.create(self.session, None, options)
        device.subscribe_updates(self._on_update)
        self.device = device
        await device.initialize()  # GetDeviceInfo, digest auth, GetConfig, GetStatus

    def _on_update(self, device: RpcDevice, update: RpcUpdateType) -> None:
        if update is RpcUpdateType.STATUS:
            self.on_status(device.status)
        elif update is RpcUpdateType.DISCONNECTED:
            self.on_closed()

    def _device(self) -> RpcDevice:
        if self.device is None:
            raise ConnectionError("not connected")
        return self.device

    @property
    def shelly(self) -> dict[str, Any]:
        return self._device().shelly

    @property
    def config(self) -> dict[str, Any]:
        return self._device().config

    @property
    def last_status(self) -> dict[str, Any]:
        """The status the last call or push left (aioshelly keeps it merged)."""
        return self._device().status

    async def status(self) -> dict[str, Any]:
        device = self._device()
        await device.update_status()
        return device.status

    async def switch(self, channel: str, action: str) -> bool:
        device = self._device()
        index = int(channel)
        if action == "toggle":
            await device.call_rpc("Switch.Toggle", {"id": index})
        else:
            await device.switch_set(index, action == "on")
        answer = await device.call_rpc("Switch.GetStatus", {"id": index})
        output = answer.get("output")
        if not isinstance(output, bool):
            raise ValueError(f"the device answered Switch.GetStatus without 'output': {answer!r}")
        return output

    async def close(self) -> None:
        if self.device is not None:
            device, self.device = self.device, None
            await device.shutdown()
