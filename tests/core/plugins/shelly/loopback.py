"""Shelly devices on 127.0.0.1 (one aiohttp server each, port 0) answering from recorded fixtures.

Gen1: ``GET /shelly`` (always open), ``/settings``, ``/status``, ``/relay/N?turn=on|off|toggle``; basic
auth when a password is set (``/shelly`` then says ``"auth": true``, as the real firmware does).
Gen2+: ``GET /shelly`` (device info, open) and the WebSocket ``/rpc`` speaking JSON-RPC frames
(``{"id","src","method","params","auth"}`` → ``{"id","src","dst","result"|"error"}``); with a password,
every method but ``Shelly.GetDeviceInfo`` needs the digest ``auth`` object, else the 401 error frame whose
message is the JSON challenge (shape recorded in aioshelly's tests/rpc_device/fixtures/shellyplus2pm/
Cover.Close_auth_failure); the response hash is Shelly's documented one:
``sha256(ha1:nonce:nc:cnonce:auth:sha256("dummy_method:dummy_uri"))``, ``ha1 = sha256(admin:realm:pw)``.
Switching changes the served status and, on Gen2+, sends ``NotifyStatus`` as the device does.
Clock fields (``unixtime``, ``sys.unixtime``) are the server's clock: a real device's clock runs.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

FIXTURES = Path(__file__).parent / "fixtures"
HA2 = hashlib.sha256(b"dummy_method:dummy_uri").hexdigest()


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class LoopbackShelly:
    """One device. ``mode``: "ok", "malformed" (Gen1: a /status that is not JSON; Gen2+: a status
    whose ``switch:0.apower`` is not a number) or "html" (Gen1: a /status that is a web page)."""

    def __init__(self, name: str, *, password: str | None = None, mode: str = "ok") -> None:
        data = fixture(name)
        self.shelly: dict[str, Any] = data["shelly"]
        self.settings: dict[str, Any] = data.get("settings") or {}
        self.config: dict[str, Any] = data.get("config") or {}
        self.status: dict[str, Any] = data["status"]
        self.recorded: dict[str, Any] = copy.deepcopy(self.status)
        self.gen = int(self.shelly.get("gen", 1))
        self.password = password
        self.mode = mode
        self.requests: list[str] = []
        self.sockets: list[tuple[web.WebSocketResponse, str | None]] = []
        self.nonce = int(time.time())
        if self.gen == 1:
            self.shelly["auth"] = password is not None
        else:
            self.shelly["auth_en"] = password is not None
            self.shelly["auth_domain"] = self.shelly["id"] if password else None
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def device_id(self) -> str:
        return str(self.shelly.get("id") or "shelly")

    async def start(self) -> LoopbackShelly:
        app = web.Application()
        app.router.add_get("/shelly", self._shelly)
        if self.gen == 1:
            app.router.add_get("/settings", self._gen1("settings"))
            app.router.add_get("/status", self._gen1("status"))
            app.router.add_get("/relay/{channel}", self._relay)
        else:
            app.router.add_get("/rpc", self._ws)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for ws, _ in list(self.sockets):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def _tick(self) -> None:
        if self.gen == 1:
            self.status["unixtime"] = int(time.time())
        elif isinstance(self.status.get("sys"), dict):
            self.status["sys"]["unixtime"] = int(time.time())

    # -- Gen1 ------------------------------------------------------------------------------------------------
    async def _shelly(self, request: web.Request) -> web.Response:
        self.requests.append("/shelly")
        return web.json_response(self.shelly)

    def _authorized(self, request: web.Request) -> bool:
        if self.password is None:
            return True
        user = self.settings.get("login", {}).get("username", "admin")
        expected = "Basic " + base64.b64encode(f"{user}:{self.password}".encode()).decode()
        return request.headers.get("Authorization") == expected

    def _gen1(self, what: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self.requests.append(f"/{what}")
            if not self._authorized(request):
                return web.Response(status=401, text="401 Unauthorized")
            if what == "status":
                if self.mode == "malformed":
                    return web.Response(text='{"meters": [{"power": 1', content_type="application/json")
                if self.mode == "html":  # something else answers on that address (a router's page)
                    return web.Response(text="<html><body>Login</body></html>", content_type="text/html")
                self._tick()
                return web.json_response(self.status)
            return web.json_response(self.settings)

        return handler

    async def _relay(self, request: web.Request) -> web.Response:
        channel = int(request.match_info["channel"])
        self.requests.append(f"/relay/{channel}?turn={request.query.get('turn')}")
        if not self._authorized(request):
            return web.Response(status=401, text="401 Unauthorized")
        relay = self.status["relays"][channel]
        turn = request.query.get("turn")
        if turn in ("on", "off"):
            relay["ison"] = turn == "on"
        elif turn == "toggle":
            relay["ison"] = not relay["ison"]
        relay["source"] = "http"
        return web.json_response(relay)

    # -- Gen2+ -------------------------------------------------------------------------------------------
    def _challenge(self) -> dict[str, Any]:
        self.nonce += 1
        return {
            "code": 401,
            "message": json.dumps(
                {
                    "auth_type": "digest",
                    "nonce": self.nonce,
                    "nc": 1,
                    "realm": self.shelly["auth_domain"],
                    "algorithm": "SHA-256",
                }
            ),
        }

    def _digest_ok(self, auth: Any) -> bool:
        if not isinstance(auth, dict) or self.password is None:
            return False
        realm = self.shelly["auth_domain"]
        ha1 = _sha(f"admin:{realm}:{self.password}")
        expected = _sha(f"{ha1}:{auth.get('nonce')}:{auth.get('nc')}:{auth.get('cnonce')}:auth:{HA2}")
        return (
            auth.get("realm") == realm
            and auth.get("nonce") == self.nonce
            and auth.get("response") == expected
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["json-rpc"])
        await ws.prepare(request)
        entry: list[Any] = [ws, None]
        self.sockets.append((ws, None))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                entry[1] = frame.get("src")
                self.sockets[-1] = (ws, entry[1])
                await self._call(ws, frame)
        finally:
            self.sockets = [(s, src) for s, src in self.sockets if s is not ws]
        return ws

    async def _call(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        method, params = frame.get("method"), frame.get("params") or {}
        self.requests.append(str(method))
        reply: dict[str, Any] = {"id": frame.get("id"), "src": self.device_id, "dst": frame.get("src")}
        if (
            self.password is not None
            and method != "Shelly.GetDeviceInfo"
            and not self._digest_ok(frame.get("auth"))
        ):
            await ws.send_json({**reply, "error": self._challenge()})
            return
        notify: dict[str, Any] | None = None
        if method == "Shelly.GetDeviceInfo":
            result: Any = self.shelly
        elif method == "Shelly.GetConfig":
            result = self.config
        elif method == "Shelly.GetStatus":
            self._tick()
            result = self.status
            if self.mode == "malformed":  # well-formed JSON-RPC, but not the documented status shape
                result = {**self.status, "switch:0": {"id": 0, "apower": "n/a", "output": True}}
        elif method == "Shelly.GetComponents":
            result = {"components": [], "cfg_rev": 0, "offset": 0, "total": 0}
        elif method in ("Switch.Set", "Switch.Toggle", "Switch.GetStatus"):
            switch = self.status.get(f"switch:{params.get('id')}")
            if switch is None:
                await ws.send_json(
                    {**reply, "error": {"code": -105, "message": "Argument 'id', value 9 not found!"}}
                )
                return
            if method == "Switch.GetStatus":
                result = switch
            else:
                was_on = switch["output"]
                switch["output"] = bool(params["on"]) if method == "Switch.Set" else not was_on
                switch["source"] = "WS_in"
                result = {"was_on": was_on}
                if switch["output"] != was_on:
                    notify = {
                        f"switch:{params['id']}": {
                            "id": params["id"],
                            "output": switch["output"],
                            "source": "WS_in",
                        }
                    }
        else:
            await ws.send_json(
                {**reply, "error": {"code": -114, "message": f"Method {method} failed: No handler!"}}
            )
            return
        await ws.send_json({**reply, "result": result})
        if notify is not None:
            await self.notify(notify)

    async def notify(self, changes: dict[str, Any], ts: float | None = None) -> float:
        """The device's NotifyStatus: the changed fields of components, merged into its status too.
        Returns the frame's ``ts`` (the device's measurement time)."""
        ts = round(time.time(), 2) if ts is None else ts
        for key, fields in changes.items():
            self.status.setdefault(key, {}).update(fields)
        for ws, src in list(self.sockets):
            frame = {
                "src": self.device_id,
                "dst": src,
                "method": "NotifyStatus",
                "params": {"ts": ts, **changes},
            }
            await ws.send_json(frame)
        return ts


class Hanging:
    """Accepts connections and never answers (a device that hangs)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Hanging:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (an unreachable device)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
