"""One plugin's life: its process, frames, schedule, health, limits and restarts.

The runner owns exactly one OS process at a time. Every way a process can go wrong ends in one place
(``_end``) with a cause; the life loop then restarts it after a backoff that starts small (the first
restart comes within ``restart_initial`` seconds) and doubles for a crash loop up to ``restart_max``.
A process that ran for ``stable_after`` seconds before dying counts as healthy again.

A cost plugin (capability ``costs.collect``) is polled with ``collect_costs`` every ``poll_interval``;
its report goes to the cost sink and the plugin is then told ``costs_stored`` (ok or not, with the
reason), so it stops re-fetching a closed day only once that day is stored. Its health report is
refreshed after every poll (and every ``health_interval``), since that is where it says what it did.

A pushing plugin (capability ``metrics.push``) sends ``push`` frames whenever it likes (at most
``MAX_UNACKED_PUSHES`` unanswered); each is handed to the sink exactly as collected metrics (waiting
while the write queue is full) and answered with a ``push_ack`` once the sink took it. The pushes of one
plugin are submitted concurrently so they can share the writer's group commits; the frame reader never
waits for the sink, so heartbeats keep arriving while a push is held up by backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aetherlens
from aetherlens.errors import PluginError, UnavailableError
from aetherlens.plugins.discovery import DiscoveredPlugin
from aetherlens.plugins.limits import CpuWatch, read_cpu_seconds, read_rss_bytes
from aetherlens.plugins.manifest import Manifest
from aetherlens.plugins.protocol import (
    EXIT_CONFIG,
    EXIT_LOAD,
    EXIT_MEMORY,
    MAX_UNACKED_PUSHES,
    ProtocolError,
    encode,
    read_frame,
)
from aetherlens.plugins.sink import CostSink, MetricSink

log = logging.getLogger("aetherlens.plugins")

FIRST_POLL_SPREAD = 5.0  # seconds: the most a plugin's first poll waits after its process started

_CORE_ROOT = str(Path(aetherlens.__file__).resolve().parent.parent)


@dataclass(slots=True)
class SupervisorOptions:
    """Timings of the supervisor; the defaults suit production, tests shrink them."""

    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 15.0
    start_timeout: float = 30.0
    stop_timeout: float = 5.0
    restart_initial: float = 1.0
    restart_max: float = 300.0
    stable_after: float = 60.0
    cpu_window: float = 30.0
    monitor_interval: float = 1.0
    jitter: float = 0.1
    export_queue_batches: int = 100
    health_interval: float = 10.0  # how often a pushing plugin's get_health() is copied into its status
    memory_limit_mb: int | None = None  # None: settings.plugin_options.memory_limit_mb
    cpu_limit_percent: float | None = None


class PluginUnavailable(UnavailableError, PluginError):
    # UnavailableError first: the plugin is fine, it is just not running right now (retry later).
    code = "plugin_unavailable"


# Cloud SDKs read their credential chain from the environment (and the home folder's config files):
# a plugin whose manifest asks for one of these permissions gets those variables, no other plugin does.
CREDENTIAL_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "aws_credentials": ("AWS_",),
    "azure_credentials": ("AZURE_", "IDENTITY_", "MSI_"),
}


def child_environment(permissions: Sequence[str] = ()) -> dict[str, str]:
    """The whole environment a plugin gets: no AETHERLENS_* settings, no database URL, no secrets,
    except the add-on's ``SUPERVISOR_TOKEN`` for a plugin whose manifest asks for ``supervisor`` and a
    cloud SDK's own variables (``AWS_*``, ``AZURE_*``, with ``HOME`` for its config files) for one that
    asks for ``aws_credentials`` / ``azure_credentials``."""
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONPATH": _CORE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        # glibc reserves 64 MiB of address space per thread arena; with RLIMIT_AS that would starve a
        # plugin that merely resolves a host name on a worker thread.
        "MALLOC_ARENA_MAX": "2",
    }
    for name in ("TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    if "supervisor" in permissions and "SUPERVISOR_TOKEN" in os.environ:
        env["SUPERVISOR_TOKEN"] = os.environ["SUPERVISOR_TOKEN"]
    prefixes = tuple(p for perm in permissions for p in CREDENTIAL_ENVIRONMENT.get(perm, ()))
    if prefixes:
        env.update({k: v for k, v in os.environ.items() if k.startswith(prefixes)})
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
    return env


class PluginRunner:
    def __init__(
        self,
        plugin: DiscoveredPlugin,
        config: dict[str, Any],
        poll_interval: float,
        sink: MetricSink,
        options: SupervisorOptions,
        memory_limit_mb: int,
        cpu_limit_percent: float,
        *,
        instance_id: str | None = None,
        state_dir: Path | None = None,
        cost_sink: CostSink | None = None,
    ) -> None:
        assert plugin.manifest is not None and plugin.entry is not None
        self.plugin = plugin
        self.manifest: Manifest = plugin.manifest
        # One manifest may run as several instances (plugins.<instance>.plugin: <manifest id>); the
        # instance id names the process, its log lines, its status row and the devices it registers.
        self.instance_id = instance_id or self.manifest.id
        self.state_dir = state_dir
        self.config = config
        self.poll_interval = poll_interval
        self.sink = sink
        self.cost_sink = cost_sink
        self.options = options
        self.memory_limit_mb = memory_limit_mb
        self.cpu_limit_percent = cpu_limit_percent

        self.state = "stopped"
        self.pid: int | None = None
        self.started_at: datetime | None = None
        self.last_success: datetime | None = None
        self.last_heartbeat: datetime | None = None
        self.last_error: str | None = None
        self.last_exit: dict[str, Any] | None = None
        self.collections = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.crashes = 0
        self.restarts = 0
        self.consecutive_failures = 0
        self.metrics_emitted = 0
        self.metrics_rejected = 0
        self.exports = 0
        self.exports_dropped = 0
        self.pushes = 0
        self.cost_records = 0
        self.cost_rejected = 0
        self.cost_polls = 0  # cost polls completed: report stored (or not), plugin told, health fresh
        self.next_restart: datetime | None = None
        self.cpu_percent: float | None = None
        self.rss_bytes: int | None = None
        self.health: dict[str, Any] = {}
        # Called with the instance id when its devices may have changed: after each start of a plugin
        # with device discovery, and whenever the plugin says so (a devices_changed frame).
        self.on_devices_changed: Callable[[str], None] | None = None

        self._life: asyncio.Task[None] | None = None
        self._stopping = False
        self._restart_now = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._ended: asyncio.Future[tuple[str, str]] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._write_lock = asyncio.Lock()
        self._last_frame = 0.0
        self._exports: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(options.export_queue_batches)
        self._intent: tuple[str, str] | None = None
        self._pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_UNACKED_PUSHES)

    @property
    def id(self) -> str:
        return self.instance_id

    # -- public ----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._life is None or self._life.done():
            self._stopping = False
            self._life = asyncio.create_task(self._live(), name=f"plugin-{self.id}")

    async def stop(self) -> None:
        self._stopping = True
        self._restart_now.set()
        if self._ended is not None and not self._ended.done():
            await self._shutdown_gracefully()
        if self._life is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._life
        self.state = "stopped"
        self.pid = None

    async def restart(self) -> None:
        """Replace the process now (also cuts a backoff wait short); the failure count is kept."""
        if self._ended is not None and not self._ended.done():
            await self._shutdown_gracefully(cause=("restart_requested", "restart requested"))
        self._restart_now.set()

    def enqueue_export(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._exports.put_nowait(batch)
        except asyncio.QueueFull:
            # Export is a copy of data already stored: shedding the oldest batch keeps the core moving.
            with contextlib.suppress(asyncio.QueueEmpty):
                self._exports.get_nowait()
                self.exports_dropped += 1
            self._exports.put_nowait(batch)

    async def request(self, kind: str, time_limit: float | None = None, **fields: Any) -> Any:
        """Send a request frame and wait for its result; a timeout kills the process (it is hung)."""
        proc, ended = self._proc, self._ended
        if proc is None or ended is None or ended.done() or self.state != "running":
            raise PluginUnavailable(f"plugin '{self.id}' is not running (state {self.state})")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send({"type": kind, "id": request_id, **fields})
            limit = self.manifest.timeout if time_limit is None else time_limit
            try:
                return await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:
                self._end("timeout", f"{kind} took longer than {limit:g} s; process killed")
                raise PluginUnavailable(f"plugin '{self.id}': {kind} timed out after {limit:g} s") from None
        finally:
            self._pending.pop(request_id, None)

    def status(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "plugin": self.manifest.id,
            "name": self.manifest.name,
            "version": self.manifest.version,
            "source": self.plugin.source,
            "verification": self.plugin.verification.status,
            "capabilities": list(self.manifest.capabilities),
            "enabled": True,
            "state": self.state,
            "pid": self.pid,
            "poll_interval": self.poll_interval,
            "started_at": iso(self.started_at),
            "last_success": iso(self.last_success),
            "last_heartbeat": iso(self.last_heartbeat),
            "last_error": self.last_error,
            "last_exit": self.last_exit,
            "collections": self.collections,
            "errors": self.errors,
            "consecutive_errors": self.consecutive_errors,
            "crashes": self.crashes,
            "restarts": self.restarts,
            "next_restart": iso(self.next_restart),
            "metrics_emitted": self.metrics_emitted,
            "metrics_rejected": self.metrics_rejected,
            "pushes": self.pushes,
            "cost_records": self.cost_records,
            "cost_rejected": self.cost_rejected,
            "exports": self.exports,
            "exports_dropped": self.exports_dropped,
            "cpu_percent": None if self.cpu_percent is None else round(self.cpu_percent, 1),
            "rss_bytes": self.rss_bytes,
            "health": self.health,
        }

    # -- the life loop ---------------------------------------------------------------------------------
    async def _live(self) -> None:
        while not self._stopping:
            began = time.monotonic()
            try:
                cause, detail = await self._run_process()
            except Exception as exc:  # never let one plugin's bad luck end its supervision
                log.exception("plugin %s: supervision error", self.id, extra={"plugin": self.id})
                cause, detail = "supervisor_error", f"{type(exc).__name__}: {exc}"
            if self._stopping:
                break
            if cause == "restart_requested":
                self.restarts += 1
                continue
            self.crashes += 1
            now = time.time()
            self.last_exit = {
                "cause": cause,
                "detail": detail,
                "time": datetime.fromtimestamp(now, UTC).isoformat(),
                "time_epoch": now,
            }
            log.warning("plugin %s stopped: %s (%s)", self.id, cause, detail, extra={"plugin": self.id})
            if cause in ("config_error", "load_error"):
                # Restarting cannot fix a bad config or missing code: wait for reconfigure/restart.
                self.state = "failed"
                self._restart_now.clear()
                await self._restart_now.wait()
                if self._stopping:
                    break
                self.restarts += 1
                continue
            if time.monotonic() - began >= self.options.stable_after:
                self.consecutive_failures = 0
            self.consecutive_failures += 1
            delay = min(
                self.options.restart_max, self.options.restart_initial * 2 ** (self.consecutive_failures - 1)
            )
            self.state = "backoff"
            self.next_restart = datetime.fromtimestamp(now + delay, UTC)
            self._restart_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._restart_now.wait(), delay)
            self.next_restart = None
            if not self._stopping:
                self.restarts += 1
        self.state = "stopped"

    async def _run_process(self) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._ready = loop.create_future()
        self._intent = None
        self._pushes = asyncio.Queue(MAX_UNACKED_PUSHES)  # pushes of a dead process die with it
        self.state = "starting"
        memory = self.memory_limit_mb
        args = [
            sys.executable,
            "-m",
            "aetherlens.plugins.host",
            "--plugin-id",
            self.id,
            "--entry",
            str(self.plugin.entry),
            "--memory-limit-mb",
            str(memory),
            "--heartbeat",
            str(self.options.heartbeat_interval),
            "--log-level",
            logging.getLevelName(log.getEffectiveLevel()),
        ]
        for path in self.plugin.extra_paths:
            args += ["--path", str(path)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(self.manifest.permissions),
                cwd=str(self.plugin.directory),
                start_new_session=True,  # its own process group, so a kill takes its children too
                limit=2**20,
            )
        except OSError as exc:
            return "spawn_failed", str(exc)
        self._proc = proc
        self.pid = proc.pid
        self.started_at = datetime.now(UTC)
        self._last_frame = time.monotonic()
        assert proc.stdout is not None and proc.stderr is not None
        helpers = [
            asyncio.create_task(self._read_frames(proc.stdout)),
            asyncio.create_task(self._forward_stderr(proc.stderr)),
            asyncio.create_task(self._monitor(proc.pid)),
        ]
        try:
            configure: dict[str, Any] = {
                "type": "configure",
                "config": self.config,
                "poll_interval": self.poll_interval,
                "push": self.manifest.has("metrics.push"),
            }
            if self.state_dir is not None:
                configure["state_dir"] = str(self.state_dir)
            await self._send(configure)
            waiting: list[asyncio.Future[Any]] = [self._ready, self._ended]
            done, _ = await asyncio.wait(
                waiting,
                timeout=self.options.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                self._end("start_timeout", f"no 'ready' within {self.options.start_timeout:g} s")
            if not self._ended.done():
                self.state = "running"
                log.info("plugin %s running (pid %s)", self.id, proc.pid, extra={"plugin": self.id})
                if self.manifest.has("metrics.collect"):
                    helpers.append(asyncio.create_task(self._schedule(self._poll_metrics)))
                if self.manifest.has("costs.collect"):
                    helpers.append(asyncio.create_task(self._schedule(self._collect_costs_once)))
                if self.manifest.has("metrics.export"):
                    helpers.append(asyncio.create_task(self._forward_exports()))
                if self.manifest.has("metrics.push"):
                    helpers.append(asyncio.create_task(self._take_pushes()))
                if self.manifest.has("metrics.push") or self.manifest.has("costs.collect"):
                    helpers.append(asyncio.create_task(self._refresh_health()))
            cause, detail = await asyncio.shield(self._ended)
        except asyncio.CancelledError:
            self._end("stopped", "supervisor cancelled")
            raise
        finally:
            for task in helpers:
                task.cancel()
            await self._reap(proc)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(PluginUnavailable(f"plugin '{self.id}' process ended"))
            self._pending.clear()
            self._proc = None
        return self._classify(cause, detail, proc.returncode)

    def _classify(self, cause: str, detail: str, code: int | None) -> tuple[str, str]:
        if cause != "exited":
            return cause, detail
        if code == EXIT_MEMORY:
            return "memory_limit", f"allocation failed under the {self.memory_limit_mb} MiB limit (RLIMIT_AS)"
        if code == EXIT_CONFIG:
            return "config_error", detail
        if code == EXIT_LOAD:
            return "load_error", detail or "the plugin code could not be imported"
        if code is not None and code < 0:
            return "crashed", f"killed by signal {signal.Signals(-code).name}"
        return "crashed", f"exited with code {code}"

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def _end(self, cause: str, detail: str) -> None:
        """Record why the process must go and kill it; the first cause wins."""
        ended, proc = self._ended, self._proc
        if ended is None or ended.done():
            return
        if cause == "exited" and self._intent is not None:
            cause, detail = self._intent  # it exited because we asked it to
        ended.set_result((cause, detail))
        if cause not in ("exited", "stopped") and proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _shutdown_gracefully(self, cause: tuple[str, str] = ("stopped", "stopped")) -> None:
        proc, ended = self._proc, self._ended
        if proc is None or ended is None or ended.done():
            return
        self._intent = cause
        with contextlib.suppress(ConnectionError, RuntimeError, PluginError):
            await self._send({"type": "shutdown"})
        try:
            await asyncio.wait_for(proc.wait(), self.options.stop_timeout)
        except TimeoutError:
            log.warning("plugin %s ignored shutdown; killing it", self.id, extra={"plugin": self.id})
        # Only this process's run: once it exited, the life loop may already have started the next
        # process (a requested restart), whose run must not be ended with this one's cause.
        if self._ended is ended:
            self._end(*cause)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise PluginUnavailable(f"plugin '{self.id}' has no process")
        async with self._write_lock:
            proc.stdin.write(encode(message))
            try:
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise PluginUnavailable(f"plugin '{self.id}': pipe closed ({exc})") from None

    # -- helpers running beside the process ------------------------------------------------------------
    async def _read_frames(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(stdout)
                if message is None:
                    self._end("exited", "")
                    return
                self._last_frame = time.monotonic()
                self._dispatch(message)
        except ProtocolError as exc:
            self._end("protocol_error", str(exc))

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "heartbeat":
            self.last_heartbeat = datetime.now(UTC)
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
            self._devices_changed()  # a new process: its devices may have changed while it was down
        elif kind == "devices_changed":
            self._devices_changed()
        elif kind == "result":
            future = self._pending.get(message.get("id", -1))
            if future is not None and not future.done():
                if message.get("ok"):
                    future.set_result(message.get("data"))
                else:
                    future.set_exception(PluginError(f"plugin '{self.id}': {message.get('error')}"))
        elif kind == "push":
            try:
                self._pushes.put_nowait(message)
            except asyncio.QueueFull:
                self._end("protocol_error", f"more than {MAX_UNACKED_PUSHES} unacknowledged pushes in flight")
        elif kind == "run_ended":
            self.last_error = f"run() ended: {message.get('error')}"
            self._end("run_ended", self.last_error)
        elif kind == "config_error":
            problems = "; ".join(str(p) for p in message.get("problems", []))
            self.last_error = f"plugin '{self.id}': invalid config: {problems}"
            self._end("config_error", self.last_error)
        elif kind == "load_error":
            self.last_error = str(message.get("error", "load failed"))
            self._end("load_error", self.last_error)
        elif kind != "bye":
            self._end("protocol_error", f"unexpected frame type '{kind}'")

    def _devices_changed(self) -> None:
        if self.on_devices_changed is not None and self.manifest.has("device.discover"):
            self.on_devices_changed(self.id)

    async def _forward_stderr(self, stderr: asyncio.StreamReader) -> None:
        plugin_log = logging.getLogger(f"aetherlens.plugin.{self.id}")
        level = logging.INFO
        while True:
            try:
                line = await stderr.readline()
            except ValueError:  # a line longer than the buffer: drop the rest of it
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if not text:
                continue
            # Continuation lines (indented traceback frames) keep the level of the line they continue.
            if not text[0].isspace():
                head = text.split(" ", 1)[0]
                level = (
                    logging.WARNING
                    if head in ("WARNING", "ERROR", "CRITICAL", "Traceback")
                    else (logging.INFO)
                )
                if head.endswith(("Error:", "Exception:")):
                    level = logging.WARNING
            plugin_log.log(level, "%s", text, extra={"plugin": self.id})

    async def _monitor(self, pid: int) -> None:
        watch = CpuWatch(self.options.cpu_window)
        limit = self.cpu_limit_percent
        while True:
            await asyncio.sleep(self.options.monitor_interval)
            cpu = read_cpu_seconds(pid)
            if cpu is None:
                return
            watch.add(time.monotonic(), cpu)
            self.cpu_percent = watch.percent()
            self.rss_bytes = read_rss_bytes(pid)
            if watch.exceeded(limit):
                self._end(
                    "cpu_limit",
                    f"used {self.cpu_percent:.0f}% CPU over {watch.window:g} s (limit {limit:g}%)",
                )
                return
            silent = time.monotonic() - self._last_frame
            if self.state == "running" and silent > self.options.heartbeat_timeout:
                self._end("heartbeat_lost", f"no frame for {silent:.1f} s")
                return

    async def _schedule(self, poll: Callable[[], Awaitable[None]]) -> None:
        jitter = self.options.jitter
        # Spread the first polls of many plugins a little, but never by minutes: a cloud plugin polled
        # hourly would otherwise show nothing for up to 6 minutes after it was enabled.
        first = min(jitter * self.poll_interval, FIRST_POLL_SPREAD)
        await asyncio.sleep(random.uniform(0, first))  # noqa: S311 - spreading, not security
        while True:
            began = time.monotonic()
            await poll()
            pause = self.poll_interval * (1 + random.uniform(-jitter, jitter))  # noqa: S311
            # Runs never overlap: the next one is scheduled only after this one finished.
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - began)))

    async def _poll_metrics(self) -> None:
        # A polled plugin's own health (per-device last success / last error) changes with its polls:
        # copy it into the status after each one.
        await self._collect_once()
        await self._update_health()

    async def _poll(self, kind: str) -> tuple[str, Any]:
        """One poll request (``collect`` / ``collect_costs``), counted: ("ok", its answer), ("failed",
        None) when the plugin raised, ("gone", None) when its process is not there to ask."""
        try:
            answer = await self.request(kind)
        except PluginUnavailable:
            return "gone", None
        except PluginError as exc:
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = exc.message
            return "failed", None
        self.collections += 1
        self.consecutive_errors = 0
        self.last_success = datetime.now(UTC)
        return "ok", answer

    async def _collect_once(self) -> None:
        outcome, items = await self._poll("collect")
        if outcome != "ok":
            return
        batch: Sequence[dict[str, Any]] = items if isinstance(items, list) else []
        if batch:
            try:
                result = await self.sink.submit(batch, wait=True, source=self.id)
            except Exception as exc:
                # The sink's trouble is not the plugin's: count it and keep the schedule alive.
                self.errors += 1
                self.last_error = f"submit failed: {exc}"
                log.exception("plugin %s: submit failed", self.id, extra={"plugin": self.id})
                return
            self.metrics_emitted += result.accepted
            self.metrics_rejected += len(result.rejected)
            if result.rejected:
                first = result.rejected[0]
                self.last_error = (
                    f"{len(result.rejected)} metric(s) rejected, e.g. #{first.index}: {first.reason}"
                )

    async def _collect_costs_once(self) -> None:
        """One cost poll: report -> cost sink -> ``costs_stored`` -> fresh health."""
        outcome, report = await self._poll("collect_costs")
        if outcome == "gone":
            return
        if outcome == "ok":
            ok, error = await self._store_costs(report)
            with contextlib.suppress(PluginUnavailable):
                try:
                    await self.request("costs_stored", ok=ok, error=error)
                except PluginError as exc:
                    self.errors += 1
                    self.last_error = exc.message
        await self._update_health()  # a failed poll too: the plugin's health says why
        self.cost_polls += 1

    async def _store_costs(self, report: Any) -> tuple[bool, str | None]:
        if self.cost_sink is None:
            self.errors += 1
            self.last_error = "no cost store in this core: the report was dropped"
            return False, self.last_error
        try:
            stored = await self.cost_sink.store_costs(report, source=self.id)
        except Exception as exc:
            # The store's trouble is not the plugin's: it hears ok=False and fetches those days again.
            self.errors += 1
            reason = str(exc) or type(exc).__name__
            self.last_error = f"storing costs failed: {reason}"
            log.warning("plugin %s: storing costs failed: %s", self.id, reason, extra={"plugin": self.id})
            return False, self.last_error
        self.cost_records += stored.records
        self.cost_rejected += len(stored.rejected)
        if stored.rejected:
            self.last_error = f"{len(stored.rejected)} cost item(s) rejected, e.g. {stored.rejected[0]}"
            return True, self.last_error
        return True, None

    async def _update_health(self) -> None:
        try:
            health = await self.request("health")
        except PluginUnavailable:
            return
        except PluginError as exc:
            self.last_error = exc.message
        else:
            self.health = dict(health) if isinstance(health, dict) else {}

    async def _take_pushes(self) -> None:
        """Submit each pushed batch (concurrently, at most the window) and acknowledge it when taken."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await self._pushes.get()
                task = asyncio.create_task(self._take_push(message))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    async def _take_push(self, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        items = message.get("metrics")
        batch: list[dict[str, Any]] = items if isinstance(items, list) else []
        try:
            # Waits while the write queue is full: the ack waits with it, and so does the plugin.
            result = await self.sink.submit(batch, wait=True, source=self.id)
        except Exception as exc:
            # Not taken, so not acknowledged: the plugin's emit raises PushError and it may resend.
            self.errors += 1
            self.last_error = f"submit failed: {exc}"
            log.exception("plugin %s: submit of a push failed", self.id, extra={"plugin": self.id})
            ack: dict[str, Any] = {"type": "push_ack", "seq": seq, "ok": False, "error": str(exc)}
        else:
            self.pushes += 1
            self.metrics_emitted += result.accepted
            self.metrics_rejected += len(result.rejected)
            self.last_success = datetime.now(UTC)
            if result.rejected:
                first = result.rejected[0]
                self.last_error = (
                    f"{len(result.rejected)} metric(s) rejected, e.g. #{first.index}: {first.reason}"
                )
            ack = {
                "type": "push_ack",
                "seq": seq,
                "ok": True,
                "accepted": result.accepted,
                "rejected": [{"index": r.index, "reason": r.reason} for r in result.rejected],
            }
        with contextlib.suppress(PluginUnavailable):  # the process is gone: nobody to tell
            await self._send(ack)

    async def _refresh_health(self) -> None:
        # A pushing plugin has no polls whose results show it is well: its own health report (counts
        # of messages, malformed payloads, connection state) is what `plugins status` shows instead. A
        # cost plugin's report (requests left today, last success) changes between its rare polls too.
        while self.state == "running":
            await self._update_health()
            await asyncio.sleep(self.options.health_interval)

    async def _forward_exports(self) -> None:
        while True:
            batch = await self._exports.get()
            try:
                await self.request("export", metrics=batch)
                self.exports += 1
            except PluginUnavailable:
                return
            except PluginError as exc:
                self.errors += 1
                self.last_error = exc.message
            except Exception as exc:  # a batch the frame encoder cannot carry, and the like
                self.errors += 1
                self.last_error = f"export failed: {exc}"
