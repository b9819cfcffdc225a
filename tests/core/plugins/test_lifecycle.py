"""Lifecycle: hot reload of one plugin, restarts, backoff, isolation of config and environment, status."""

from __future__ import annotations

import dataclasses

import pytest

from aetherlens.errors import PluginError
from aetherlens.plugins.limits import CpuWatch
from aetherlens.plugins.runner import SupervisorOptions
from aetherlens.plugins.testkit import MemorySink

from .conftest import FAST, make_settings, wait_for


async def test_hot_reload_touches_only_that_plugin(supervisor_factory, sink: MemorySink) -> None:
    sup = await supervisor_factory(
        make_settings({"counter": {"config": {"device": "a"}}, "probe": {"config": {"room": "attic"}}})
    )
    counter, probe = sup.runners["counter"], sup.runners["probe"]
    await wait_for(lambda: counter.state == "running" and probe.state == "running", what="both running")
    probe_pid, counter_pid = probe.pid, counter.pid

    await sup.reconfigure("counter", {"device": "b", "step": 10})
    new_counter = sup.runners["counter"]
    await wait_for(lambda: new_counter.state == "running", what="counter reloaded")
    await wait_for(lambda: len(sink.of("b", "power")) >= 2, what="metrics under the new config")
    assert new_counter.pid != counter_pid
    assert all(m["value"] % 10 == 0 for m in sink.of("b", "power"))
    # The other plugin kept its process throughout.
    assert sup.runners["probe"] is probe and probe.pid == probe_pid and probe.restarts == 0

    # An invalid config is refused and leaves the running plugin alone.
    running_pid = new_counter.pid
    with pytest.raises(PluginError, match=r"plugins\.counter\.config\.step"):
        await sup.reconfigure("counter", {"step": "lots"})
    assert sup.runners["counter"].pid == running_pid


