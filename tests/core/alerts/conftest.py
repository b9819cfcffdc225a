"""Alert-engine fixtures: a migrated database, the real collector and writer, a real stream hub, an
engine on an injectable clock, and a loopback webhook receiver (aiohttp) that can start late.

The API fixtures (``make_api``) are re-exported from tests/core/api/conftest.py for the stream tests.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from api.conftest import api_dsn, api_settings, make_api, running_collector  # noqa: F401 (fixtures)
from dbtest import wait_until

from aetherlens.alerts.engine import AlertEngine
from aetherlens.alerts.webhooks import WebhookOptions
from aetherlens.api.stream import StreamHub
from aetherlens.collect import Collector
from aetherlens.config import Settings
from aetherlens.db.pool import create_pool
from aetherlens.db.queries import alerts as q
from aetherlens.db.queries.devices import create_device
from aetherlens.db.writer import Writer
from aetherlens.models import METRIC_TYPES, Metric
from aetherlens.runtime import cost_source


def _recent_monday() -> dt.datetime:
    # Recent enough for the rollup and cost jobs (raw retention) and at least a week in the past, as the
    # collector refuses readings from the future.
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=14)
    day -= dt.timedelta(days=day.weekday())
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


T0 = _recent_monday()


class Clock:
    """The engine's clock, moved by the test (no sleeping)."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@dataclass
class Env:
    dsn: str
    pool: asyncpg.Pool
    settings: Settings
    collector: Collector
    writer: Writer
    clock: Clock
    hub: StreamHub
    published: list[dict[str, Any]] = field(default_factory=list)
    engines: list[AlertEngine] = field(default_factory=list)
    submitted: int = 0

    async def engine(self, *, schedule: bool = False, webhooks: bool = False, **options: Any) -> AlertEngine:
        """A started engine (the runtime's wiring: writer listener, stream publish, cost source)."""

        def publish(data: dict[str, Any]) -> None:
            self.published.append(data)
            self.hub.publish("alerts", data)

        engine = AlertEngine(
            self.pool,
            self.settings,
            publish=publish,
            clock=self.clock,
            costs=cost_source(self.settings),
            webhooks=WebhookOptions(
                **(
                    {"timeout": 2.0, "backoff_initial": 10.0, "backoff_max": 60.0, "poll_interval": 0.2}
                    | options
                )
            ),
        )
        await engine.start(schedule=schedule, webhooks=webhooks)
        self.writer.add_listener(engine.on_written)
        self.engines.append(engine)
        return engine

    async def stop(self, engine: AlertEngine) -> None:
        self.writer.remove_listener(engine.on_written)
        await engine.stop()
        self.engines.remove(engine)

    async def ingest(
        self, rows: Sequence[tuple[dt.datetime, str, str, float]], engine: AlertEngine | None = None
    ) -> None:
        """Through the real collector and writer; waits until ``engine`` evaluated the committed rows."""
        result = await self.collector.submit(
            [Metric(t, d, m, v, METRIC_TYPES[m].unit) for t, d, m, v in rows]
        )
        assert result.accepted == len(rows), result
        self.submitted += len(rows)
        if engine is not None:
            target = engine.rows_seen + len(rows)
            await wait_until(lambda: engine.rows_seen >= target, what="the engine evaluated the batch")

    async def rule(self, **fields: Any) -> q.AlertRule:
        return await q.create_alert(self.pool, q.AlertFields(**({"name": "rule"} | fields)))

    async def device(self, device_id: str) -> None:
        await create_device(self.pool, device_id=device_id, name=device_id)

    def states(self) -> list[str]:
        return [d["state"] for d in self.published]


@pytest.fixture
async def env(migrated_database: Callable[[], Any], tmp_path: Path) -> AsyncIterator[Env]:
    dsn = await migrated_database()
    settings = api_settings(tmp_path / "data", site={"timezone": "UTC", "currency": "USD"})
    pool = await create_pool(dsn, settings, min_size=1, max_size=6)
    async with running_collector(dsn, tmp_path) as (collector, writer):
        e = Env(dsn, pool, settings, collector, writer, Clock(), StreamHub())
        yield e
        for engine in list(e.engines):
            await e.stop(engine)
    await pool.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A webhook endpoint on loopback that records every body (and can answer errors, or not run)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []
        self.delivery_ids: list[str] = []
        self.fail_with: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=s3cret"

    async def _hook(self, request: web.Request) -> web.Response:
        if self.fail_with is not None:
            return web.Response(status=self.fail_with)
        self.bodies.append(await request.json())
        self.delivery_ids.append(request.headers["X-AetherLens-Delivery"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def states(self) -> list[str]:
        return [b["data"]["state"] for b in self.bodies]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()
