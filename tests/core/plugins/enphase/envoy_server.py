"""A loopback Envoy: the Envoy's local HTTP(S) API, answering from pyenphase's recorded dumps.

Each fixture folder holds one real Envoy's answers as pyenphase's ``devtools/fixture_collector.py``
saved them: ``<path with / as _>`` is the body, ``<name>_log.json`` the status and headers it came with
(``/production.json?details=1`` is ``production.json``). What a real Envoy does around them is played
here too, because the plugin must cope with it:

- firmware 7+ serves HTTPS only (self-signed) and wants ``Authorization: Bearer <token>`` on every path
  but ``/info``; ``/auth/check_jwt`` says whether a token is good (200) or not (401);
- older firmware serves plain HTTP, and the inverter list (``/api/v1/production/inverters``) is
  behind HTTP digest auth (``digest``: user → password, e.g. the ``envoy`` and ``installer`` users),
  the rest open;
- ``hang``: every request waits until the server closes (a wedged Envoy);
- ``malformed``: every JSON answer is cut in half (a broken answer);
- ``time_shift``: seconds added to the recorded reading times (``lastReportDate``, ``readingTime``,
  ``timestamp``), because the core refuses readings older than its raw retention and the dumps are
  from 2023. Nothing else of a recording is changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"
DIGEST_REALM = "enphaseenergy.com"
DIGEST_PROTECTED = frozenset({"/api/v1/production/inverters"})


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # HTTP digest is defined over MD5


TIME_KEYS = frozenset({"lastReportDate", "readingTime", "timestamp"})


def _shifted(value: Any, shift: int) -> Any:
    if isinstance(value, dict):
        return {
            k: v + shift if k in TIME_KEYS and isinstance(v, int) and v > 0 else _shifted(v, shift)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shifted(v, shift) for v in value]
    return value


class EnvoyServer:
    def __init__(
        self,
        firmware: str,
        *,
        token: str | None = None,
        digest: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        time_shift: int = 0,
    ) -> None:
        self.folder = FIXTURES / firmware
        self.token = token
        self.digest = digest
        self.tls = tls
        self.time_shift = time_shift
        self.hang = False
        self.malformed = False
        self.requests: list[str] = []
        self._released = asyncio.Event()
        self._nonce = secrets.token_hex(16)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        """What the plugin's ``host`` is set to: pyenphase builds ``http(s)://<host>/path`` from it."""
        return f"127.0.0.1:{self.port}"

    @property
    def serial(self) -> str:
        match = re.search(r"<sn>(\d+)</sn>", (self.folder / "info").read_text())
        assert match is not None
        return match.group(1)

    async def start(self) -> EnvoyServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.hang:
            await self._released.wait()
            return web.Response(status=503)
        if request.path == "/info":
            return self._recorded("info")
        if self.token is not None:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.Response(status=401, text="<html><body><h2>401 Unauthorized</h2></body></html>")
            if request.path == "/auth/check_jwt":
                return web.Response(text="<!DOCTYPE html><h2>Valid token.</h2>", content_type="text/html")
        if self.digest is not None and request.path in DIGEST_PROTECTED and not self._digest_ok(request):
            return web.Response(
                status=401,
                headers={
                    "WWW-Authenticate": f'Digest realm="{DIGEST_REALM}", qop="auth", nonce="{self._nonce}"'
                },
            )
        return self._recorded(request.path.lstrip("/").replace("/", "_"))

    def _recorded(self, name: str) -> web.Response:
        body_file, log_file = self.folder / name, self.folder / f"{name}_log.json"
        if not body_file.is_file():
            return web.Response(status=404, text='{ "error" : "404 - Not Found" }')
        log = json.loads(log_file.read_text()) if log_file.is_file() else {"code": 200, "headers": {}}
        body = body_file.read_bytes()
        if self.time_shift and body.lstrip()[:1] in (b"{", b"["):
            body = json.dumps(_shifted(json.loads(body), self.time_shift)).encode()
        if self.malformed and name != "info" and body.lstrip()[:1] in (b"{", b"["):
            body = body[: len(body) // 2]
        headers = {}
        if "content-type" in log["headers"]:
            headers["Content-Type"] = log["headers"]["content-type"]
        return web.Response(status=log["code"], body=body, headers=headers)

    def _digest_ok(self, request: web.Request) -> bool:
        """RFC 7616 digest (MD5, qop=auth), the scheme the Envoy's lighttpd asks for."""
        assert self.digest is not None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[len("Digest ") :]))
        user = fields.get("username", "")
        password = self.digest.get(user)
        if password is None or fields.get("nonce") != self._nonce:
            return False
        ha1 = _md5(f"{user}:{DIGEST_REALM}:{password}")
        ha2 = _md5(f"{request.method}:{fields.get('uri', '')}")
        expected = _md5(f"{ha1}:{self._nonce}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))
