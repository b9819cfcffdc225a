"""The running core: database, writer, collector, plugin supervisor, background jobs and the API.

``Core`` owns the start order (each part needs the one before it) and the reverse stop order, so a
Ctrl-C or SIGTERM drains the write queue into PostgreSQL (or the spool) before the database stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from aetherlens import __version__
from aetherlens.alerts.config_rules import sync_config_rules
from aetherlens.alerts.engine import AlertEngine
from aetherlens.alerts.sources import CostSource, TariffView
from aetherlens.api.context import ApiContext
from aetherlens.api.security import AUTH_SERVICE_KEY
from aetherlens.api.server import ApiServer
from aetherlens.api.stream import StreamHub, publish_written
from aetherlens.auth.service import AuthService, ensure_admin
from aetherlens.collect import Collector
from aetherlens.collect.cloud_costs import CostWriter
from aetherlens.collect.registry import DeviceRegistry
from aetherlens.config import Settings
from aetherlens.costs import service as cost_service
from aetherlens.costs import store as tariff_store
from aetherlens.costs.engine import cycle_bounds
from aetherlens.costs.job import CostJob
from aetherlens.db.database import Database, open_database
from aetherlens.db.migrations import instance_id
from aetherlens.db.retention import RetentionJob, apply_retention_settings
from aetherlens.db.rollups import RollupJob
from aetherlens.db.writer import Row, Writer
from aetherlens.models import Metric
from aetherlens.plugins.supervisor import Supervisor

log = logging.getLogger(__name__)

ROLLUP_INTERVAL = 60.0
RETENTION_INTERVAL = 3600.0
COST_INTERVAL = 60.0
DISCOVERY_WAIT_STEPS = 120  # x 0.5 s: how long discovery waits for a plugin to be running


@dataclass(frozen=True, slots=True)
class Started:
    """What a person starting the core needs to see once."""

    url: str
    admin_password: str | None
    startup_seconds: float


# Called with the open pool before plugins start; returns the settings to run with (the demo resumes its
# simulator from stored readings this way).
PluginPreparer = Callable[[asyncpg.Pool, Settings], Awaitable[Settings]]


class Core:
    def __init__(self, settings: Settings, *, prepare_plugins: PluginPreparer | None = None) -> None:
        self.settings = settings
        self._prepare_plugins = prepare_plugins
        self.database: Database | None = None
        self.writer: Writer | None = None
        self.collector: Collector | None = None
        self.supervisor: Supervisor | None = None
        self.context: ApiContext | None = None
        self._server: ApiServer | None = None
        self._jobs: list[asyncio.Task[None]] = []
        self._discovery: DeviceDiscovery | None = None
        self._cost_job: CostJob | None = None
        self.alerts: AlertEngine | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> Started:
        began = time.monotonic()
        settings = self.settings
        self.database = database = await open_database(settings)
        pool, capabilities = database.pool, database.capabilities
        log.info("storage capabilities", extra={"capabilities": capabilities.as_dict()})
        async with pool.acquire() as conn:
            await apply_retention_settings(conn, capabilities, settings.retention)
        admin_password = await ensure_admin(pool, settings)
        instance = await instance_id(pool)

        self.writer = Writer(pool, settings.writer, settings.data_dir / "spool")
        await self.writer.start()
        self.collector = Collector(self.writer, pool, settings)
        await self.collector.start()
        plugin_settings = await self._prepare_plugins(pool, settings) if self._prepare_plugins else settings
        self.supervisor = Supervisor(plugin_settings, self.collector, pool=pool, cost_sink=CostWriter(pool))
        self._discovery = DeviceDiscovery(self.supervisor, self.collector.registry)
        self.supervisor.devices_listener = self._discovery.request

        self._cost_job = CostJob(meter_device=settings.site.meter_device, capabilities=capabilities)
        stream = StreamHub()
        self.alerts = AlertEngine(
            pool, settings, publish=lambda data: stream.publish("alerts", data), costs=cost_source(settings)
        )
        self.context = ApiContext(
            settings=settings,
            pool=pool,
            capabilities=capabilities,
            collector=self.collector,
            writer=self.writer,
            supervisor=self.supervisor,
            cost_job=self._cost_job,
            alert_engine=self.alerts,
            instance_id=instance,
            version=__version__,
            stream=stream,
        )
        self.writer.add_listener(self._on_written)
        # Series rules see every committed batch; the listener only queues it (alerts/engine.py).
        self.writer.add_listener(self.alerts.on_written)
        await self.supervisor.prepare()  # manifests read: their metric types are known before any submit
        self.collector.register_metric_types(
            d.as_metric_type() for d in self.supervisor.extra_metric_types().values()
        )
        async with pool.acquire() as conn:  # a bad rule in the file stops the start, naming its key
            await sync_config_rules(conn, settings, set(self.collector.units.types))
        await self.alerts.start()
        await self.supervisor.start()

        rollups = RollupJob(capabilities, raw_retention_days=settings.retention.raw_days)
        retention = RetentionJob(capabilities, settings.retention)
        self._jobs = [
            asyncio.create_task(self._every(ROLLUP_INTERVAL, rollups.run_until_idle), name="rollups"),
            asyncio.create_task(self._every(RETENTION_INTERVAL, retention.run_once), name="retention"),
            asyncio.create_task(self._every(COST_INTERVAL, self._price_new_data), name="costs"),
        ]

        self._server = ApiServer(self.context)
        bind_host = host or settings.api.host
        bound_port = await self._server.start(bind_host, settings.api.port if port is None else port)
        url = f"http://{bind_host}:{bound_port}"
        elapsed = time.monotonic() - began
        log.info("AetherLens %s listening on %s (started in %.2f s)", __version__, url, elapsed)
        return Started(url=url, admin_password=admin_password, startup_seconds=elapsed)

    @property
    def api_server(self) -> ApiServer | None:
        """The API while it is up (``api_server.app`` is the aiohttp application)."""
        return self._server

    @property
    def auth(self) -> AuthService:
        """The running API's auth service (its changes reach the in-memory credentials at once)."""
        assert self._server is not None, "the core is not started"
        return self._server.app[AUTH_SERVICE_KEY]

    async def stop(self) -> None:
        """Stop in reverse order; each step runs even if an earlier one failed."""
        for task in self._jobs:
            task.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self._jobs = []
        if self._discovery is not None:
            await self._discovery.stop()
        steps: list[tuple[str, Callable[[], Awaitable[Any]] | None]] = [
            ("api", self._server.stop if self._server else None),
            ("alerts", self.alerts.stop if self.alerts else None),
            ("plugins", self.supervisor.stop if self.supervisor else None),
            ("writer", self.writer.close if self.writer else None),
            ("database", self.database.close if self.database else None),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                await step()
            except Exception:
                log.exception("stopping %s failed", name)
        self._server = None

    def _on_written(self, rows: Sequence[Row]) -> None:
        """Feed committed metrics to the WebSocket stream and to export plugins."""
        if self.context is not None:
            # One stream item per batch (latest value per series), so a 50,000-row batch cannot
            # overflow a client's queue; see api/stream.py.
            publish_written(self.context.stream, rows)
        if self.supervisor is not None and self._has_exporters(self.supervisor):
            batch = [Metric(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]) if r[5] else None) for r in rows]
            task = asyncio.ensure_future(self.supervisor.export(batch))
            task.add_done_callback(_log_failure)

    async def _price_new_data(self, conn: asyncpg.Connection) -> None:
        """Run the cost job; when it priced something, stream the new summary to `costs` subscribers."""
        assert self._cost_job is not None and self.context is not None
        result = await self._cost_job.run_once(conn)
        if result.rows and self.context.stream.client_count:
            self.context.stream.publish("costs", await cost_service.summary(conn, self.settings))

    @staticmethod
    def _has_exporters(supervisor: Supervisor) -> bool:
        # Checked before building Metric objects, so a core without export plugins pays nothing per batch.
        return any(r.manifest.has("metrics.export") for r in supervisor.runners.values())

    async def _every(self, interval: float, job: Callable[[Any], Awaitable[Any]]) -> None:
        assert self.database is not None
        while True:
            try:
                async with self.database.pool.acquire() as conn:
                    await job(conn)
            except Exception:  # a background job must outlive a failed pass (e.g. a database restart)
                log.exception("background job failed; retrying in %.0f s", interval)
            await asyncio.sleep(interval)


