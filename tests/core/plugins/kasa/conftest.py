"""Kasa test fixtures: loopback devices replaying python-kasa's recorded dumps (xorserver.py), and the
API fixtures of tests/core/api on the same database as the plugin tests' core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from api.conftest import make_api  # noqa: F401 - re-exported fixture: the HTTP API on a real database

from .xorserver import FixtureDevice, XorServer

HS110 = "HS110(EU)_1.0_1.2.5"  # older firmware: power/voltage/current/total in W, V, A, kWh
KP115 = "KP115(EU)_1.0_1.0.16"  # newer firmware: power_mw, voltage_mv, current_ma, total_wh
KP125 = "KP125(US)_1.0_1.0.6"  # newer firmware; its dump's MAC is masked to zeros
HS300 = "HS300(US)_2.0_1.0.12"  # six metered outlets
KP303 = "KP303(US)_2.0_1.0.9"  # three outlets, no metering

StartDevice = Callable[..., Awaitable[XorServer]]


@pytest.fixture
async def kasa_device() -> AsyncIterator[StartDevice]:
    """``server = await kasa_device(HS110, mode="ok"|"hang"|"malformed")``: a device on 127.0.0.1:<port>."""
    servers: list[XorServer] = []

    async def start(fixture: str, mode: str = "ok") -> XorServer:
        server = await XorServer(FixtureDevice.from_fixture(fixture, mode)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def api_dsn(ingest_dsn: str) -> str:
    """The API reads the database the core fixture writes to (tests/core/api/conftest.py asks this)."""
    return ingest_dsn
