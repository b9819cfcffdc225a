"""The runner that serves the app: aiohttp's, except for requests too malformed to reach the app.

An over-long URL or header, or a malformed request line, fails in aiohttp's HTTP parser, before any
middleware runs, and aiohttp answers with a plain-text 400 and logs an ERROR with a traceback for each
one, so any anonymous client could fill the log. Here such a request gets the contract's envelope
(``{"error": {"code", "message"}}``) and one WARNING line without a traceback, at most
``LOG_BURST`` per ``LOG_PER_SECONDS`` across the server (the lines after that are counted, and the next
line that is written says how many were suppressed).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from aetherlens.api.app import create_app
from aetherlens.api.context import ApiContext
from aetherlens.api.errors import HTTP_CODES, error_response
from aetherlens.api.ratelimit import Limit, RateLimiter

log = logging.getLogger("aetherlens.api")

LOG_BURST: Final = 10
LOG_PER_SECONDS: Final = 60.0
_MAX_DETAIL: Final = 200  # characters of the parser's message (it may quote what the client sent)


class _MalformedLog:
    """Rate-limited warnings about malformed requests (one per server)."""

    def __init__(self) -> None:
        self._limiter = RateLimiter([Limit(LOG_BURST, LOG_PER_SECONDS)])
        self._suppressed = 0

    def warn(self, remote: str | None, status: int, detail: str) -> None:
        if self._limiter.hit("malformed") > 0:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        log.warning(
            "malformed HTTP request from %s answered %d: %s%s",
            remote or "unknown",
            status,
            detail,
            f" ({suppressed} similar suppressed)" if suppressed else "",
        )


class _EnvelopeRequestHandler(RequestHandler):
    __slots__ = ()  # same layout as RequestHandler, so an instance can be switched to this class
    malformed_log: _MalformedLog  # set on the per-server subclass (see ApiRunner)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer is under way: nothing else can be sent
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, HttpProcessingError):
            detail = (exc.message or message or "bad request").replace("\n", " ")[:_MAX_DETAIL]
            self.malformed_log.warn(request.remote, status, detail)
            response = error_response(
                status, HTTP_CODES.get(status, "bad_request"), f"malformed HTTP request: {detail}"
            )
        else:
            # Raised outside the error middleware: a bug, so the traceback is logged (as aiohttp does).
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            response = error_response(500, "internal_error", "internal error")
        response.force_close()  # the parser's state is unknown after such a request
        return response


class _EnvelopeServer(Server):
    handler_class: type[_EnvelopeRequestHandler]

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = self.handler_class  # aiohttp offers no hook for its error answers
        return handler


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed requests with the error envelope."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer  # Server has no slots: only the methods change
        assert isinstance(server, _EnvelopeServer)
        # One rate-limited log per server, carried by a handler class of its own.
        server.handler_class = type(
            "EnvelopeRequestHandler",
            (_EnvelopeRequestHandler,),
            {"__slots__": (), "malformed_log": _MalformedLog()},
        )
        return server


class ApiServer:
    """The app behind an ``ApiRunner`` on a TCP site, so the runtime starts and stops the API without
    importing ``aiohttp.web`` itself (HTTP lives in ``aetherlens.api`` only; an import-linter contract)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.app = create_app(ctx)
        self._runner: ApiRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = any free port); returns the bound port."""
        self._runner = ApiRunner(self.app, access_log=None, handle_signals=False)
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
