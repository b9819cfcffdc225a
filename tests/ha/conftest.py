"""Fixtures of the integration tests: a loopback HTTP + WebSocket server answering with the API
answers recorded from a real core (fixtures/README.md), and a config entry pointing at it.

`CoreServer` is a real aiohttp server on 127.0.0.1 (so the tests need `socket_enabled`, which the
`core` fixture requests): the integration's client talks real HTTP and a real WebSocket to it. Tests
change what it answers (`server.answers[...]`, `server.fail(...)`), take it down and up again on the
same port (`await server.stop()` / `await server.start()`), and push stream messages
(`await server.push(...)`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
from collections.abc import AsyncGenerator, Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.aetherlens.const import CONF_API_KEY, CONF_URL, DOMAIN

FIXTURES = Path(__file__).parent / "fixtures"
# The test recorder's SQL echo drowns every failure's log.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
API_KEY = "al_2ad1e2db_testkeytestkeytestkeytestkeytestkeytest"
INSTANCE_ID = "c17e5444-4e29-493a-9093-1a1884a4d2b7"
ACTIVE_TARIFF = "413d8531-6f23-43da-b0bb-d7e8af7e18c1"


def load_fixture(name: str) -> Any:
    """A recorded answer (a fresh copy: tests may change it)."""
    return json.loads((FIXTURES / name).read_text())


type Answer = Callable[[web.Request], tuple[int, Any]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CoreServer:
    """The core's API, answering from the recorded fixtures."""

    def __init__(self) -> None:
        self.port = free_port()
        self.api_key = API_KEY
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.stream_connections = 0
        self.subscribed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.data: dict[str, Any] = {
            "info": load_fixture("info.json"),
            "devices": load_fixture("devices.json"),
            "metrics_current": load_fixture("metrics_current.json"),
            "costs_summary": load_fixture("costs_summary.json"),
            "costs_devices_today": load_fixture("costs_devices_today.json"),
            "costs_devices_cycle_nov": load_fixture("costs_devices_cycle_nov.json"),
            "costs_comparison": load_fixture("costs_comparison.json"),
            "costs_bill": load_fixture("costs_bill.json"),
            "tariff": load_fixture("tariff.json"),
            "alerts": load_fixture("alerts.json"),
            "alert_events": load_fixture("alert_events.json"),
            "cloud_costs_summary": None,  # None = the route does not exist (404), as in the recorded core
        }
        # Path (below /api/v1) -> answer; tests replace or add entries (ha-statistics adds its routes).
        self.answers: dict[str, Answer] = {
            "/info": self._plain("info"),
            "/devices": self._plain("devices"),
            "/metrics/current": self._plain("metrics_current"),
            "/costs/summary": self._plain("costs_summary"),
            "/costs/devices": self._device_costs,
            "/costs/comparison": self._plain("costs_comparison"),
            "/costs/bill": self._plain("costs_bill"),
            "/tariffs/{id}": self._tariff,
            "/alerts": self._plain("alerts"),
            "/alerts/events": self._plain("alert_events"),
            "/alerts/events/{id}/ack": self._ack,
            "/cloud-costs/summary": self._cloud,
        }
        self._failures: dict[str, tuple[int, Any]] = {}
        self._open: set[web.WebSocketResponse] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------------------- control

    def fail(self, path: str, status: int, body: Any = None) -> None:
        """Answer `path` (or "*" = every route) with this status until `heal(path)`."""
        if body is None:
            code = {401: "invalid_token", 404: "not_found", 503: "database_unavailable"}.get(status, "error")
            body = {"error": {"code": code, "message": f"test failure {status}"}}
        self._failures[path] = (status, body)

    def heal(self, path: str = "*") -> None:
        self._failures.pop(path, None)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/v1/stream", self._stream)
        app.router.add_route("*", "/api/v1/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Go away entirely (connections refused), closing open streams (authenticated or not)."""
        for ws in list(self._open):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def push(self, message: dict[str, Any]) -> None:
        """Send one stream message to every subscribed socket."""
        for ws in list(self.sockets):
            await ws.send_json(message)

    async def close_streams(self, code: int = 1001) -> None:
        for ws in list(self.sockets):
            await ws.close(code=code)

    def calls(self, path: str) -> list[dict[str, str]]:
        """Queries of the requests made to `path`."""
        return [query for _, p, query in self.requests if p == path]

    # ------------------------------------------------------------------------------------ handlers

    def _plain(self, key: str) -> Answer:
        return lambda _request: (200, self.data[key])

    def _device_costs(self, request: web.Request) -> tuple[int, Any]:
        start = request.query["from"]
        assert "to" in request.query, "the core requires `to`"
        if start.startswith((self.data["costs_summary"]["day_start"] or "2026-12-01")[:10]):
            return 200, self.data["costs_devices_today"]
        return 200, self.data["costs_devices_cycle_nov"]

    def _tariff(self, request: web.Request) -> tuple[int, Any]:
        if request.match_info.get("id", "") == self.data["tariff"]["id"]:
            return 200, self.data["tariff"]
        return 404, {"error": {"code": "not_found", "message": "no tariff"}}

    def _ack(self, request: web.Request) -> tuple[int, Any]:
        for event in self.data["alert_events"]["items"]:
            if str(event["id"]) == request.match_info["id"]:
                event["acknowledged_at"] = event["acknowledged_at"] or "2026-12-01T12:40:00+00:00"
                event["acknowledged_by"] = event["acknowledged_by"] or "api-key:ha"
                return 200, event
        return 404, {"error": {"code": "not_found", "message": "no alert event"}}

    def _cloud(self, _request: web.Request) -> tuple[int, Any]:
        if self.data["cloud_costs_summary"] is None:
            return 404, load_fixture("cloud_costs_summary_404.json")
        return 200, self.data["cloud_costs_summary"]

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _route(self, path: str) -> tuple[Answer | None, dict[str, str]]:
        if path in self.answers:
            return self.answers[path], {}
        parts = path.strip("/").split("/")
        for pattern, answer in self.answers.items():
            pattern_parts = pattern.strip("/").split("/")
            if len(pattern_parts) != len(parts):
                continue
            params = {}
            for want, got in zip(pattern_parts, parts, strict=True):
                if want.startswith("{"):
                    params[want.strip("{}")] = got
                elif want != got:
                    break
            else:
                return answer, params
        return None, {}

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        self.requests.append((request.method, path, dict(request.query)))
        if not self._authorized(request):
            return web.json_response(load_fixture("info_401.json"), status=401)
        failure = self._failures.get(path) or self._failures.get("*")
        if failure is not None:
            return web.json_response(failure[1], status=failure[0])
        answer, params = self._route(path)
        if answer is None:
            return web.json_response(
                {"error": {"code": "not_found", "message": f"no route /api/v1{path}"}}, status=404
            )
        request.match_info.update(params)
        status, body = answer(request)
        return web.json_response(copy.deepcopy(body), status=status)

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.stream_connections += 1
        self._open.add(ws)
        try:
            return await self._serve_stream(ws)
        finally:
            self._open.discard(ws)

    async def _serve_stream(self, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        first = await ws.receive()
        if first.type is not WSMsgType.TEXT or json.loads(first.data).get("token") != self.api_key:
            await ws.close(code=4401)
            return ws
        await ws.send_json({"type": "auth_ok"})
        second = await ws.receive()
        if second.type is not WSMsgType.TEXT:  # the client went away before subscribing
            return ws
        subscribe = json.loads(second.data)
        await ws.send_json({"type": "subscribed", "topics": subscribe["topics"]})
        self.sockets.append(ws)
        self.subscribed.set()
        try:
            async for _message in ws:
                pass
        finally:
            self.sockets.remove(ws)
            if not self.sockets:
                self.subscribed.clear()
        return ws


@pytest.fixture(autouse=True)
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """The integration depends on the recorder: give it the in-memory test recorder."""


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture(autouse=True)
async def _recorder(recorder_mock: Any) -> AsyncGenerator[None]:
    yield


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> Generator[None]:
    """Reconnect the stream at once in tests (the backoff's growth is tested on its own)."""
    from custom_components.aetherlens import stream

    monkeypatch.setattr(stream, "BACKOFF_INITIAL_SECONDS", 0.01)
    monkeypatch.setattr(stream, "BACKOFF_MAX_SECONDS", 0.05)
    yield


@pytest.fixture
async def core(socket_enabled: None) -> AsyncGenerator[CoreServer]:
    """The loopback core, running."""
    server = CoreServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def entry(hass: HomeAssistant, core: CoreServer) -> AsyncGenerator[MockConfigEntry]:
    """A config entry for the loopback core (not set up yet)."""
    config_entry = MockConfigEntry(
        domain=DOMAIN,
        title="AetherLens",
        unique_id=INSTANCE_ID,
        data={CONF_URL: core.url, CONF_API_KEY: core.api_key},
    )
    config_entry.add_to_hass(hass)
    yield config_entry
    # Unloaded before the core goes away: no stream task or timer outlives the test.
    if config_entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()


@pytest.fixture
async def loaded(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """The entry, set up against the loopback core."""
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for a condition with a deadline (the event loop keeps running meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stream_connected(entry: MockConfigEntry) -> None:
    await wait_until(lambda: entry.runtime_data.stream.connected, "the stream to connect")
