"""Serving the app: the aiohttp runner and TCP site, so the runtime starts and stops the API without
importing ``aiohttp.web`` itself (HTTP lives in ``aetherlens.api`` only; an import-linter contract)."""

from __future__ import annotations

from aiohttp import web

from aetherlens.api.app import create_app
from aetherlens.api.context import ApiContext


class ApiServer:
    def __init__(self, ctx: ApiContext) -> None:
        self.app = create_app(ctx)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = any free port); returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here (port 0 = any free port)
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
