"""The push path (capability ``metrics.push``): a real plugin process's ``run(emit)`` through the real
supervisor, collector and writer into PostgreSQL: delivery, backpressure, crash and restart, state_dir."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import asyncpg
from dbtest import wait_until

from aetherlens.db.database import Database
from aetherlens.plugins.protocol import MAX_UNACKED_PUSHES
from aetherlens.plugins.testkit import MemorySink

from .conftest import CoreFactory, make_settings


async def test_a_push_reaches_the_database(core: CoreFactory, tmp_path: Path) -> None:
    c = await core(make_settings({"pusher": {"config": {"device": "push-db", "pushes": 3, "batch": 10}}}))
    runner = c.supervisor.runners["pusher"]
    await wait_until(lambda: runner.pushes >= 3 or runner.crashes > 0, what="three pushes acknowledged")
    assert runner.crashes == 0, runner.last_exit
    rows = await c.rows("push-db")
    assert rows == 30  # acknowledged = committed: all there the moment the acks are
    assert runner.metrics_emitted == 30 and runner.metrics_rejected == 0
    status = runner.status()
    assert status["pushes"] == 3 and status["state"] == "running" and status["plugin"] == "pusher"
    # the state folder is the instance's, under the core's data dir, and the plugin wrote to it
    state = tmp_path / "data" / "plugins" / "pusher" / "state"
    assert runner.state_dir == state and (state / "next").read_text() == "3"


async def test_a_full_write_queue_blocks_emit_and_loses_nothing(core: CoreFactory) -> None:
    locker: asyncpg.Connection | None = None

    async def lock_metrics(database: Database) -> None:
        # Hold the metrics table: the writer's COPY waits, the queue fills, the plugin must wait too.
        nonlocal locker
        locker = await database.pool.acquire()
        await locker.execute("BEGIN; LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")

    total_pushes, batch = 40, 10
    config = {"device": "push-bp", "pushes": total_pushes, "batch": batch, "concurrency": 8}
    c = await core(make_settings({"pusher": {"config": config}}), queue_max=25, before=lock_metrics)
    runner = c.supervisor.runners["pusher"]
    try:
        # The queue is full when a producer waits for room in it.
        await wait_until(
            lambda: c.writer.status()["producers_waiting"] >= 1, what="the write queue to be full"
        )
        assert runner.pushes == 0  # nothing committed, so nothing acknowledged
        health = await runner.request("health")
        # Eight tasks want to emit, but only the window of unacknowledged pushes is on the wire.
        assert health["acked"] == 0
        assert health["started"] == 8
        assert c.writer.status()["queue_depth"] <= 25 + batch
        assert runner.state == "running" and runner.crashes == 0  # heartbeats kept coming meanwhile
    finally:
        assert locker is not None
        await locker.execute("ROLLBACK")
        await c.database.pool.release(locker)
    await wait_until(
        lambda: runner.pushes >= total_pushes or runner.crashes > 0, timeout=60, what="every push acked"
    )
    assert runner.crashes == 0, runner.last_exit
    assert await c.rows("push-bp") == total_pushes * batch
    assert runner.metrics_emitted == total_pushes * batch
    health = await runner.request("health")
    assert health["accepted"] == total_pushes * batch


async def test_unacknowledged_pushes_are_bounded(supervisor_factory: Any, sink: MemorySink) -> None:
    """The host never has more than MAX_UNACKED_PUSHES on the wire (the runner would kill it)."""
    config = {"device": "push-window", "pushes": 30, "batch": 2, "concurrency": 3 * MAX_UNACKED_PUSHES}
    sup = await supervisor_factory(make_settings({"pusher": {"config": config}}))
    runner = sup.runners["pusher"]
    await wait_until(lambda: runner.pushes >= 30 or runner.crashes > 0, what="30 pushes")
    assert runner.crashes == 0, runner.last_exit
    assert len(sink.of("push-window")) == 60


async def test_a_crash_in_run_restarts_and_pushes_resume(supervisor_factory: Any, sink: MemorySink) -> None:
    config = {"device": "push-crash", "pushes": 6, "batch": 5, "crash_after": 2}
    sup = await supervisor_factory(make_settings({"pusher": {"config": config}}))
    runner = sup.runners["pusher"]
    await wait_until(lambda: runner.crashes >= 1, what="run() to raise")
    assert runner.last_exit is not None and runner.last_exit["cause"] == "run_ended"
    assert "RuntimeError: crash_after 2" in runner.last_exit["detail"]
    first_pids = {m["tags"]["pid"] for m in sink.of("push-crash")}
    await wait_until(lambda: len(sink.of("push-crash")) >= 30, what="pushes to resume after the restart")
    assert runner.crashes == 1 and runner.state == "running"
    pids = {m["tags"]["pid"] for m in sink.of("push-crash")}
    assert len(pids) == 2 and first_pids < pids  # a new process pushed the rest
    # resumed from the state folder: each batch exactly once, none repeated, none skipped
    values = sorted(m["value"] for m in sink.of("push-crash"))
    assert values == sorted(float(b * 1000 + i) for b in range(6) for i in range(5))


async def test_run_returning_counts_as_a_crash(supervisor_factory: Any, sink: MemorySink) -> None:
    config = {"device": "push-return", "pushes": 2, "batch": 1, "return_after": 1}
    sup = await supervisor_factory(make_settings({"pusher": {"config": config}}))
    runner = sup.runners["pusher"]
    await wait_until(lambda: runner.crashes >= 1, what="run() to return")
    assert runner.last_exit is not None and runner.last_exit["detail"] == "run() ended: run() returned"
    await wait_until(lambda: len(sink.of("push-return")) >= 2, what="the restarted process to push")
    with contextlib.suppress(Exception):
        assert runner.status()["restarts"] >= 1
