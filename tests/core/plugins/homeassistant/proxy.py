"""A loopback stand-in for the Supervisor's Home Assistant proxy (``http://supervisor/core/...``).

As the Supervisor does (supervisor/api/proxy.py): REST under ``/core/api/`` and the WebSocket at
``/core/websocket``; the add-on authenticates with its ``SUPERVISOR_TOKEN`` (Bearer header for REST, the
WebSocket's ``auth`` message), and the proxy talks to HA with a token of its own. While HA is down
it answers 502 Bad Gateway (REST, and the WebSocket before the upgrade).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web

from .harness import HomeAssistant, free_port


class SupervisorProxy:
    def __init__(self, ha: HomeAssistant, supervisor_token: str) -> None:
        self.ha = ha
        self.supervisor_token = supervisor_token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.bad_gateway = 0
        self.ws_sessions = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def api_url(self) -> str:
        return f"{self.base}/core/api"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/core/websocket"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/core/api/{tail:.*}", self._rest)
        app.router.add_get("/core/websocket", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def _ha_up(self) -> bool:
        try:
            async with self.session.get(f"{self.ha.url}/api/", headers=self.ha.headers) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def _bad_gateway(self) -> web.HTTPBadGateway:
        self.bad_gateway += 1
        return web.HTTPBadGateway()

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.supervisor_token}":
            raise web.HTTPUnauthorized()
        try:
            async with self.session.request(
                request.method,
                f"{self.ha.url}/api/{request.match_info['tail']}",
                params=request.query,
                data=await request.read(),
                headers={"Authorization": f"Bearer {self.ha.token}", "Content-Type": request.content_type},
            ) as upstream:
                body = await upstream.read()
                return web.Response(status=upstream.status, body=body, content_type=upstream.content_type)
        except aiohttp.ClientError:
            raise self._bad_gateway() from None

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not await self._ha_up():
            raise self._bad_gateway()
        server = web.WebSocketResponse(heartbeat=30, max_msg_size=0)
        await server.prepare(request)
        await server.send_json({"type": "auth_required", "ha_version": "proxy"})
        message = await server.receive_json()
        if (message.get("access_token") or message.get("api_password")) != self.supervisor_token:
            await server.send_json({"type": "auth_invalid", "message": "Invalid access"})
            await server.close()
            return server
        try:
            client = await self.session.ws_connect(f"{self.ha.url}/api/websocket", max_msg_size=0)
        except aiohttp.ClientError:
            await server.close()
            return server
        async with client:
            await client.receive_json()  # auth_required
            await client.send_json({"type": "auth", "access_token": self.ha.token})
            answer = await client.receive_json()
            if answer.get("type") != "auth_ok":
                await server.close()
                return server
            await server.send_json(answer)
            self.ws_sessions += 1
            await self._pipe(server, client)
        return server

    async def _pipe(self, server: web.WebSocketResponse, client: aiohttp.ClientWebSocketResponse) -> None:
        async def down() -> None:
            async for msg in client:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await server.send_str(msg.data)

        async def up() -> None:
            async for msg in server:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await client.send_str(msg.data)

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                await task
        await server.close()
