"""The writer against the real PostgreSQL: COPY, latest values, rollup buckets, group commit,
backpressure, exactly-once replay and restart with a non-empty spool."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from dbtest import wait_until
from prometheus_client import REGISTRY
from writer_data import BASE, count_rows, make_rows

from aetherlens.config import Settings, WriterSettings
from aetherlens.db import writer as writer_module
from aetherlens.db.spool import Row, Spool, encode_batch
from aetherlens.db.writer import COLUMNS, Writer
from aetherlens.errors import BackpressureError

FAST = WriterSettings(batch_size=1000, retry_initial=0.05, retry_max=0.2)


async def copy_waits_on_lock(conn: asyncpg.Connection) -> bool:
    """A writer's COPY is queued behind the test's lock on ``metrics`` (it cannot commit meanwhile)."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND relation = 'metrics'::regclass"
        )
    )


async def wait_for_lock_wait(conn: asyncpg.Connection, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await copy_waits_on_lock(conn):
        if loop.time() > end:
            raise AssertionError("the writer's COPY never queued behind the lock")
        await asyncio.sleep(0.02)


async def test_submit_commits_rows_latest_values_buckets_and_batch_id(
    ingest_dsn: str, tmp_path: Path
) -> None:
    rows = [
        *make_rows(3, "fridge"),
        (BASE + timedelta(hours=2, minutes=5), "fridge", "power", 99.0, "W", '{"phase": "L1"}'),
        (BASE - timedelta(minutes=1), "fridge", "voltage", 230.5, "V", None),
    ]
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        await writer.submit(rows)
        # An older value later must not replace the latest one.
        await writer.submit([(BASE, "fridge", "power", -1.0, "W", None)])
    conn = await asyncpg.connect(ingest_dsn)
    try:
        stored = await conn.fetch(
            "SELECT time, device_id, metric_type, value, unit, tags::text AS tags "
            "FROM metrics ORDER BY metric_type, time, value"
        )
        assert len(stored) == 6
        tagged = [r for r in stored if r["tags"] is not None]
        assert [(r["value"], r["tags"]) for r in tagged] == [(99.0, '{"phase": "L1"}')]
        latest = {
            (r["device_id"], r["metric_type"]): (r["time"], r["value"], r["unit"])
            for r in await conn.fetch("SELECT * FROM metrics_latest")
        }
        assert latest == {
            ("fridge", "power"): (BASE + timedelta(hours=2, minutes=5), 99.0, "W"),
            ("fridge", "voltage"): (BASE - timedelta(minutes=1), 230.5, "V"),
        }
        buckets = [r["bucket"] for r in await conn.fetch("SELECT bucket FROM rollup_pending ORDER BY 1")]
        assert buckets == [BASE - timedelta(hours=1), BASE, BASE + timedelta(hours=2)]
        batches = await conn.fetch("SELECT row_count FROM ingest_batches ORDER BY committed_at")
        assert sum(r["row_count"] for r in batches) == 6
    finally:
        await conn.close()


async def test_concurrent_submitters_share_one_copy(ingest_dsn: str, tmp_path: Path) -> None:
    settings = WriterSettings(batch_size=10_000)
    async with Writer(ingest_dsn, settings, tmp_path / "spool") as writer:
        await asyncio.gather(*(writer.submit(make_rows(10, f"dev{i}")) for i in range(50)))
    conn = await asyncpg.connect(ingest_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM metrics") == 500
        transactions = await conn.fetchval("SELECT count(*) FROM ingest_batches")
        # 50 submitters queued before the writer ran: one COPY, not one transaction per submit.
        assert transactions == 1
    finally:
        await conn.close()


class _StoppedClock:
    """The writer's view of time, frozen: a flush that waits for a timer never happens."""

    perf_counter = staticmethod(time.perf_counter)

    @staticmethod
    def monotonic() -> float:
        return 1_000.0


async def test_idle_writer_commits_a_single_row_without_waiting_for_a_timer(
    ingest_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the writer's clock stopped no deadline ever passes: only a writer that commits as soon as
    # rows are queued (default settings) can finish. The old timer-driven writer hangs here.
    monkeypatch.setattr(writer_module, "time", _StoppedClock)
    async with Writer(ingest_dsn, Settings().writer, tmp_path / "spool") as writer:
        await asyncio.wait_for(writer.submit(make_rows(1)), timeout=30)
        assert await count_rows(ingest_dsn) == 1
        await asyncio.wait_for(writer.submit(make_rows(1, start=1)), timeout=30)
        assert await count_rows(ingest_dsn) == 2


async def test_rows_queued_during_a_commit_form_the_next_batch_up_to_batch_size(
    ingest_dsn: str, tmp_path: Path
) -> None:
    blocker = await asyncpg.connect(ingest_dsn)
    check = await asyncpg.connect(ingest_dsn)
    settings = WriterSettings(batch_size=25)
    async with Writer(ingest_dsn, settings, tmp_path / "spool") as writer:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(writer.submit(make_rows(1, "first")))
        await wait_for_lock_wait(check)  # the first commit is in flight and cannot finish
        later = [asyncio.create_task(writer.submit(make_rows(1, f"later{i}"))) for i in range(60)]
        await wait_until(lambda: writer.status()["queue_depth"] == 61, what="all rows queued")
        await tx.rollback()
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=30)
    await blocker.close()
    sizes = [r["row_count"] for r in await check.fetch("SELECT row_count FROM ingest_batches")]
    await check.close()
    # The one commit in flight, then the 60 rows that queued behind it in batches of at most 25.
    assert sorted(sizes) == [1, 10, 25, 25]


async def test_full_batch_flushes_without_waiting_for_the_interval(ingest_dsn: str, tmp_path: Path) -> None:
    settings = WriterSettings(batch_size=100, flush_interval=60)
    async with Writer(ingest_dsn, settings, tmp_path / "spool") as writer:
        # With a 60 s interval only the size trigger can finish this well inside the bound.
        await asyncio.wait_for(writer.submit(make_rows(100)), timeout=30)
        assert await count_rows(ingest_dsn) == 100


async def test_queue_full_makes_producers_wait_and_try_submit_refuse(ingest_dsn: str, tmp_path: Path) -> None:
    settings = WriterSettings(batch_size=10, queue_max=10)
    blocker = await asyncpg.connect(ingest_dsn)
    blocker_check = await asyncpg.connect(ingest_dsn)
    async with Writer(ingest_dsn, settings, tmp_path / "spool") as writer:
        # Hold a lock on metrics so the COPY cannot finish: the queue stays full.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(writer.submit(make_rows(10, "a")))
        await wait_until(lambda: writer.status()["queue_depth"] == 10)
        with pytest.raises(BackpressureError) as refused:
            await writer.try_submit(make_rows(1, "b"))
        assert refused.value.retry_after >= 1
        assert refused.value.code == "queue_full"  # its HTTP status (503) is api/errors.py's business
        second = asyncio.create_task(writer.submit(make_rows(5, "c")))
        # Deterministic: the second producer is parked waiting for room, the first one's COPY is queued
        # behind the lock, and neither can finish while the lock is held.
        await wait_until(lambda: writer.status()["producers_waiting"] == 1, what="producer waits for room")
        await wait_for_lock_wait(blocker_check)
        assert not first.done() and not second.done(), "producers wait while the queue is full"
        assert writer.status()["queue_depth"] == 10, "the waiting producer's rows are not queued yet"
        await tx.rollback()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=30)
    await blocker.close()
    await blocker_check.close()
    conn = await asyncpg.connect(ingest_dsn)
    try:
        by_device = dict(await conn.fetch("SELECT device_id, count(*) FROM metrics GROUP BY 1"))
        assert by_device == {"a": 10, "c": 5}
    finally:
        await conn.close()


async def test_spooled_batches_replay_exactly_once_on_start(ingest_dsn: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 30)
    spool.open()
    twice = uuid.uuid4()
    batches = [(twice, make_rows(7, "x")), (uuid.uuid4(), make_rows(3, "y")), (twice, make_rows(7, "x"))]
    for batch_id, rows in batches:
        spool.append(encode_batch(batch_id, rows))
    spool.close()

    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        await wait_until(lambda: writer.status()["spool_batches"] == 0)
        assert writer.status()["db_reachable"] is True
    conn = await asyncpg.connect(ingest_dsn)
    try:
        assert dict(await conn.fetch("SELECT device_id, count(*) FROM metrics GROUP BY 1")) == {
            "x": 7,
            "y": 3,
        }
        assert await conn.fetchval("SELECT count(*) FROM ingest_batches WHERE batch_id = $1", twice) == 1
    finally:
        await conn.close()
    assert not list(spool_dir.glob("spool-*.log"))


async def test_batch_already_committed_is_skipped_on_replay(ingest_dsn: str, tmp_path: Path) -> None:
    # The connection died during COMMIT, the writer spooled the batch anyway: its id is already recorded.
    batch_id = uuid.uuid4()
    rows = make_rows(4, "z")
    conn = await asyncpg.connect(ingest_dsn)
    await conn.execute("INSERT INTO ingest_batches (batch_id, row_count) VALUES ($1, 4)", batch_id)
    await conn.copy_records_to_table("metrics", records=rows, columns=COLUMNS)
    spool = Spool(tmp_path / "spool", 1 << 30)
    spool.open()
    spool.append(encode_batch(batch_id, rows))
    spool.close()
    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        await wait_until(lambda: writer.status()["spool_batches"] == 0)
    assert await conn.fetchval("SELECT count(*) FROM metrics") == 4
    await conn.close()


async def test_restart_with_torn_spool_replays_the_good_records(ingest_dsn: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 30)
    spool.open()
    spool.append(encode_batch(uuid.uuid4(), make_rows(5, "good1")))
    spool.append(encode_batch(uuid.uuid4(), make_rows(5, "good2")))
    spool.close()
    segment = next(spool_dir.glob("spool-*.log"))
    with segment.open("ab") as fh:
        fh.write(encode_batch(uuid.uuid4(), make_rows(5, "torn"))[:-10])
    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        await wait_until(lambda: writer.status()["spool_batches"] == 0)
    conn = await asyncpg.connect(ingest_dsn)
    try:
        assert dict(await conn.fetch("SELECT device_id, count(*) FROM metrics GROUP BY 1")) == {
            "good1": 5,
            "good2": 5,
        }
    finally:
        await conn.close()


async def test_outage_spools_then_replays_when_the_database_appears(
    fresh_database,
    ingest_schema,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The database does not exist yet (as during a restore or a server start): acks come from the
    spool; once it exists the spool is replayed and live writes go straight in."""
    dsn = await fresh_database()
    missing = dsn.rsplit("/", 1)[0] + "/" + "aetherlens_absent_" + uuid.uuid4().hex[:8]
    spooled_before = REGISTRY.get_sample_value("aetherlens_metrics_spooled_total") or 0.0
    replayed_before = REGISTRY.get_sample_value("aetherlens_metrics_replayed_total") or 0.0
    async with Writer(missing, FAST, tmp_path / "spool") as writer:
        for i in range(5):
            await writer.submit(make_rows(20, f"d{i}"))  # acknowledged: fsynced to the spool
        status = writer.status()
        assert status["db_reachable"] is False
        assert status["spool_batches"] >= 1 and status["spool_bytes"] > 0
        # Now bring the database into being and point the writer's connection at it.
        admin = await asyncpg.connect(dsn)
        name = missing.rsplit("/", 1)[1]
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        await ingest_schema(missing)
        await wait_until(lambda: writer.status()["spool_batches"] == 0)
        await writer.submit(make_rows(20, "live"))
        assert writer.status()["db_reachable"] is True
        assert REGISTRY.get_sample_value("aetherlens_metrics_spooled_total") == spooled_before + 100
        assert REGISTRY.get_sample_value("aetherlens_metrics_replayed_total") == replayed_before + 100
        assert REGISTRY.get_sample_value("aetherlens_writer_spool_bytes") == 0
    try:
        conn = await asyncpg.connect(missing)
        counts = dict(await conn.fetch("SELECT device_id, count(*) FROM metrics GROUP BY 1"))
        assert counts == {**{f"d{i}": 20 for i in range(5)}, "live": 20}
        await conn.close()
    finally:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_full_spool_refuses_new_metrics_and_keeps_waiting_producers(
    fresh_database,
    ingest_schema,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    dsn = await fresh_database()
    name = "aetherlens_absent_" + uuid.uuid4().hex[:8]
    missing = dsn.rsplit("/", 1)[0] + "/" + name
    settings = WriterSettings(batch_size=5000, spool_max_bytes=1 << 20, retry_initial=0.05, retry_max=0.2)
    acked = 0
    async with Writer(missing, settings, tmp_path / "spool") as writer:
        # ~75 bytes per row: fill the 1 MiB spool.
        with pytest.raises(BackpressureError, match="spool is full"):
            for i in range(100):
                await writer.try_submit(make_rows(5000, f"f{i}"))
                acked += 5000
        assert acked > 0
        assert writer.status()["spool_full"] is True
        with pytest.raises(BackpressureError):
            await writer.try_submit(make_rows(1, "refused"))
        waiting = asyncio.create_task(writer.submit(make_rows(10, "waiter")))
        # Parked until the spool has room again; the database does not exist yet, so it cannot.
        await wait_until(lambda: writer.status()["producers_waiting"] == 1, what="producer waits for room")
        assert not waiting.done(), "an in-process producer waits while the spool is full"
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            await ingest_schema(missing)
            await asyncio.wait_for(waiting, timeout=60)
            await wait_until(lambda: writer.status()["spool_batches"] == 0, timeout=60)
            assert writer.status()["spool_full"] is False
            conn = await asyncpg.connect(missing)
            assert await conn.fetchval("SELECT count(*) FROM metrics WHERE device_id LIKE 'f%'") == acked
            assert await conn.fetchval("SELECT count(*) FROM metrics WHERE device_id = 'waiter'") == 10
            assert await conn.fetchval("SELECT count(*) FROM metrics WHERE device_id = 'refused'") == 0
            await conn.close()
        finally:
            pass
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_listeners_get_committed_batches_and_cannot_break_the_writer(
    ingest_dsn: str, tmp_path: Path
) -> None:
    seen: list[Sequence[Row]] = []
    async_seen: list[int] = []

    def broken(rows: Sequence[Row]) -> None:
        raise RuntimeError("listener bug")

    async def slow(rows: Sequence[Row]) -> None:
        await asyncio.sleep(0)
        async_seen.append(len(rows))

    async with Writer(ingest_dsn, FAST, tmp_path / "spool") as writer:
        writer.add_listener(broken)
        writer.add_listener(seen.append)
        writer.add_listener(slow)
        await writer.submit(make_rows(3))
        await writer.submit(make_rows(2, "other"))
        await wait_until(lambda: sum(async_seen) == 5)
    assert sum(len(b) for b in seen) == 5
    assert {r[1] for b in seen for r in b} == {"dev1", "other"}
    assert await count_rows(ingest_dsn) == 5


async def test_writer_with_the_core_pool_stores_tags_as_objects(ingest_dsn: str, tmp_path: Path) -> None:
    from aetherlens.db.pool import create_pool

    pool = await create_pool(ingest_dsn, Settings(), min_size=1, max_size=2)
    try:
        async with Writer(pool, FAST, tmp_path / "spool") as writer:
            await writer.submit([(datetime.now(UTC), "p1", "power", 1.0, "W", '{"room": "lab"}')])
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT tags FROM metrics") == {"room": "lab"}
            assert await conn.fetchval("SELECT jsonb_typeof(tags) FROM metrics") == "object"
    finally:
        await pool.close()
