"""Exception type -> HTTP status is decided in one table (api/errors.py), not carried by the exceptions;
each error keeps the status it had when the status lived on the class."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import aetherlens
from aetherlens.api.errors import STATUS_BY_ERROR, RateLimitedError, status_for
from aetherlens.api.routes.devices import NotControllableError
from aetherlens.api.routing import Call, RouteTable
from aetherlens.auth.errors import InvalidTokenError
from aetherlens.db.spool import SpoolError, SpoolFullError
from aetherlens.errors import (
    AetherLensError,
    AuthenticationError,
    BackpressureError,
    CapabilityChangedError,
    ConfigError,
    ConflictError,
    DatabaseError,
    ManagedDatabaseError,
    MigrationError,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    TariffError,
    ValidationError,
)
from aetherlens.plugins.runner import PluginUnavailable

from .conftest import MakeApi

# The statuses each class carried in `http_status` before the table existed.
EXPECTED: dict[type[AetherLensError], int] = {
    AetherLensError: 500,
    ConfigError: 400,
    DatabaseError: 503,
    ManagedDatabaseError: 503,
    MigrationError: 503,
    CapabilityChangedError: 503,
    ValidationError: 400,
    TariffError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    NotControllableError: 409,
    AuthenticationError: 401,
    InvalidTokenError: 401,
    PermissionDeniedError: 403,
    BackpressureError: 503,
    PluginError: 400,
    PluginUnavailable: 503,
    SpoolError: 500,
    SpoolFullError: 503,
    RateLimitedError: 429,
}


def _make(cls: type[AetherLensError]) -> AetherLensError:
    if cls is BackpressureError:
        return BackpressureError("full", retry_after=2.0)
    if cls is RateLimitedError:
        return RateLimitedError("slow down", retry_after=3.0)
    return cls("it went wrong")


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_each_error_keeps_its_status(cls: type[AetherLensError]) -> None:
    assert status_for(_make(cls)) == EXPECTED[cls]


def test_no_exception_carries_an_http_status() -> None:
    for info in pkgutil.walk_packages(aetherlens.__path__, "aetherlens."):
        if ".builtin." in info.name or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    pending: list[type[BaseException]] = [AetherLensError]
    seen: list[type[BaseException]] = []
    while pending:
        cls = pending.pop()
        seen.append(cls)
        pending.extend(cls.__subclasses__())
    carriers = [c.__qualname__ for c in seen if "http_status" in vars(c)]
    assert carriers == [], f"statuses belong in api/errors.py STATUS_BY_ERROR: {carriers}"
    assert set(STATUS_BY_ERROR) <= set(seen)


raising = RouteTable()


@raising.route("GET", "/api/v1/_raise/{name}", scope=None, summary="raises the named error")
async def raise_named(call: Call[None, None]) -> None:
    raise _make(next(c for c in EXPECTED if c.__name__ == call.path["name"]))


async def test_statuses_over_http(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(raising,))
    for cls, status in EXPECTED.items():
        resp = await api.client.get(f"/api/v1/_raise/{cls.__name__}")
        assert resp.status == status, cls.__name__
        body = await resp.json()
        assert body["error"]["code"] == cls.code, cls.__name__
    resp = await api.client.get("/api/v1/_raise/InvalidTokenError")
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    resp = await api.client.get("/api/v1/_raise/BackpressureError")
    assert resp.headers["Retry-After"] == "2"
