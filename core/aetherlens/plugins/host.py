"""The plugin process: ``python -m aetherlens.plugins.host --plugin-id ID --entry module:Class``.

It keeps the real stdout for frames only (everything else that writes to fd 1 lands on stderr), limits
its own address space (RLIMIT_AS, soft and hard, so the plugin cannot raise it back) before importing
any plugin code, then serves the supervisor's requests until told to shut down or until stdin closes
(the supervisor is gone). A MemoryError anywhere ends the process with ``EXIT_MEMORY`` so the
supervisor can name the cause.

With capability ``metrics.push`` (the configure frame says ``"push": true``) the host also runs
``plugin.run(emit)`` beside the heartbeat: each ``emit`` sends a ``push`` frame with a sequence number
and waits for the supervisor's ``push_ack`` of that number; at most ``MAX_UNACKED_PUSHES`` pushes are
on the wire at once, so a core that is slow to take them slows the plugin down. ``run`` returning or
raising is reported as a ``run_ended`` frame, after which the supervisor restarts the process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from aetherlens.plugins.protocol import (
    EXIT_CONFIG,
    EXIT_LOAD,
    EXIT_MEMORY,
    MAX_UNACKED_PUSHES,
    FdWriter,
    ProtocolError,
    read_frame,
)
from aetherlens.plugins.sdk import BasePlugin, MetricLike, PushError, PushResult, to_wire

log = logging.getLogger("aetherlens.plugin.host")

_protocol_fd: int | None = None


def protocol_fd() -> int:
    """The descriptor frames travel on (for tests that must corrupt the stream on purpose)."""
    assert _protocol_fd is not None
    return _protocol_fd


def _reserve_stdout() -> int:
    # Frames get a private copy of fd 1; fd 1 itself then points at stderr, so a stray print() or a C
    # library writing to stdout cannot corrupt the protocol.
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return fd


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _load_class(entry: str, paths: list[str]) -> type[BasePlugin]:
    for path in reversed(paths):
        sys.path.insert(0, path)
    module_name, _, class_name = entry.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, BasePlugin)):
        raise TypeError(f"{entry} is not a subclass of aetherlens.plugins.sdk.BasePlugin")
    return cls


def _die_of_memory() -> NoReturn:
    try:
        os.write(2, b"plugin host: MemoryError (memory limit reached)\n")
    finally:
        os._exit(EXIT_MEMORY)


class Host:
    def __init__(self, plugin_id: str, writer: FdWriter, heartbeat: float) -> None:
        self.plugin_id = plugin_id
        self.writer = writer
        self.heartbeat = heartbeat
        self.plugin: BasePlugin | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.push = False
        self._seq = 0
        self._acks: dict[int, asyncio.Future[PushResult]] = {}
        self._window = asyncio.Semaphore(MAX_UNACKED_PUSHES)

    def send(self, message: dict[str, Any]) -> None:
        self.writer.send(message)

    async def beat(self) -> None:
        # Runs on the event loop on purpose: a plugin that blocks the loop stops the heartbeat too.
        while True:
            self.send({"type": "heartbeat", "time": time.time()})
            await asyncio.sleep(self.heartbeat)

    async def configure(self, cls: type[BasePlugin], message: dict[str, Any]) -> None:
        config = dict(message.get("config") or {})
        plugin = cls(self.plugin_id, config)
        if message.get("state_dir"):
            plugin.state_dir = Path(str(message["state_dir"]))
        plugin._notify = self.send
        self.push = bool(message.get("push"))
        problems = plugin.validate_config(config)
        if problems:
            self.send({"type": "config_error", "problems": list(problems)})
            sys.stderr.flush()
            os._exit(EXIT_CONFIG)
        await plugin.setup()
        self.plugin = plugin
        self.send({"type": "ready", "pid": os.getpid(), "capabilities": plugin.get_capabilities()})

    async def emit(self, batch: Sequence[MetricLike]) -> PushResult:
        """The ``emit`` a pushing plugin's ``run`` gets: send one batch, wait until the core took it."""
        wire = [to_wire(item) for item in batch]
        if not wire:
            return PushResult(0, [])
        async with self._window:
            self._seq += 1
            seq = self._seq
            future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
            self._acks[seq] = future
            try:
                try:
                    self.send({"type": "push", "seq": seq, "metrics": wire})
                except (ProtocolError, TypeError) as exc:
                    raise PushError(f"cannot send the batch: {exc}") from None
                return await future
            finally:
                self._acks.pop(seq, None)

    def acknowledge(self, message: dict[str, Any]) -> None:
        future = self._acks.get(int(message.get("seq", -1)))
        if future is None or future.done():
            return
        if message.get("ok", True):
            rejected = [dict(r) for r in message.get("rejected") or []]
            future.set_result(PushResult(int(message.get("accepted", 0)), rejected))
        else:
            future.set_exception(PushError(str(message.get("error") or "the core refused the batch")))

    async def pushing(self) -> None:
        plugin = self.plugin
        assert plugin is not None
        try:
            await plugin.run(self.emit)
        except asyncio.CancelledError:
            raise
        except MemoryError:
            _die_of_memory()
        except Exception as exc:
            log.error("run() failed: %s", exc, exc_info=True)
            self.send({"type": "run_ended", "error": f"{type(exc).__name__}: {exc}"})
            return
        self.send({"type": "run_ended", "error": "run() returned"})

    async def handle(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            data = await self.dispatch(message)
        except MemoryError:
            _die_of_memory()
        except Exception as exc:
            log.warning("%s failed: %s", message.get("type"), exc, exc_info=True)
            self.send(
                {"type": "result", "id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            )
            return
        try:
            self.send({"type": "result", "id": request_id, "ok": True, "data": data})
        except MemoryError:
            _die_of_memory()
        except (ProtocolError, TypeError) as exc:
            # Too big or not serialisable: say so instead of leaving the request to time out.
            self.send(
                {"type": "result", "id": request_id, "ok": False, "error": f"cannot send the result: {exc}"}
            )

    async def dispatch(self, message: dict[str, Any]) -> Any:
        plugin = self.plugin
        assert plugin is not None
        kind = message["type"]
        if kind == "collect":
            items = await plugin.collect_metrics()
            plugin._collections += 1
            return [to_wire(item) for item in items]
        if kind == "collect_costs":
            report = await plugin.collect_costs()
            plugin._collections += 1
            return report.to_wire()
        if kind == "costs_stored":
            error = message.get("error")
            await plugin.costs_stored(bool(message.get("ok")), None if error is None else str(error))
            return None
        if kind == "export":
            await plugin.export_metrics(list(message.get("metrics") or []))
            return None
        if kind == "discover":
            return await plugin.discover_devices()
        if kind == "control":
            return await plugin.control_device(str(message["device_id"]), str(message["action"]))
        if kind == "health":
            return await plugin.get_health()
        raise ValueError(f"unknown request type '{kind}'")

    async def run(self, cls: type[BasePlugin]) -> int:
        loop = asyncio.get_running_loop()

        def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # A MemoryError in any task or callback is the memory limit, wherever it struck.
            if isinstance(context.get("exception"), MemoryError):
                _die_of_memory()
            loop.default_exception_handler(context)

        loop.set_exception_handler(on_loop_error)
        reader = asyncio.StreamReader(limit=2**20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        first = await read_frame(reader)
        if first is None or first.get("type") != "configure":
            raise ProtocolError("the first frame must be 'configure'")
        beat = asyncio.create_task(self.beat())
        await self.configure(cls, first)
        if self.push:
            pusher = asyncio.create_task(self.pushing())
            self.tasks.add(pusher)
            pusher.add_done_callback(self.tasks.discard)
        while True:
            message = await read_frame(reader)
            if message is None:  # the supervisor went away: nothing left to serve
                break
            if message["type"] == "shutdown":
                break
            if message["type"] == "push_ack":
                self.acknowledge(message)
                continue
            task = asyncio.create_task(self.handle(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        beat.cancel()
        for task in list(self.tasks):
            task.cancel()
        if self.plugin is not None:
            try:
                await asyncio.wait_for(self.plugin.teardown(), timeout=5)
            except Exception:
                log.warning("teardown failed", exc_info=True)
        self.send({"type": "bye"})
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aetherlens-plugin-host")
    parser.add_argument("--plugin-id", required=True)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--memory-limit-mb", type=int, default=0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    global _protocol_fd
    _protocol_fd = _reserve_stdout()
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    writer = FdWriter(_protocol_fd)
    _limit_memory(args.memory_limit_mb)
    try:
        cls = _load_class(args.entry, args.path)
    except MemoryError:
        _die_of_memory()
    except Exception:
        traceback.print_exc()
        writer.send({"type": "load_error", "error": traceback.format_exc(limit=3)})
        return EXIT_LOAD
    try:
        return asyncio.run(Host(args.plugin_id, writer, args.heartbeat).run(cls))
    except MemoryError:
        _die_of_memory()
    return 1


if __name__ == "__main__":
    # Run as -m, this module is __main__; make `import aetherlens.plugins.host` find this same instance.
    sys.modules.setdefault("aetherlens.plugins.host", sys.modules[__name__])
    sys.exit(main())