class DeviceDiscovery:
    """Registers the devices plugins discover (names, types, rooms): after each start of a plugin with
    device discovery, and again whenever it says its devices changed. One pass per plugin at a time; a
    request during a pass makes one more pass after it, so a burst of changes costs at most two."""

    def __init__(self, supervisor: Supervisor, registry: DeviceRegistry) -> None:
        self.supervisor = supervisor
        self.registry = registry
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def request(self, plugin_id: str) -> None:
        if plugin_id in self._running:
            self._again.add(plugin_id)
            return
        self._running[plugin_id] = asyncio.create_task(self._passes(plugin_id), name=f"discovery-{plugin_id}")

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _passes(self, plugin_id: str) -> None:
        try:
            while True:
                self._again.discard(plugin_id)
                await self._once(plugin_id)
                if plugin_id not in self._again:
                    return
        finally:
            self._running.pop(plugin_id, None)

    async def _once(self, plugin_id: str) -> None:
        runner = self.supervisor.runners.get(plugin_id)
        if runner is None:
            return
        # Asked on the plugin's "ready": it answers requests once the runner counts it as running.
        for _ in range(DISCOVERY_WAIT_STEPS):
            if runner.state == "running":
                break
            await asyncio.sleep(0.5)
        try:
            found = await self.supervisor.discover_devices(plugin_id)
            count = await self.registry.register_discovered(plugin_id, found)
        except Exception as exc:  # a plugin's failure is its own; the core carries on
            log.warning("device discovery of plugin %s failed: %s", plugin_id, exc)
            return
        log.info("plugin %s discovered %d device(s)", plugin_id, count)


def cost_source(settings: Settings) -> CostSource:
    """The cost engine's answers the alert engine reads (they are siblings: it cannot import costs)."""

    async def summary(conn: asyncpg.Connection, now: dt.datetime) -> dict[str, Any]:
        return await cost_service.summary(conn, settings, now=now)

    async def history(
        conn: asyncpg.Connection, device_id: str | None, start: dt.datetime, end: dt.datetime
    ) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = (await cost_service.history(conn, device_id, start, end, "hour"))[
            "points"
        ]
        return points

    async def tariff(conn: asyncpg.Connection, now: dt.datetime) -> TariffView | None:
        tariff_id = await tariff_store.active_tariff_id(conn)
        if tariff_id is None:
            return None
        versions = await tariff_store.versions_of(conn, tariff_id)
        current = versions[-1].tariff
        for version in versions:  # the version in force at ``now``
            if version.effective_from is None or version.effective_from <= now:
                current = version.tariff
        chosen = current
        return TariffView(zone=chosen.zone, currency=chosen.currency, cycle=lambda t: cycle_bounds(chosen, t))

    return CostSource(summary=summary, history=history, tariff=tariff)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("export to plugins failed", exc_info=task.exception())
