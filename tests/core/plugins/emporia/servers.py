"""The two clouds pyemvue talks to, on 127.0.0.1 (ephemeral ports), each keeping a log of its requests.

- ``Cognito``: moto's Cognito user pool service (moto's own WSGI app on werkzeug, as its
  ThreadedMotoServer serves it, with a request log in front), with a user pool, an app client allowing
  USER_SRP_AUTH and REFRESH_TOKEN_AUTH, and one confirmed user, made through boto3.
- ``EmporiaApi``: an aiohttp server speaking Emporia's cloud API (``/customers``, ``/customers/devices``,
  ``/AppAPI?apiMethod=getDeviceListUsages``) with the recorded answers in ``fixtures/``. Like the real
  API it wants the Cognito id token in the ``authtoken`` header (checked against the pool's keys) and
  answers a usage request for the ``instant`` it was asked.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import requests
from aiohttp import web
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

FIXTURES = Path(__file__).parent / "fixtures"
USERNAME = "you@email.com"  # the customer of the recorded answers
PASSWORD = "correct-horse-Battery-9"
REGION = "us-east-2"  # Emporia's pool lives there; pyemvue names the region itself


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Cognito:
    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []  # {"target", "flow"} per request
        app = DomainDispatcherApplication(create_backend_app)

        def logged(environ: dict[str, Any], start_response: Any) -> Any:
            target = str(environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", ""))
            flow = None
            if target.endswith(".InitiateAuth"):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = _Body(body)
                flow = json.loads(body).get("AuthFlow")
            self.log.append({"target": target.rsplit(".", 1)[-1], "flow": flow, "at": time.monotonic()})
            return app(environ, start_response)

        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, logged, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        idp = boto3.client(
            "cognito-idp",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.idp = idp
        self.pool_id = idp.create_user_pool(PoolName="emporia")["UserPool"]["Id"]
        self.client_id = idp.create_user_pool_client(
            UserPoolId=self.pool_id,
            ClientName="emporia-app",
            ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        idp.admin_create_user(
            UserPoolId=self.pool_id,
            Username=USERNAME,
            UserAttributes=[
                {"Name": "email", "Value": USERNAME},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
        idp.admin_set_user_password(
            UserPoolId=self.pool_id, Username=USERNAME, Password=PASSWORD, Permanent=True
        )
        self.jwks = requests.get(f"{self.url}/{self.pool_id}/.well-known/jwks.json", timeout=5).json()
        self.log.clear()

    def logins(self, flow: str) -> int:
        """InitiateAuth requests of one flow (USER_SRP_AUTH = a password sign-in)."""
        return sum(1 for entry in self.log if entry["flow"] == flow)

    def refuse_user(self) -> None:
        """Make Cognito refuse the account (NotAuthorizedException, as for a wrong password: moto cannot
        check an SRP password proof, so it refuses a disabled user the way Cognito refuses a bad one)."""
        self.idp.admin_disable_user(UserPoolId=self.pool_id, Username=USERNAME)

    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return chunk


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # None: the recorded answer
    hold: asyncio.Event | None = None  # answer only once this is set (a hanging API)


class EmporiaApi:
    def __init__(self, cognito: Cognito) -> None:
        self.cognito = cognito
        self.log: list[dict[str, Any]] = []  # {"path", "query", "at", "status"}
        self.usage_answers: deque[Answer] = deque()  # scripted answers, then the recorded one
        self.usage = fixture("usage_1min.json")
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> EmporiaApi:
        app = web.Application()
        app.router.add_get("/customers", self._customers)
        app.router.add_get("/customers/devices", self._devices)
        app.router.add_get("/AppAPI", self._app_api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def usage_requests(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log if entry["path"] == "/AppAPI"]

    def _authorised(self, request: web.Request) -> bool:
        token = request.headers.get("authtoken", "")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next(k for k in self.cognito.jwks["keys"] if k.get("kid") == kid)
            jwt.decode(
                token,
                jwt.PyJWK(key).key,
                algorithms=["RS256"],
                audience=self.cognito.client_id,
                issuer=self.cognito.issuer(),
            )
        except (jwt.PyJWTError, StopIteration):
            return False
        return True

    def _record(self, request: web.Request, status: int) -> None:
        self.log.append(
            {"path": request.path, "query": dict(request.query), "at": time.monotonic(), "status": status}
        )

    async def _customers(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self._record(request, 401)
            return web.json_response({"message": "Unauthorized"}, status=401)
        self._record(request, 200)
        return web.json_response(fixture("customer.json"))

    async def _devices(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self._record(request, 401)
            return web.json_response({"message": "Unauthorized"}, status=401)
        self._record(request, 200)
        return web.json_response(fixture("devices.json"))

    async def _app_api(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self._record(request, 401)
            return web.json_response({"message": "Unauthorized"}, status=401)
        query = request.query
        if (
            query.get("apiMethod") != "getDeviceListUsages"
            or query.get("scale") != "1MIN"
            or query.get("energyUnit") != "KilowattHours"
            or not query.get("instant")
        ):
            self._record(request, 400)
            return web.json_response({"message": "unexpected request"}, status=400)
        answer = self.usage_answers.popleft() if self.usage_answers else Answer()
        self._record(request, answer.status)
        if answer.hold is not None:
            await answer.hold.wait()
        if answer.body is not None or answer.status != 200:
            return web.Response(
                status=answer.status,
                text=answer.body or "",
                headers=answer.headers,
                content_type="application/json",
            )
        # "+" joins the gids in the query; a form-decoded query turns it into a space.
        wanted = {int(g) for g in query["deviceGids"].replace("+", " ").split()}
        body = copy.deepcopy(self.usage)
        body["deviceListUsages"]["instant"] = query["instant"]
        body["deviceListUsages"]["devices"] = [
            d for d in body["deviceListUsages"]["devices"] if d["deviceGid"] in wanted
        ]
        return web.json_response(body)
