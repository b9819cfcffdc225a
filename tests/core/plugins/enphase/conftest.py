"""Loopback Envoys for the enphase tests: a firmware 7 one with CTs (HTTPS, bearer token) and an older
one (plain HTTP, digest), both answering from pyenphase's recorded dumps (fixtures/README.md)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from envoy_utils.envoy_utils import EnvoyUtils

from .envoy_server import FIXTURES, EnvoyServer
from .tls import self_signed_context

FW7 = "7.6.175_with_cts"  # metered Envoy, production and net-consumption CTs, 7 inverters
FW5 = "5.0.62"  # Envoy without CTs, 40 inverters, HTTP digest for the inverter list
FW7_SERIAL = "122238082763"
FW5_SERIAL = "121621012167"


# The local users of an Envoy before firmware 7: ``envoy`` with the serial's last six digits, and
# ``installer`` with the password Enphase derives from the serial (the algorithm envoy_utils implements,
# which pyenphase uses when no username is given).
LEGACY_USERS = {
    "envoy": FW5_SERIAL[-6:],
    "installer": EnvoyUtils.get_password(FW5_SERIAL, "installer"),
}


def make_token(serial: str, *, expires_in: float) -> str:
    """A token shaped like Enphase's (ES256-signed JWT with the Envoy serial and ``exp``); the loopback
    Envoy accepts exactly the one it was given, as a real Envoy accepts the ones Enphase signed."""
    claims = {"aud": serial, "iss": "Entrez", "enphaseUser": "owner", "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, "a-key-that-is-not-enphases-own-signing-key", algorithm="HS256")


def recorded(firmware: str, name: str) -> Any:
    return json.loads((FIXTURES / firmware / name).read_text())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    return self_signed_context()


def fresh_shift(firmware: str) -> int:
    """Seconds that move the dump's newest inverter report to a minute ago."""
    newest = max(i["lastReportDate"] for i in recorded(firmware, "api_v1_production_inverters"))
    return int(time.time()) - 60 - newest


EnvoyFactory = Callable[..., Any]


@pytest.fixture
async def envoys(tls: ssl.SSLContext) -> AsyncIterator[EnvoyFactory]:
    started: list[EnvoyServer] = []

    async def make(firmware: str, **kwargs: Any) -> EnvoyServer:
        if firmware.startswith("7"):
            kwargs.setdefault("tls", tls)
            kwargs.setdefault("token", make_token(FW7_SERIAL, expires_in=3600))
        else:
            kwargs.setdefault("digest", LEGACY_USERS)
        server = await EnvoyServer(firmware, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()


HERE = Path(__file__).parent
