"""A loopback HTTPS server speaking Entra ID's token endpoint and Cost Management's Query/Forecast API.

Answers are built from Microsoft's documented examples (see fixtures/README.md): the example's body
skeleton, its row amounts, resource groups and currency, laid out over the days the request asks for
and in the columns the request's aggregation and grouping call for, as the service does. Everything
it is sent is recorded with the server's monotonic clock, so tests can see what the plugin asked for
and when.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FIXTURES = Path(__file__).parent / "fixtures"
SERVICES = ["Storage", "Virtual Machines"]
METERS = ["Storage", "Virtual Machines"]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aetherlens test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


@dataclass
class Seen:
    """One Cost Management request as the server received it."""

    kind: str  # query | forecast
    subscription: str
    params: dict[str, str]
    body: dict[str, Any]
    authorization: str | None
    at: float  # server's time.monotonic() on arrival


@dataclass
class Throttle:
    headers: dict[str, str]
    sent_at: float | None = None


@dataclass
class AzureServer:
    folder: Path
    #: subscription id -> the currency its answers carry
    subscriptions: dict[str, str] = field(default_factory=dict)
    token_mode: str = "ok"  # ok | expired
    page_size: int | None = None
    empty: bool = False
    seen: list[Seen] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    throttles: list[Throttle] = field(default_factory=list)  # answered, first to last, before any data
    throttled: list[Throttle] = field(default_factory=list)
    #: subscriptions whose requests hang until ``release`` is set (a dead or stuck service)
    hanging: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.ca_file, cert, key = make_tls(self.folder)
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(cert, key)
        self.app = web.Application()
        self.app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        self.app.router.add_post("/subscriptions/{sub}/providers/Microsoft.CostManagement/query", self.query)
        self.app.router.add_post(
            "/subscriptions/{sub}/providers/Microsoft.CostManagement/forecast", self.forecast
        )
        self.app.router.add_route("*", "/{tail:.*}", self.other)
        self.runner = web.AppRunner(self.app)
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.release.set()
        await self.runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- Entra ID ----------------------------------------------------------------------------------
    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append(
            {k: str(v) for k, v in form.items()} | {"tenant": request.match_info["tenant"]}
        )
        if self.token_mode == "expired":
            return web.json_response(load("token_error_expired_secret.json"), status=401)
        return web.json_response(load("token_success.json"))

    async def other(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.path_qs}")
        return web.json_response({"error": {"code": "NotFound", "message": "no such route"}}, status=404)

    # -- Cost Management ---------------------------------------------------------------------------
    async def _seen(self, kind: str, request: web.Request) -> tuple[Seen, web.Response | None]:
        body = await request.json()
        sub = request.match_info["sub"].lower()
        seen = Seen(
            kind, sub, dict(request.query), body, request.headers.get("Authorization"), time.monotonic()
        )
        self.seen.append(seen)
        if sub in self.hanging:
            await self.release.wait()
        if sub not in self.subscriptions:
            return seen, web.json_response(load("error_subscription_not_found.json") | {}, status=404)
        if self.throttles:
            throttle = self.throttles.pop(0)
            throttle.sent_at = time.monotonic()
            self.throttled.append(throttle)
            return seen, web.json_response(
                load("error_too_many_requests.json"), status=429, headers=throttle.headers
            )
        return seen, None

    def _page(
        self,
        skeleton: dict[str, Any],
        seen: Seen,
        columns: list[dict[str, str]],
        rows: list[list[Any]],
        path: str,
    ) -> web.Response:
        body = copy.deepcopy(skeleton)
        body["id"] = (
            f"subscriptions/{seen.subscription}/providers/Microsoft.CostManagement/{path}/{body['name']}"
        )
        start = int(base64.b64decode(seen.params["$skiptoken"])) if "$skiptoken" in seen.params else 0
        end = len(rows) if self.page_size is None else start + self.page_size
        link = None
        if end < len(rows):
            token = quote(base64.b64encode(str(end).encode()).decode())
            link = (
                f"{self.base_url}/subscriptions/{seen.subscription}/providers/Microsoft.CostManagement/"
                f"{path}?api-version={seen.params.get('api-version')}&$skiptoken={token}"
            )
        body["properties"] = {"nextLink": link, "columns": columns, "rows": rows[start:end]}
        return web.json_response(body)

    async def query(self, request: web.Request) -> web.Response:
        seen, refusal = await self._seen("query", request)
        if refusal is not None:
            return refusal
        example = load("SubscriptionQuery.json")["responses"]["200"]["body"]
        template = example["properties"]["rows"]  # [cost, resource group, UsageDate, currency]
        dataset = seen.body["dataset"]
        cost_name = dataset["aggregation"]["totalCost"]["name"]
        groups = [g["name"] for g in dataset.get("grouping", [])]
        columns = [{"name": cost_name, "type": "Number"}]
        columns += [{"name": g, "type": "String"} for g in groups]
        columns += [{"name": "UsageDate", "type": "Number"}, {"name": "Currency", "type": "String"}]
        rows: list[list[Any]] = []
        if not self.empty:
            for day in days(seen.body["timePeriod"]):
                for i, (amount, group, _, _) in enumerate(template):
                    values = {
                        "ResourceGroup": group,
                        "ServiceName": SERVICES[i % 2],
                        "MeterCategory": METERS[i % 2],
                    }
                    rows.append(
                        [
                            amount,
                            *(values[g] for g in groups),
                            int(day.strftime("%Y%m%d")),
                            self.subscriptions[seen.subscription],
                        ]
                    )
        return self._page(example, seen, columns, rows, "query")

    async def forecast(self, request: web.Request) -> web.Response:
        seen, refusal = await self._seen("forecast", request)
        if refusal is not None:
            return refusal
        example = load("EnrollmentAccountForecast.json")["responses"]["200"]["body"]
        template = example["properties"]["rows"]  # [cost, UsageDate, CostStatus, currency]
        cost_name = seen.body["dataset"]["aggregation"]["totalCost"]["name"]
        columns = [{"name": cost_name, "type": "Number"}, *example["properties"]["columns"][1:]]
        rows: list[list[Any]] = []
        if not self.empty:
            for i, day in enumerate(days(seen.body["timePeriod"])):
                amount, _, status, _ = template[i % len(template)]
                rows.append(
                    [amount, int(day.strftime("%Y%m%d")), status, self.subscriptions[seen.subscription]]
                )
        return self._page(example, seen, columns, rows, "forecast")


def days(period: dict[str, str]) -> list[dt.date]:
    first = dt.datetime.fromisoformat(period["from"]).date()
    last = dt.datetime.fromisoformat(period["to"]).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass
class AppServiceIdentity:
    """App Service's managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER, api-version
    2019-08-01), plain HTTP on loopback as App Service serves it to its app."""

    header: str = "identity-header-for-tests"
    token: str = "managed-identity-access-token"
    seen: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/msi/token", self.issue)
        self.runner = web.AppRunner(self.app)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"

    async def issue(self, request: web.Request) -> web.Response:
        self.seen.append(
            dict(request.query) | {"x-identity-header": request.headers.get("X-IDENTITY-HEADER", "")}
        )
        if request.headers.get("X-IDENTITY-HEADER") != self.header:
            return web.json_response({"error": "forbidden"}, status=401)
        body = load("app_service_identity_token.json") | {
            "access_token": self.token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": request.query.get("resource", ""),
        }
        return web.json_response(body)