async def test_plugin_gets_only_its_config_and_a_minimal_environment(
    supervisor_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AETHERLENS_DATABASE_URL", "postgresql://secret@db/aetherlens")
    monkeypatch.setenv("AETHERLENS_AUTH__SECRET_KEY", "x" * 40)
    monkeypatch.setenv("SOME_OTHER_SECRET", "hunter2")
    settings = make_settings(
        {
            "probe": {"config": {"api_token": "tok-123", "room": "attic"}},
            "counter": {"config": {"device": "c"}},
        }
    )
    sup = await supervisor_factory(settings)
    await wait_for(lambda: sup.runners["probe"].state == "running", what="probe running")
    [device] = await sup.discover_devices("probe")
    assert device["config"] == {"api_token": "tok-123", "room": "attic"}
    assert not [name for name in device["env"] if name.startswith("AETHERLENS")]
    assert "SOME_OTHER_SECRET" not in device["env"]
    assert set(device["env"]) <= {
        "PATH",
        "LANG",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "MALLOC_ARENA_MAX",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "LC_CTYPE",
    }
    # Status is for the API and health: no config, so no secrets.
    assert "tok-123" not in str(sup.status())
    assert await sup.control_device("probe", "probe-1", "toggle") == {"state": "on"}
    with pytest.raises(PluginError, match="cannot control devices"):
        await sup.control_device("counter", "c", "on")


async def test_restart_replaces_process_and_crash_loop_backs_off(supervisor_factory) -> None:
    options = dataclasses.replace(FAST, restart_initial=0.2, restart_max=1.0)
    sup = await supervisor_factory(make_settings({"counter": {}, "crasher": {}}), options=options)
    counter = sup.runners["counter"]
    await wait_for(lambda: counter.state == "running", what="counter running")
    pid = counter.pid
    await sup.restart("counter")
    await wait_for(lambda: counter.state == "running" and counter.pid != pid, what="counter restarted")
    assert counter.restarts == 1 and counter.crashes == 0

    crasher = sup.runners["crasher"]
    delays: dict[int, float] = {}

    def record_backoff() -> bool:
        if crasher.state == "backoff" and crasher.next_restart is not None and crasher.last_exit:
            delay = crasher.next_restart.timestamp() - float(crasher.last_exit["time_epoch"])
            delays.setdefault(crasher.consecutive_failures, delay)
        return len(delays) >= 4

    await wait_for(record_backoff, within=30, what="four backoffs")
    # First restart well within 10 s, then doubling per consecutive failure, capped at restart_max.
    for failures, delay in delays.items():
        assert delay == pytest.approx(min(1.0, 0.2 * 2 ** (failures - 1)), abs=0.01), delays
    assert SupervisorOptions().restart_initial < 10  # the production default
    assert max(delays) >= 4 and max(delays.values()) == pytest.approx(1.0, abs=0.01)


def test_cpu_watch_judges_the_rate_not_the_total() -> None:
    watch = CpuWatch(window=10.0)
    # A plugin that has accumulated 5 hours of CPU over months, using 2 % now.
    base = 5 * 3600.0
    for second in range(0, 31):
        watch.add(1_000_000.0 + second, base + second * 0.02)
    assert watch.percent() == pytest.approx(2.0)
    assert not watch.exceeded(50.0)
    # Now it spins at 90 % for a full window.
    for second in range(31, 45):
        watch.add(1_000_000.0 + second, base + 30 * 0.02 + (second - 30) * 0.9)
    assert watch.percent() == pytest.approx(90.0)
    assert watch.exceeded(50.0)


def test_cpu_watch_needs_a_full_window() -> None:
    watch = CpuWatch(window=10.0)
    watch.add(0.0, 0.0)
    watch.add(2.0, 2.0)  # 100 % but only for 2 s
    assert not watch.exceeded(50.0)


async def test_status_and_extra_metric_types(supervisor_factory) -> None:
    sup = await supervisor_factory(make_settings({"counter": {}}))
    await wait_for(lambda: sup.runners["counter"].collections >= 2, what="two collections")
    status = sup.status_of("counter")
    assert status["state"] == "running" and status["pid"] == sup.runners["counter"].pid
    assert status["metrics_emitted"] >= 4 and status["last_success"] is not None
    assert status["last_heartbeat"] is not None and status["verification"] == "unsigned_allowed"
    assert "config" not in status
    assert {s["id"]: s["state"] for s in sup.status()}["hanger"] == "disabled"
    extra = sup.extra_metric_types()
    assert set(extra) == {"ticks"} and extra["ticks"].unit == "count" and extra["ticks"].counter


async def test_a_failing_sink_does_not_stop_the_schedule() -> None:
    from aetherlens.plugins.discovery import discover
    from aetherlens.plugins.supervisor import Supervisor

    class FlakySink(MemorySink):
        def __init__(self) -> None:
            super().__init__(extra_types=["ticks"])
            self.calls = 0

        async def submit(self, batch, *, wait=True, source="plugin"):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("collector hiccup")
            return await super().submit(batch, wait=wait)

    sink = FlakySink()
    settings = make_settings({"counter": {}})
    sup = Supervisor(settings, sink, plugins=discover(settings, include_packages=False), options=FAST)
    await sup.start()
    try:
        await wait_for(lambda: len(sink.of("counter-1", "power")) >= 3, what="collection after sink errors")
        runner = sup.runners["counter"]
        assert runner.errors >= 2 and runner.crashes == 0
    finally:
        await sup.stop()


async def test_unload_stops_and_disables_and_reconfigure_brings_it_back(supervisor_factory) -> None:
    sup = await supervisor_factory(make_settings({"counter": {}, "probe": {}}))
    await wait_for(lambda: sup.runners["counter"].state == "running", what="counter running")
    pid = sup.runners["counter"].pid
    await sup.unload("counter")
    assert "counter" not in sup.runners
    status = sup.status_of("counter")
    assert status["state"] == "disabled" and status["enabled"] is False
    assert not _alive(pid)
    await sup.reconfigure("counter", {"device": "again"})
    await wait_for(lambda: sup.runners["counter"].state == "running", what="counter back")
    assert sup.status_of("counter")["enabled"] is True


def _alive(pid: int | None) -> bool:
    import os

    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
