"""Run a plugin through the real supervisor, in its own process, and get back what it emitted.

    from aetherlens.plugins.testkit import run_plugin
    run = await run_plugin(Path("my_plugin"), {"host": "127.0.0.1"}, collections=3)
    assert run.metrics and not run.rejected

    # a pushing plugin (capability metrics.push): wait for 2 acknowledged emits of its run()
    run = await run_plugin(Path("my_plugin"), {"broker": "mqtt://127.0.0.1"}, pushes=2)

    # a cost plugin (capability costs.collect): 2 polls, each report stored and costs_stored() answered
    run = await run_plugin(Path("my_cost_plugin"), {...}, collections=2)
    assert run.costs and run.status["health"]

The plugin under test is allowed to run unsigned (it is the author's own code); everything else —
manifest, config schema, core version, process, frames, limits — is the production path.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aetherlens.collect.cloud_costs import parse_report, replaces_budgets
from aetherlens.config import Settings, load_settings
from aetherlens.errors import PluginError
from aetherlens.models import DEVICE_ID_PATTERN, METRIC_TYPES, CostsStored, Metric, Rejection, SubmitResult
from aetherlens.plugins.discovery import inspect_directory
from aetherlens.plugins.runner import SupervisorOptions
from aetherlens.plugins.sdk import to_wire
from aetherlens.plugins.sink import CostSink
from aetherlens.plugins.supervisor import Supervisor


class MemorySink:
    """Keeps what plugins submit, checking the ingest shape the collector will also check.

    It is a cost sink too: ``costs`` holds the stored cost records by key (a re-sent key replaces its
    record, as in ``cloud_costs``), ``budgets`` the budgets by (provider, account), ``cost_reports``
    every report as it came; set ``fail_costs`` to a message to make storing fail (as a database
    outage does), so the plugin hears ``costs_stored(ok=False)``."""

    def __init__(self, extra_types: Sequence[str] = ()) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.rejected: list[tuple[dict[str, Any], str]] = []
        self.known_types = set(METRIC_TYPES) | set(extra_types)
        self.changed = asyncio.Event()
        self.costs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.budgets: dict[tuple[str, str], dict[str, Any]] = {}
        self.cost_reports: list[Mapping[str, Any]] = []
        self.cost_rejected: list[str] = []
        self.fail_costs: str | None = None

    async def store_costs(self, report: Mapping[str, Any], *, source: str) -> CostsStored:
        self.cost_reports.append(report)
        self.changed.set()
        if self.fail_costs is not None:
            raise ConnectionError(self.fail_costs)
        parsed = parse_report(report)
        for row in parsed.records:
            wire = {
                "day": row.day.isoformat(),
                "provider": row.provider,
                "account": row.account,
                "service": row.service,
                "resource_group": row.resource_group,
                "region": row.region,
                "amount": str(row.amount),
                "currency": row.currency,
                "kind": row.kind,
                "estimated": row.estimated,
            }
            self.costs[row.key()] = wire
        if replaces_budgets(report):
            self.budgets = {
                (b.provider, b.account): {
                    "provider": b.provider,
                    "account": b.account,
                    "amount": str(b.amount),
                    "currency": b.currency,
                    "source": source,
                }
                for b in parsed.budgets
            }
        self.cost_rejected.extend(parsed.rejected)
        return CostsStored(len(parsed.records), len(parsed.budgets), parsed.rejected)

    async def submit(
        self, batch: Sequence[Metric | dict[str, Any]], *, wait: bool = True, source: str = "plugin"
    ) -> SubmitResult:
        result = SubmitResult()
        for index, item in enumerate(batch):
            wire = to_wire(item)
            reason = self._problem(wire)
            if reason is None:
                self.metrics.append(wire)
                result.accepted += 1
            else:
                self.rejected.append((wire, reason))
                result.rejected.append(Rejection(index, reason))
        self.changed.set()
        return result

    def _problem(self, item: dict[str, Any]) -> str | None:
        device = item.get("device_id")
        if not isinstance(device, str) or not DEVICE_ID_PATTERN.fullmatch(device):
            return f"bad device_id {device!r}"
        if item.get("metric_type") not in self.known_types:
            return f"unknown metric_type {item.get('metric_type')!r}"
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"value {value!r} is not a finite number"
        when = item.get("time")
        if isinstance(when, str):
            try:
                if datetime.fromisoformat(when).tzinfo is None:
                    return "time has no UTC offset"
            except ValueError:
                return f"time {when!r} is not ISO 8601"
        elif not isinstance(when, int | float):
            return "time missing"
        return None

    def of(self, device_id: str, metric_type: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.metrics
            if m["device_id"] == device_id and (metric_type is None or m["metric_type"] == metric_type)
        ]


@dataclass(slots=True)
class PluginRun:
    metrics: list[dict[str, Any]]
    rejected: list[tuple[dict[str, Any], str]]
    status: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)
    state_dir: Path | None = None  # the instance's state folder (kept when ``data_dir`` was given)
    costs: list[dict[str, Any]] = field(default_factory=list)  # stored cost records (cost plugins)
    budgets: list[dict[str, Any]] = field(default_factory=list)


async def run_plugin(
    directory: Path,
    config: dict[str, Any] | None = None,
    *,
    collections: int = 1,
    poll_interval: float | None = None,
    export: Sequence[Sequence[dict[str, Any]]] = (),
    discover: bool = False,
    pushes: int = 0,
    until: Callable[[MemorySink], bool] | None = None,
    during: Callable[[], Any] | None = None,
    within: float = 30.0,
    settings: Settings | None = None,
    data_dir: Path | None = None,
    sink: MemorySink | None = None,
    cost_sink: CostSink | None = None,
) -> PluginRun:
    """Start the plugin, wait for what is asked, stop it.

    Waits for ``collections`` successful polls (polled and cost plugins; a cost poll counts once the
    plugin has been told whether its report was stored), ``export`` batches, ``pushes``
    acknowledged ``emit`` calls of ``run()`` (pushing plugins) and ``until(sink)`` to be true. ``during``
    (sync or async) runs once the plugin is up: publish the test's messages there. The instance's
    ``state_dir`` lives under ``data_dir`` (default: a temporary folder removed afterwards), so two runs
    with the same ``data_dir`` show what the plugin keeps across restarts. ``sink`` (default: a new
    ``MemorySink``) takes metrics and, unless ``cost_sink`` is given (the core's ``CostWriter`` on a
    real database, say), cost reports.
    """
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="aetherlens-testkit-") as temp:
            return await run_plugin(
                directory,
                config,
                collections=collections,
                poll_interval=poll_interval,
                export=export,
                discover=discover,
                pushes=pushes,
                until=until,
                during=during,
                within=within,
                settings=settings,
                data_dir=Path(temp),
                sink=sink,
                cost_sink=cost_sink,
            )
    base = (settings or load_settings(env={})).model_copy(update={"data_dir": data_dir})
    plugin = inspect_directory(directory, base)
    plugin_id = plugin.manifest.id if plugin.manifest else directory.name
    if not plugin.verification.ok and plugin.verification.status == "unsigned":
        options = base.plugin_options.model_copy(update={"allow_unsigned": [plugin_id]})
        plugin = inspect_directory(directory, base.model_copy(update={"plugin_options": options}))
    if not plugin.runnable or plugin.manifest is None:
        raise PluginError(plugin.problem or f"plugin '{plugin_id}' cannot run")
    if sink is None:
        sink = MemorySink(extra_types=list(plugin.manifest.extra_metric_types()))
    else:
        sink.known_types |= set(plugin.manifest.extra_metric_types())
    supervisor = Supervisor(
        _with_plugin(base, plugin_id, config or {}, poll_interval),
        sink,
        plugins={plugin_id: plugin},
        options=SupervisorOptions(restart_initial=0.2, jitter=0.0),
        cost_sink=cost_sink or sink,
    )
    await supervisor.start()
    if plugin_id in supervisor.problems:
        raise PluginError(supervisor.problems[plugin_id])
    runner = supervisor.runners[plugin_id]
    devices: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    try:
        await _wait(lambda: runner.state in ("running", "failed"), deadline, runner)
        if runner.state == "failed":
            raise PluginError(f"plugin '{plugin_id}' failed to start: {runner.last_exit}")
        if export:
            for batch in export:
                await supervisor.export(list(batch))
            await _wait(lambda: runner.exports >= len(export), deadline, runner)
        if discover:
            devices = await supervisor.discover_devices(plugin_id)
        if during is not None:
            started = during()
            if asyncio.iscoroutine(started):
                await started
        if runner.manifest.has("metrics.collect"):
            await _wait(lambda: runner.collections >= collections, deadline, runner)
        if runner.manifest.has("costs.collect"):
            await _wait(lambda: runner.cost_polls >= collections, deadline, runner)
        if pushes:
            await _wait(lambda: runner.pushes >= pushes, deadline, runner)
        if until is not None:
            await _wait(lambda: until(sink), deadline, runner)
        status = runner.status()
    finally:
        await supervisor.stop()
    return PluginRun(
        list(sink.metrics),
        list(sink.rejected),
        status,
        devices,
        runner.state_dir,
        costs=list(sink.costs.values()),
        budgets=list(sink.budgets.values()),
    )


def _with_plugin(settings: Settings, plugin_id: str, config: dict[str, Any], poll: float | None) -> Settings:
    data = settings.model_dump()
    data["plugins"] = {
        **data.get("plugins", {}),
        plugin_id: {"enabled": True, "config": config, "poll_interval": poll},
    }
    return Settings.model_validate(data)


async def _wait(condition: Any, deadline: float, runner: Any) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise PluginError(
                f"plugin '{runner.id}' did not get there in time: state {runner.state}, "
                f"last exit {runner.last_exit}, last error {runner.last_error}"
            )
        if runner.last_exit and runner.last_exit.get("cause") in ("config_error", "load_error"):
            raise PluginError(f"plugin '{runner.id}': {runner.last_exit['detail']}")
        await asyncio.sleep(0.05)
