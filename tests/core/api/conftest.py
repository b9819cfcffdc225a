"""API fixtures: a migrated database per test (cloned from a template migrated once per session), an
app built by ``create_app`` on a real pool, and an aiohttp test client with helpers for credentials.

Data-route tests use the same ``make_api`` factory: ``api = await make_api(); await api.key(["read"])``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aetherlens.api.app import create_app
from aetherlens.api.context import ApiContext, StaticCapabilities
from aetherlens.api.routing import RouteTable
from aetherlens.api.security import AUTH_SERVICE_KEY
from aetherlens.api.server import ApiRunner
from aetherlens.auth.service import AuthService, ensure_admin
from aetherlens.collect import Collector
from aetherlens.config import Settings, WriterSettings
from aetherlens.db.pool import create_pool
from aetherlens.db.writer import Writer

ADMIN_PASSWORD = "admin-password-123"
USER_PASSWORD = "user-password-1234"


class ApiTestServer(TestServer):
    """aiohttp's test server on the core's own runner (so tests see what `serve` answers)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return ApiRunner(self.app, **kwargs)


@pytest.fixture
async def api_dsn(migrated_database: Callable[[], Awaitable[str]]) -> str:
    """A fresh copy of the session's migrated template (tests/core/conftest.py)."""
    return await migrated_database()


@dataclass
class Api:
    client: TestClient[Any, Any]
    ctx: ApiContext
    settings: Settings
    pool: asyncpg.Pool
    dsn: str
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.client.app

    @property
    def auth(self) -> AuthService:
        return self.client.app[AUTH_SERVICE_KEY]  # type: ignore[index]

    async def login(self, name: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/auth/login", json={"username": name, "password": password})
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def token(self, role: str = "admin") -> str:
        """An access token of a user with ``role`` (created on first use)."""
        if role not in self._tokens:
            if role == "admin":
                tokens = await self.login()
            else:
                name = f"{role}-user"
                await self.auth.create_user(name, role, USER_PASSWORD)
                tokens = await self.login(name, USER_PASSWORD)
            self._tokens[role] = tokens["access_token"]
        return self._tokens[role]

    async def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(role)}"}

    async def key(self, scopes: list[str], name: str = "test key") -> str:
        return (await self.auth.create_key(name, scopes)).key


MakeApi = Callable[..., Awaitable[Api]]


def api_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "auth": {"admin_password": ADMIN_PASSWORD}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


@pytest.fixture
async def make_api(api_dsn: str, tmp_path: Path) -> AsyncIterator[MakeApi]:
    """``await make_api(settings_overrides..., ctx=dict(collector=...), extra_routes=[table])``."""
    clients: list[TestClient[Any, Any]] = []
    pools: list[asyncpg.Pool] = []

    async def make(
        *, ctx: dict[str, Any] | None = None, extra_routes: tuple[RouteTable, ...] = (), **overrides: Any
    ) -> Api:
        settings = api_settings(tmp_path / "data", **overrides)
        pool = await create_pool(api_dsn, settings)
        pools.append(pool)
        await ensure_admin(pool, settings)
        context = ApiContext(
            settings=settings,
            pool=pool,
            capabilities=StaticCapabilities({"timescaledb": False, "timescaledb_tsl": False}),
            instance_id="test-instance",
            version="0.1.0-test",
            **(ctx or {}),
        )
        client: TestClient[Any, Any] = TestClient(
            ApiTestServer(create_app(context, extra_routes=extra_routes))
        )
        await client.start_server()
        clients.append(client)
        return Api(client=client, ctx=context, settings=settings, pool=pool, dsn=api_dsn)

    yield make
    for client in clients:
        await client.close()
    for pool in pools:
        await pool.close()


@asynccontextmanager
async def running_collector(
    dsn: str, tmp: Path, *, auto_register: bool = True, **writer: Any
) -> AsyncIterator[tuple[Collector, Writer]]:
    """The real ingest path (Collector + Writer on their own pool), for routes that ingest."""
    settings: Settings = api_settings(tmp / "data", collector={"auto_register_devices": auto_register})
    pool = await create_pool(dsn, settings, min_size=1, max_size=2)
    w = Writer(pool, WriterSettings(**({"flush_interval": 0.05} | writer)), tmp / "spool")
    await w.start()
    collector = Collector(w, pool, settings)
    await collector.start()
    try:
        yield collector, w
    finally:
        await w.close()
        await pool.close()
