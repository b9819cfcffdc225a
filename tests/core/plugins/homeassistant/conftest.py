"""Fixtures: one real Home Assistant per test module, and a core (PostgreSQL, writer, collector, the
real supervisor running the ``homeassistant`` plugin in its own process) per test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aetherlens.collect.collector import Collector
from aetherlens.config import Settings, load_settings
from aetherlens.db.database import Database, open_database
from aetherlens.db.writer import Writer
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.runtime import DeviceDiscovery

from ..conftest import FAST, wait_for  # noqa: TID252 - the plugin tests' supervisor timings
from .harness import HomeAssistant, available


@contextlib.asynccontextmanager
async def running_ha(
    tmp_path_factory: pytest.TempPathFactory, commit_interval: int = 0
) -> AsyncIterator[HomeAssistant]:
    """A real HA process for the length of the block (the test is skipped where HA is not installed)."""
    reason = available()
    if reason:
        pytest.skip(reason)
    instance = HomeAssistant(tmp_path_factory.mktemp("ha-source-hass") / "config", commit_interval)
    await asyncio.to_thread(instance.prepare)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture(scope="module")
async def ha(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HomeAssistant]:
    async with running_ha(tmp_path_factory) as instance:
        yield instance


@dataclass
class Core:
    """A core with the plugin running: query what landed in PostgreSQL, restart the plugin's side."""

    settings: Settings
    database: Database
    writer: Writer
    collector: Collector
    supervisor: Supervisor
    discovery: DeviceDiscovery

    @property
    def pool(self) -> asyncpg.Pool:
        return self.database.pool

    async def rows(
        self, device_id: str | None = None, metric_type: str | None = None
    ) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                """SELECT time, device_id, metric_type, value, unit FROM metrics
                   WHERE ($1::text IS NULL OR device_id = $1) AND ($2::text IS NULL OR metric_type = $2)
                   ORDER BY time""",
                device_id,
                metric_type,
            )
        )

    async def wait_rows(
        self,
        condition: Callable[[list[asyncpg.Record]], bool],
        device_id: str | None = None,
        metric_type: str | None = None,
        within: float = 30.0,
        what: str = "rows",
    ) -> list[asyncpg.Record]:
        """Wait (with a deadline) until the rows satisfy ``condition``; the writer flushes every 0.1 s."""
        deadline = time.monotonic() + within
        while True:
            rows = await self.rows(device_id, metric_type)
            if condition(rows):
                return rows
            if time.monotonic() > deadline:
                status = self.supervisor.status()
                message = f"timed out waiting for {what}; rows: {rows[-5:]}; plugins: {status}"
                print(message, file=sys.__stderr__)  # also when a hung teardown hides the report
                raise AssertionError(message)
            await asyncio.sleep(0.05)

    async def wait_devices(
        self, condition: Callable[[dict[str, tuple[str, str | None]]], bool], within: float = 30.0
    ) -> dict[str, tuple[str, str | None]]:
        """Wait until the devices table ({id: (name, room)}) satisfies ``condition``."""
        deadline = time.monotonic() + within
        while True:
            stored = {r["id"]: (r["name"], r["room"]) for r in await self.pool.fetch("SELECT * FROM devices")}
            if condition(stored):
                return stored
            assert time.monotonic() < deadline, f"timed out waiting for the devices; they are {stored}"
            await asyncio.sleep(0.05)

    async def duplicates(self) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                """SELECT time, device_id, metric_type, count(*) AS n FROM metrics
                   GROUP BY 1, 2, 3 HAVING count(*) > 1"""
            )
        )


OPTIONS = dataclasses.replace(FAST, health_interval=0.2)
CoreFactory = Callable[..., Awaitable[Core]]


def ha_config(ha: HomeAssistant, **extra: Any) -> dict[str, Any]:
    return {"url": ha.url, "token": ha.token, **extra}


@pytest.fixture
async def core_factory(fresh_database: Any, tmp_path: Path) -> AsyncIterator[CoreFactory]:
    """``await make({instance_id: {"plugin"?, "config"}})`` starts a core with those plugin instances;
    the same ``data_dir`` is reused by later calls (a core restart keeps the plugins' state folders)."""
    dsn = await fresh_database()
    started: list[Core] = []

    async def make(plugins: dict[str, dict[str, Any]]) -> Core:
        settings = load_settings(
            env={},
            data_dir=str(tmp_path / "data"),
            database={"url": dsn},
            plugins={pid: {"enabled": True, **spec} for pid, spec in plugins.items()},
        )
        database = await open_database(settings)
        writer = Writer(
            database.pool,
            settings.writer.model_copy(update={"flush_interval": 0.1}),
            tmp_path / f"spool{len(started)}",
        )
        await writer.start()
        collector = Collector(writer, database.pool, settings)
        await collector.start()
        supervisor = Supervisor(
            settings, collector, plugins=discover(settings, include_packages=False), options=OPTIONS
        )
        discovery = DeviceDiscovery(supervisor, collector.registry)  # as the runtime wires it
        supervisor.devices_listener = discovery.request
        await supervisor.start()
        for runner in supervisor.runners.values():
            await wait_for(lambda r=runner: r.state == "running", within=30, what=f"{runner.id} running")
            await wait_for(
                lambda r=runner: r.health.get("connected") is True, within=30, what=f"{runner.id} connected"
            )
        core = Core(settings, database, writer, collector, supervisor, discovery)
        started.append(core)
        return core

    yield make
    for core in reversed(started):
        await stop_core(core)


async def stop_core(core: Core) -> None:
    if getattr(core, "_stopped", False):
        return
    core._stopped = True  # type: ignore[attr-defined]
    # Each step has a deadline: a hung stop must fail the test run, not hang it.
    for step in (core.discovery.stop, core.supervisor.stop, core.writer.close, core.database.close):
        try:
            async with asyncio.timeout(30):
                await step()
        except TimeoutError:
            raise AssertionError(f"{step.__qualname__} did not finish within 30 s") from None


def ts(state: dict[str, Any]) -> datetime:
    """HA's ``last_updated`` of a state as the datetime the plugin stamps its reading with."""
    return datetime.fromisoformat(state["last_updated"])
