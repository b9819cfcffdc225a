"""Misbehaving plugins next to a healthy one: the bad one is killed/restarted with the right cause,
the healthy one keeps collecting (same process) throughout."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from aetherlens.plugins.testkit import MemorySink

from .conftest import FAST, make_settings, wait_for


async def _healthy_keeps_collecting(sup, sink: MemorySink, checkpoints) -> None:
    healthy = sup.runners["counter"]
    pid = healthy.pid
    for condition, what in checkpoints:
        before = len(sink.of("counter-1", "power"))
        await wait_for(condition, what=what)
        # The healthy plugin went on producing while the bad one was being dealt with.
        await wait_for(lambda b=before: len(sink.of("counter-1", "power")) > b + 2, what="healthy progress")
    assert healthy.pid == pid
    assert healthy.crashes == 0 and healthy.restarts == 0


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ("crasher", "crashed"),
        ("hanger", "timeout"),
        ("memhog", "memory_limit"),
        ("garbage", "protocol_error"),
    ],
)
async def test_bad_plugin_is_restarted_with_cause_and_healthy_one_keeps_collecting(
    bad: str, cause: str, supervisor_factory, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=f"aetherlens.plugin.{bad}")
    sup = await supervisor_factory(make_settings({"counter": {}, bad: {}}, memory_limit_mb=200))
    runner = sup.runners[bad]
    await wait_for(lambda: sup.runners["counter"].state == "running", what="healthy running")
    await wait_for(lambda: runner.pid is not None, what="bad plugin started")
    first_pid = runner.pid
    await _healthy_keeps_collecting(
        sup,
        sink,
        [
            (lambda: runner.crashes >= 1, f"{bad} first failure"),
            (
                lambda: runner.restarts >= 1 and runner.state in ("running", "starting", "backoff"),
                f"{bad} restarted",
            ),
            (lambda: runner.crashes >= 2, f"{bad} second failure"),
        ],
    )
    assert runner.last_exit is not None
    assert runner.last_exit["cause"] == cause, runner.last_exit
    assert runner.pid != first_pid or runner.state == "backoff"
    status = sup.status_of(bad)
    assert status["last_exit"]["cause"] == cause
    assert status["crashes"] >= 2
    if bad == "crasher":
        assert "exited with code 3" in runner.last_exit["detail"]
        assert len(sink.of("crasher-1")) >= 2  # it did deliver before each crash
    if bad == "garbage":
        # What it printed to stdout before corrupting the stream reached the log, tagged with its id.
        printed = [r for r in caplog.records if "HELLO FROM PRINT" in r.getMessage()]
        assert printed and all(getattr(r, "plugin", None) == "garbage" for r in printed)
        assert any("raw write to fd 1" in r.getMessage() for r in caplog.records)
    if bad == "memhog":
        assert "RLIMIT_AS" in runner.last_exit["detail"]


async def test_cpu_hog_is_killed_for_its_cpu_rate(supervisor_factory, sink: MemorySink) -> None:
    sup = await supervisor_factory(make_settings({"counter": {}, "cpuhog": {}}, cpu_limit_percent=20))
    runner = sup.runners["cpuhog"]
    await wait_for(lambda: sup.runners["counter"].state == "running", what="healthy running")
    await _healthy_keeps_collecting(sup, sink, [(lambda: runner.crashes >= 1, "cpu hog killed")])
    assert runner.last_exit["cause"] == "cpu_limit", runner.last_exit
    assert "limit 20%" in runner.last_exit["detail"]
    # The healthy plugin, judged by the same watch, is far below the limit.
    assert sup.runners["counter"].state == "running"


async def test_silent_plugin_is_killed_when_its_heartbeat_stops(supervisor_factory, sink: MemorySink) -> None:
    options = dataclasses.replace(FAST, heartbeat_timeout=1.0)
    sup = await supervisor_factory(make_settings({"counter": {}, "blocker": {}}), options=options)
    runner = sup.runners["blocker"]
    await wait_for(lambda: sup.runners["counter"].state == "running", what="healthy running")
    await _healthy_keeps_collecting(sup, sink, [(lambda: runner.crashes >= 1, "blocker killed")])
    assert runner.last_exit["cause"] == "heartbeat_lost", runner.last_exit
