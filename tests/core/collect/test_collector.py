"""The collector end to end against the real PostgreSQL: validation, normalisation, device enrichment
(auto-register or reject), backpressure, and the Prometheus counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from dbtest import wait_until
from prometheus_client import REGISTRY

from aetherlens.collect import Collector
from aetherlens.config import CollectorSettings, Settings, WriterSettings
from aetherlens.db.pool import create_pool
from aetherlens.db.writer import Writer
from aetherlens.errors import BackpressureError
from aetherlens.models import Metric

FAST = WriterSettings(batch_size=1000, retry_initial=0.05, retry_max=0.2)


def settings(auto_register: bool = True) -> Settings:
    return Settings(collector=CollectorSettings(auto_register_devices=auto_register), writer=FAST)


@pytest.fixture
async def pool(ingest_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(ingest_dsn, Settings(), min_size=1, max_size=2)
    yield p
    await p.close()


def now_iso(minutes_ago: float = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_mixed_batch_keeps_good_metrics_and_stores_canonical_units(
    ingest_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rejected_before = counter("aetherlens_metrics_rejected_total", reason="value")
    ingested_before = counter("aetherlens_metrics_ingested_total")
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        collector = Collector(writer, pool, settings())
        await collector.start()
        result = await collector.submit(
            [
                {
                    "time": now_iso(),
                    "device_id": "heatpump",
                    "metric_type": "power",
                    "value": 2.5,
                    "unit": "kW",
                },
                {"time": now_iso(), "device_id": "heatpump", "metric_type": "power", "value": float("nan")},
                {"time": now_iso(), "device_id": "bad id", "metric_type": "power", "value": 1},
                Metric(datetime.now(UTC), "heatpump", "energy", 1234.0, "Wh", {"circuit": "3"}),
            ],
            source="api",
        )
    assert result.accepted == 2
    assert [(r.index, r.reason.split(" ")[0]) for r in result.rejected] == [(1, "value"), (2, "device_id")]
    assert counter("aetherlens_metrics_rejected_total", reason="value") == rejected_before + 1
    assert counter("aetherlens_metrics_ingested_total") == ingested_before + 2
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT metric_type, value, unit, tags FROM metrics ORDER BY metric_type")
        assert [(r["metric_type"], r["value"], r["unit"], r["tags"]) for r in rows] == [
            ("energy", 1.234, "kWh", {"circuit": "3"}),
            ("power", 2500.0, "W", None),
        ]
        latest = await conn.fetchval("SELECT value FROM metrics_latest WHERE metric_type = 'power'")
        assert latest == 2500.0


async def test_unknown_devices_are_auto_registered_with_their_source(
    ingest_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        collector = Collector(writer, pool, settings(auto_register=True))
        await collector.start()
        batch = [
            {"time": now_iso(), "device_id": f"sim.{i}", "metric_type": "power", "value": i} for i in range(3)
        ]
        result = await collector.submit(batch, source="simulator")
        assert result.accepted == 3 and result.rejected == []
        # Known now: a second batch does not touch the registry (nothing new to insert).
        await collector.submit(batch, source="other-plugin")
    async with pool.acquire() as conn:
        devices = {
            r["id"]: (r["name"], r["type"], r["source"]) for r in await conn.fetch("SELECT * FROM devices")
        }
    assert devices == {f"sim.{i}": (f"sim.{i}", "other", "simulator") for i in range(3)}


async def test_unknown_devices_are_rejected_when_auto_register_is_off(
    ingest_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO devices (id, name, type) VALUES ('known', 'Known', 'plug')")
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        collector = Collector(writer, pool, settings(auto_register=False))
        await collector.start()
        result = await collector.submit(
            [
                {"time": now_iso(), "device_id": "stranger", "metric_type": "power", "value": 1},
                {"time": now_iso(), "device_id": "known", "metric_type": "power", "value": 2},
            ]
        )
        assert result.accepted == 1
        assert len(result.rejected) == 1 and result.rejected[0].index == 0
        assert "unknown device 'stranger'" in result.rejected[0].reason
        assert "auto_register_devices is off" in result.rejected[0].reason
        # Created after the collector started (e.g. through the API): found on the next metric.
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO devices (id, name) VALUES ('stranger', 'Now known')")
        again = await collector.submit(
            [{"time": now_iso(), "device_id": "stranger", "metric_type": "power", "value": 3}]
        )
        assert again.accepted == 1 and again.rejected == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM devices") == 2
        assert sorted(r["value"] for r in await conn.fetch("SELECT value FROM metrics")) == [2.0, 3.0]


async def test_http_path_gets_backpressure_and_plugins_wait(
    ingest_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tight = WriterSettings(batch_size=10, queue_max=10)
    blocker = await asyncpg.connect(ingest_dsn)
    refused_before = counter("aetherlens_metrics_refused_total", cause="queue_full")
    async with Writer(ingest_dsn, tight, tmp_path / "spool") as writer:
        collector = Collector(writer, pool, settings())
        await collector.start()
        await collector.submit([{"time": now_iso(), "device_id": "d", "metric_type": "power", "value": 0}])
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        batch = [{"time": now_iso(), "device_id": "d", "metric_type": "power", "value": i} for i in range(10)]
        plugin = asyncio.create_task(collector.submit(batch, source="p"))
        await wait_until(lambda: writer.status()["queue_depth"] == 10, what="the queue is full")
        with pytest.raises(BackpressureError) as exc:
            await collector.submit(batch[:2], wait=False)
        assert exc.value.retry_after >= 1
        assert counter("aetherlens_metrics_refused_total", cause="queue_full") == refused_before + 2
        second_plugin = asyncio.create_task(collector.submit(batch[:3], source="p"))
        # Deterministic: the second plugin is parked waiting for room while the first one's COPY waits
        # for the lock, so neither can have finished.
        await wait_until(lambda: writer.status()["producers_waiting"] == 1, what="plugin waits for room")
        assert not plugin.done() and not second_plugin.done()
        assert writer.status()["queue_depth"] == 10
        await tx.rollback()
        results = await asyncio.wait_for(asyncio.gather(plugin, second_plugin), timeout=30)
        assert [r.accepted for r in results] == [10, 3]
    await blocker.close()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM metrics") == 14


async def test_metrics_the_database_refuses_come_back_as_rejections(
    ingest_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # A rule of the server's own (here a CHECK constraint) that validation knows nothing about.
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE metrics ADD CONSTRAINT test_small CHECK (value < 1000)")
    rejected_before = counter("aetherlens_metrics_rejected_total", reason="database")
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        collector = Collector(writer, pool, settings())
        await collector.start()
        refused = await collector.submit(
            [
                {"time": now_iso(), "device_id": "meter", "metric_type": "power", "value": 5},
                {"time": now_iso(), "device_id": "meter", "metric_type": "power", "value": 5000},
            ]
        )
        fine = await collector.submit(
            [{"time": now_iso(), "device_id": "meter", "metric_type": "power", "value": 7}]
        )
        assert writer.status()["quarantined_batches"] == 1
    # The request's rows failed together: none is reported accepted, each says why.
    assert refused.accepted == 0
    assert [r.index for r in refused.rejected] == [0, 1]
    assert all("test_small" in r.reason and "dead-letter" in r.reason for r in refused.rejected)
    assert fine.accepted == 1
    assert counter("aetherlens_metrics_rejected_total", reason="database") == rejected_before + 2
    async with pool.acquire() as conn:
        assert [r["value"] for r in await conn.fetch("SELECT value FROM metrics")] == [7.0]
