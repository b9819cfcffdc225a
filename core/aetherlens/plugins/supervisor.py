"""The plugin supervisor: decides which plugins run, owns their runners, and answers for them.

It validates each enabled plugin's config against its manifest before start, runs one process per
plugin (``PluginRunner``; metrics go to the sink, cost reports to the cost sink), forwards written
metrics to export plugins, reports status (never config or secrets), and — when given a database
pool — persists that status to the ``plugins`` table and listens on its NOTIFY channel
(``db.queries.plugins.NOTIFY_CHANNEL``) for restart requests from ``aetherlens plugins restart``.

Everything here is keyed by *instance* id: ``plugins.<instance>`` runs the manifest named by its
``plugin:`` key (default: the instance id itself), so one plugin can run several times with different
configs. Every discovered plugin also has its default instance (id = manifest id), enabled by its
manifest's ``default_enabled`` unless configured. Each instance gets its own persistent state folder,
``<data_dir>/plugins/<instance>/state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from aetherlens import plugin_secrets  # the one place stored secrets are decrypted
from aetherlens.config import Settings
from aetherlens.db.queries import plugins as plugin_rows
from aetherlens.db.queries.plugins import NOTIFY_CHANNEL
from aetherlens.errors import NotFoundError, PluginError
from aetherlens.models import Metric
from aetherlens.plugins.discovery import DiscoveredPlugin, discover
from aetherlens.plugins.manifest import MetricDeclaration, validate_config
from aetherlens.plugins.runner import PluginRunner, PluginUnavailable, SupervisorOptions
from aetherlens.plugins.sdk import to_wire
from aetherlens.plugins.sink import CostSink, MetricSink

log = logging.getLogger("aetherlens.plugins")


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        sink: MetricSink,
        *,
        plugins: dict[str, DiscoveredPlugin] | None = None,
        pool: Any = None,
        options: SupervisorOptions | None = None,
        cost_sink: CostSink | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.cost_sink = cost_sink  # where cost plugins' reports go (None: they are refused, ok=False)
        self.pool = pool
        self.options = options or SupervisorOptions()
        self._given = plugins
        self.discovered: dict[str, DiscoveredPlugin] = {}  # by manifest id
        self.instances: dict[str, DiscoveredPlugin] = {}  # by instance id: the plugin each one runs
        self.runners: dict[str, PluginRunner] = {}  # by instance id
        self.problems: dict[str, str] = {}  # enabled instances that may not run, and why
        self._unknown: dict[str, str] = {}  # instance id -> the plugin id it names, which does not exist
        self._listener: Any = None
        self._persist_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stored: dict[str, dict[str, Any]] = {}  # config set through the API (PUT /plugins/{id}/config)
        self._stored_enabled: dict[str, bool] = {}
        self._prepared = False
        #: called with an instance id when that plugin's devices may have changed (the runtime then
        #: asks it for them and registers them); None: nobody listens.
        self.devices_listener: Callable[[str], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Discover and validate without starting processes, so ``extra_metric_types()`` is known first.

        ``start()`` calls it when it has not run; call it yourself to register the plugins' metric types
        with the collector before the first plugin can submit.
        """
        if self._prepared:
            return
        self._prepared = True
        self.discovered = self._given if self._given is not None else discover(self.settings)
        self._resolve_instances()
        if self.pool is not None:
            await self._load_stored_config()
        for instance_id, plugin in sorted(self.instances.items()):
            if self._enabled(instance_id, plugin):
                try:
                    self._load(instance_id, plugin, self._stored.get(instance_id))
                except PluginError as exc:
                    self.problems[instance_id] = exc.message
                    log.error(
                        "plugin %s not started: %s", instance_id, exc.message, extra={"plugin": instance_id}
                    )

    def _resolve_instances(self) -> None:
        """Instance id -> discovered plugin; a ``plugin:`` naming no plugin is a problem of that instance."""
        self.instances = dict(self.discovered)
        for instance_id, configured in self.settings.plugins.items():
            target = configured.plugin or instance_id
            if target == instance_id:
                continue
            if instance_id in self.discovered:
                self._unknown[instance_id] = target
                self.problems[instance_id] = (
                    f"plugins.{instance_id}.plugin: '{instance_id}' is the id of a plugin itself; "
                    f"give this instance of '{target}' another name"
                )
                self.instances.pop(instance_id, None)
            elif target not in self.discovered:
                known = ", ".join(sorted(self.discovered)) or "none"
                self._unknown[instance_id] = target
                self.problems[instance_id] = (
                    f"plugins.{instance_id}.plugin: no plugin '{target}' (known: {known})"
                )
            else:
                self.instances[instance_id] = self.discovered[target]
        for instance_id, problem in self.problems.items():
            log.error("plugin %s not started: %s", instance_id, problem, extra={"plugin": instance_id})

    def state_dir(self, instance_id: str) -> Path:
        """The persistent folder of one instance (``BasePlugin.state_dir`` in its process)."""
        return self.settings.data_dir / "plugins" / instance_id / "state"

    async def start(self) -> None:
        await self.prepare()
        for runner in self.runners.values():
            runner.start()
        if self.pool is not None:
            await self._listen()
            self._persist_task = asyncio.create_task(self._persist_loop())

    async def stop(self) -> None:
        if self._persist_task is not None:
            self._persist_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._persist_task
        await asyncio.gather(*(runner.stop() for runner in self.runners.values()))
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self.pool.release(self._listener)
            self._listener = None
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await self.persist_status()

    async def _load_stored_config(self) -> None:
        """Config saved through the API outlives a restart: it overlays ``plugins.<id>.config``."""
        for row in await plugin_rows.stored_configs(self.pool):
            configured = self.settings.plugins.get(row.id)
            base = dict(configured.config) if configured else {}
            secrets = plugin_secrets.decrypt(self.settings, row.secrets)
            self._stored[row.id] = plugin_secrets.merge({**base, **row.config}, secrets)
            self._stored_enabled[row.id] = row.enabled

    def _enabled(self, instance_id: str, plugin: DiscoveredPlugin) -> bool:
        if instance_id in self._stored_enabled:
            return self._stored_enabled[instance_id]
        configured = self.settings.plugins.get(instance_id)
        if configured is not None and configured.enabled is not None:
            return configured.enabled
        if instance_id != plugin.id:
            return True  # a configured extra instance runs unless it says enabled: false
        return plugin.manifest is not None and plugin.manifest.default_enabled

    def _load(
        self,
        instance_id: str,
        plugin: DiscoveredPlugin,
        config: dict[str, Any] | None = None,
        poll_interval: float | None = None,
    ) -> PluginRunner:
        """Check everything that can be checked before a process exists, then build its runner."""
        if not plugin.runnable or plugin.manifest is None:
            raise PluginError(
                plugin.problem or f"plugin '{plugin.id}' cannot run", details={"plugin": instance_id}
            )
        configured = self.settings.plugins.get(instance_id)
        raw = config if config is not None else (dict(configured.config) if configured else {})
        validated = validate_config(plugin.manifest, raw, instance_id=instance_id)
        state_dir = self.state_dir(instance_id)
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise PluginError(
                f"plugin '{instance_id}': cannot create its state folder {state_dir}: {exc.strerror}",
                details={"plugin": instance_id, "path": str(state_dir)},
            ) from None
        interval = (
            poll_interval
            or (configured.poll_interval if configured else None)
            or (plugin.manifest.poll_interval)
        )
        options = self.settings.plugin_options
        runner = PluginRunner(
            plugin,
            validated,
            interval,
            self.sink,
            self.options,
            memory_limit_mb=self.options.memory_limit_mb or options.memory_limit_mb,
            cpu_limit_percent=self.options.cpu_limit_percent or options.cpu_limit_percent,
            instance_id=instance_id,
            state_dir=state_dir,
            cost_sink=self.cost_sink,
        )
        runner.on_devices_changed = self._devices_changed
        self.runners[instance_id] = runner
        self.problems.pop(instance_id, None)
        return runner

    def _devices_changed(self, instance_id: str) -> None:
        if self.devices_listener is not None:
            self.devices_listener(instance_id)

    def _instance(self, plugin_id: str) -> DiscoveredPlugin:
        plugin = self.instances.get(plugin_id)
        if plugin is None:
            raise NotFoundError(f"no plugin '{plugin_id}'")
        return plugin

    def _runner(self, plugin_id: str) -> PluginRunner:
        runner = self.runners.get(plugin_id)
        if runner is None:
            if plugin_id in self.instances or plugin_id in self._unknown:
                raise PluginUnavailable(
                    f"plugin '{plugin_id}' is not running: {self.problems.get(plugin_id, 'disabled')}"
                )
            raise NotFoundError(f"no plugin '{plugin_id}'")
        return runner

    async def restart(self, plugin_id: str) -> None:
        await self._runner(plugin_id).restart()

    def check_config(self, plugin_id: str, config: dict[str, Any]) -> None:
        """Validate ``config`` against the plugin's manifest, enabled or not: a config stored for a disabled
        plugin is the one it starts with later, so it must pass the same schema now."""
        plugin = self._instance(plugin_id)
        if plugin.manifest is not None:  # no manifest: the plugin cannot run, its problem says why
            validate_config(plugin.manifest, config, instance_id=plugin_id)

    async def reconfigure(
        self, plugin_id: str, config: dict[str, Any], *, poll_interval: float | None = None
    ) -> None:
        """Hot reload of one plugin: validate first (a bad config leaves the running one alone)."""
        plugin = self._instance(plugin_id)
        if plugin.manifest is None or not plugin.runnable:
            raise PluginError(plugin.problem or f"plugin '{plugin_id}' cannot run")
        validate_config(plugin.manifest, config, instance_id=plugin_id)
        self._stored_enabled[plugin_id] = True  # a reconfigured plugin runs, so it counts as enabled
        old = self.runners.pop(plugin_id, None)
        if old is not None:
            await old.stop()
        try:
            runner = self._load(
                plugin_id, plugin, config, poll_interval or (old.poll_interval if old else None)
            )
        except PluginError:
            if old is not None:  # cannot happen after the validation above, but never lose the plugin
                self.runners[plugin_id] = old
                old.start()
            raise
        if old is not None:
            runner.restarts = old.restarts + 1
        runner.start()

    async def unload(self, plugin_id: str) -> None:
        """Stop a plugin and keep it stopped (disabled) until ``reconfigure`` or a new start."""
        self._stored_enabled[plugin_id] = False
        runner = self.runners.pop(plugin_id, None)
        if runner is not None:
            await runner.stop()

    # -- data in both directions -----------------------------------------------------------------------
    async def export(self, batch: Sequence[Metric | dict[str, Any]]) -> None:
        """Hand written metrics to every running export plugin (the writer's listener calls this)."""
        exporters = [r for r in self.runners.values() if r.manifest.has("metrics.export")]
        if not exporters or not batch:
            return
        wire = [to_wire(item) for item in batch]
        for runner in exporters:
            runner.enqueue_export(wire)

    async def discover_devices(self, plugin_id: str) -> list[dict[str, Any]]:
        result = await self._runner(plugin_id).request("discover")
        return list(result or [])

    async def control_device(self, plugin_id: str, device_id: str, action: str) -> dict[str, Any]:
        runner = self._runner(plugin_id)
        if not runner.manifest.has("device.control"):
            raise PluginError(f"plugin '{plugin_id}' cannot control devices")
        result = await runner.request("control", device_id=device_id, action=action)
        return dict(result or {})

    def extra_metric_types(self) -> dict[str, MetricDeclaration]:
        """Metric types declared by enabled plugins beyond the core vocabulary (the manifest rules them)."""
        extra: dict[str, MetricDeclaration] = {}
        for runner in self.runners.values():
            extra.update(runner.manifest.extra_metric_types())
        return extra

    # -- status ----------------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """One dict per plugin instance, for the API and health; never config or secrets."""
        return [self.status_of(plugin_id) for plugin_id in sorted({*self.instances, *self._unknown})]

    def status_of(self, plugin_id: str) -> dict[str, Any]:
        runner = self.runners.get(plugin_id)
        if runner is not None:
            return runner.status()
        if plugin_id in self._unknown:
            return {
                "id": plugin_id,
                "plugin": self._unknown[plugin_id],
                "name": None,
                "version": None,
                "capabilities": [],
                "enabled": True,
                "state": "refused",
                "last_error": self.problems.get(plugin_id),
            }
        plugin = self._instance(plugin_id)
        enabled = self._enabled(plugin_id, plugin)
        problem = self.problems.get(plugin_id) or (plugin.problem if enabled else None)
        return {
            "id": plugin_id,
            "plugin": plugin.id,
            "name": plugin.manifest.name if plugin.manifest else plugin_id,
            "version": plugin.manifest.version if plugin.manifest else None,
            "source": plugin.source,
            "verification": plugin.verification.status,
            "capabilities": list(plugin.manifest.capabilities) if plugin.manifest else [],
            "enabled": enabled,
            "state": "refused" if problem else "disabled",
            "last_error": problem,
        }

    async def persist_status(self) -> None:
        await plugin_rows.upsert_status(self.pool, self.status())

    async def _persist_loop(self) -> None:
        while True:
            try:
                await self.persist_status()
            except Exception as exc:  # the database may be down: status is best effort, plugins go on
                log.warning("could not persist plugin status: %s", exc)
            await asyncio.sleep(max(1.0, self.options.heartbeat_interval))

    async def _listen(self) -> None:
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            request = orjson.loads(payload)
            action, plugin_id = request["action"], str(request["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring malformed %s notification: %r", NOTIFY_CHANNEL, payload[:200])
            return
        if action != "restart":
            log.warning("ignoring unknown plugin action %r", action)
            return
        task = asyncio.create_task(self._restart_by_request(plugin_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart_by_request(self, plugin_id: str) -> None:
        try:
            await self.restart(plugin_id)
            log.info("plugin %s restarted on request", plugin_id, extra={"plugin": plugin_id})
        except PluginError as exc:
            log.warning("restart of %s refused: %s", plugin_id, exc.message)
        except NotFoundError as exc:
            log.warning("restart request: %s", exc.message)
