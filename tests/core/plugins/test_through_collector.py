"""End to end through the real collector and writer: simulator process -> supervisor -> PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from aetherlens.collect.collector import Collector
from aetherlens.db.database import open_database
from aetherlens.db.writer import Writer
from aetherlens.plugins.discovery import discover

from .conftest import FAST, make_settings, wait_for


async def test_simulator_and_counter_metrics_land_in_postgres(fresh_database, tmp_path: Path) -> None:
    from aetherlens.plugins.supervisor import Supervisor

    dsn = await fresh_database()
    settings = make_settings(
        {"simulator": {"config": {"households": 2, "seed": 1}, "poll_interval": 0.2}, "counter": {}}
    )
    settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": dsn})})
    database = await open_database(settings)
    writer = Writer(
        database.pool, settings.writer.model_copy(update={"flush_interval": 0.1}), tmp_path / "spool"
    )
    await writer.start()
    collector = Collector(writer, database.pool, settings)
    await collector.start()
    supervisor = Supervisor(
        settings, collector, plugins=discover(settings, include_packages=False), options=FAST
    )
    try:
        await supervisor.prepare()
        # The counter fixture declares a type outside the vocabulary; its manifest makes it known
        # before the first process can submit.
        collector.register_metric_types(d.as_metric_type() for d in supervisor.extra_metric_types().values())
        await supervisor.start()
        sim = supervisor.runners["simulator"]
        await wait_for(
            lambda: sim.metrics_emitted >= 12 * 2 * 3, within=30, what="three simulator polls stored"
        )
        await wait_for(lambda: supervisor.runners["counter"].metrics_emitted >= 4, what="counter stored")
        assert sim.metrics_rejected == 0, sim.last_error
        counter = supervisor.runners["counter"]
        assert counter.metrics_rejected == 0, counter.last_error
        rows = await database.pool.fetch(
            "SELECT device_id, count(*) AS n FROM metrics WHERE metric_type = 'power' GROUP BY device_id"
        )
        counts = {r["device_id"]: r["n"] for r in rows}
        assert counts.get("sim-h002-mains", 0) >= 3 and counts.get("sim-h001-fridge", 0) >= 3
        ticks = await database.pool.fetchval("SELECT count(*) FROM metrics WHERE metric_type = 'ticks'")
        assert ticks >= 1
        devices = await database.pool.fetchval("SELECT count(*) FROM devices WHERE id LIKE 'sim-%'")
        assert devices == 12  # auto-registered from the plugin's metrics
    finally:
        await supervisor.stop()
        await writer.close()
        await database.close()
