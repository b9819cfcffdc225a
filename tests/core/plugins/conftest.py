"""Fixtures for the plugin tests: the misbehaving and healthy test plugins, settings and a supervisor."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aetherlens.collect.cloud_costs import CostWriter
from aetherlens.collect.collector import Collector
from aetherlens.config import Settings, load_settings
from aetherlens.db.database import Database, open_database
from aetherlens.db.writer import Writer
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.runner import SupervisorOptions
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.plugins.testkit import MemorySink

FIXTURES = Path(__file__).parent / "fixtures"


def make_settings(
    enabled: dict[str, dict[str, Any]], *, data_dir: Path | None = None, **options: Any
) -> Settings:
    """Settings that see the fixture plugins (unsigned, allowed by name) and enable the given ones.

    ``data_dir`` (where plugin instances keep their state folders) is a fresh temporary folder unless
    given, so no test sees another's plugin state and none writes to the machine's real data dir.
    """
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="aetherlens-plugintest-"))
        atexit.register(shutil.rmtree, data_dir, True)
    plugin_options = {
        "directories": [str(FIXTURES)],
        "allow_unsigned": sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()),
        "memory_limit_mb": 256,
        **options,
    }
    plugins = {pid: {"enabled": True, **spec} for pid, spec in enabled.items()}
    return load_settings(env={}, data_dir=data_dir, plugin_options=plugin_options, plugins=plugins)


FAST = SupervisorOptions(
    heartbeat_interval=0.2,
    heartbeat_timeout=5.0,
    start_timeout=20.0,
    stop_timeout=2.0,
    restart_initial=0.3,
    restart_max=2.0,
    stable_after=30.0,
    cpu_window=1.0,
    monitor_interval=0.2,
    jitter=0.1,
    health_interval=0.2,
)


async def wait_for(condition: Callable[[], bool], within: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink(extra_types=["ticks"])


SupervisorFactory = Callable[..., Any]


@pytest.fixture
async def supervisor_factory(sink: MemorySink) -> AsyncIterator[SupervisorFactory]:
    started: list[Supervisor] = []

    async def make(settings: Settings, options: SupervisorOptions = FAST, **kwargs: Any) -> Supervisor:
        sup = Supervisor(
            settings, sink, plugins=discover(settings, include_packages=False), options=options, **kwargs
        )
        await sup.start()
        started.append(sup)
        return sup

    yield make
    for sup in started:
        await sup.stop()


@dataclass
class Core:
    """A core's ingest path for plugin tests: real PostgreSQL, writer, collector and supervisor."""

    database: Database
    writer: Writer
    supervisor: Supervisor

    async def rows(self, device: str) -> int:
        count: int = await self.database.pool.fetchval(
            "SELECT count(*) FROM metrics WHERE device_id = $1", device
        )
        return count


CoreFactory = Callable[..., Any]


@pytest.fixture
async def core(ingest_dsn: str, tmp_path: Path) -> AsyncIterator[CoreFactory]:
    made: list[Core] = []

    async def make(settings: Settings, *, queue_max: int | None = None, before: Any = None) -> Core:
        settings = settings.model_copy(
            update={
                "data_dir": tmp_path / "data",
                "database": settings.database.model_copy(update={"url": ingest_dsn}),
            }
        )
        database = await open_database(settings)
        writer_settings = settings.writer
        if queue_max is not None:
            writer_settings = writer_settings.model_copy(update={"queue_max": queue_max})
        writer = Writer(database.pool, writer_settings, tmp_path / "spool")
        await writer.start()
        collector = Collector(writer, database.pool, settings)
        await collector.start()
        if before is not None:
            await before(database)
        supervisor = Supervisor(
            settings,
            collector,
            plugins=discover(settings, include_packages=False),
            options=FAST,
            cost_sink=CostWriter(database.pool),
        )
        made.append(Core(database, writer, supervisor))
        # As the runtime does: the types the plugins' manifests declare are known before any submit.
        await supervisor.prepare()
        collector.register_metric_types(d.as_metric_type() for d in supervisor.extra_metric_types().values())
        await supervisor.start()
        return made[-1]

    yield make
    for item in made:
        await item.supervisor.stop()
        await item.writer.close()
        await item.database.close()
