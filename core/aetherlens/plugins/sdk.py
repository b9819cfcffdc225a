"""The plugin SDK: derive from ``BasePlugin`` and implement ``collect_metrics()`` (and/or the others).

A plugin runs in its own process (``aetherlens.plugins.host``); it gets only its own configuration,
never touches the database, and returns metrics as dicts (``self.metric(...)`` builds one) or
``aetherlens.models.Metric`` objects. Anything it prints or logs goes to the core log, tagged with the
plugin id.

Two ways to deliver metrics: polled (``collect_metrics()`` every ``poll_interval``, capability
``metrics.collect``) and pushed (``run(emit)``, capability ``metrics.push``): ``run`` lives as long as
the process and calls ``await emit(batch)`` whenever the source has something; ``emit`` returns once
the core's collector has taken the batch, so a full write queue slows the plugin down instead of
losing what it was told was taken.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from aetherlens.models import Metric

MetricLike = Metric | dict[str, Any]


@dataclass(frozen=True)
class PushResult:
    """The core's answer to one ``emit``: how many metrics it took, and why it refused the others."""

    accepted: int
    rejected: list[dict[str, Any]]  # [{"index", "reason"}] as for POST /metrics


class PushError(Exception):
    """The core could not take a pushed batch (nothing of it is acknowledged: send it again later)."""


type Emit = Callable[[Sequence[MetricLike]], Awaitable[PushResult]]


class BasePlugin:
    """Base of every plugin. The host constructs it with the plugin id and its validated config."""

    #: capabilities this class implements; the manifest is the authority, this is a cross-check.
    capabilities: ClassVar[tuple[str, ...]] = ("metrics.collect",)

    def __init__(self, plugin_id: str, config: dict[str, Any]) -> None:
        self.plugin_id = plugin_id
        self.config = config
        #: persistent folder of this plugin *instance* (watermarks, resumable backfill). The host sets
        #: it to ``<data_dir>/plugins/<instance id>/state`` before ``validate_config``; outside a host
        #: (a plain unit test) it is a folder under the system's temp dir, created on first use.
        self.state_dir = pathlib.Path(tempfile.gettempdir()) / "aetherlens-plugin-state" / plugin_id
        self.log = logging.getLogger(f"aetherlens.plugin.{plugin_id}")
        self._started = datetime.now(UTC)
        self._collections = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        """Checks beyond the manifest's JSON Schema; return one sentence per problem (naming the key)."""
        return []

    async def setup(self) -> None:
        """Open clients, sessions, files. Called once per process after the config validated."""

    async def teardown(self) -> None:
        """Close what ``setup`` opened; called on stop, reload and unload (not after a crash)."""

    # -- capabilities ----------------------------------------------------------------------------------
    async def collect_metrics(self) -> Sequence[MetricLike]:
        """Poll the source once; called every ``poll_interval`` seconds, never overlapping itself."""
        return []

    async def run(self, emit: Emit) -> None:
        """Push path (manifest capability ``metrics.push``): long-running; call ``await emit(batch)`` for
        each batch. It returns once the core's collector has taken the batch (so it blocks while the
        write queue is full: backpressure reaches the plugin, nothing acknowledged is dropped) and
        raises ``PushError`` when the core could not take it. Returning or raising counts as a crash:
        the supervisor restarts the process with backoff."""
        raise NotImplementedError(f"plugin '{self.plugin_id}' declares metrics.push but has no run()")

    async def export_metrics(self, metrics: Sequence[dict[str, Any]]) -> None:
        """Receive metrics the core has written (capability ``metrics.export``)."""

    async def discover_devices(self) -> list[dict[str, Any]]:
        """Devices this source knows: dicts with id, name, type (see CONTRACT.md devices)."""
        return []

    async def control_device(self, device_id: str, action: str) -> dict[str, Any]:
        """Switch a device: ``action`` is on, off or toggle; return ``{"state": ...}``."""
        raise NotImplementedError(f"plugin '{self.plugin_id}' cannot control devices")

    def get_capabilities(self) -> list[str]:
        return list(self.capabilities)

    async def get_health(self) -> dict[str, Any]:
        """Free-form health details shown in ``plugins status``; never put secrets here."""
        return {"started": self._started.isoformat(), "collections": self._collections}

    # -- helpers ---------------------------------------------------------------------------------------
    def metric(
        self,
        device_id: str,
        metric_type: str,
        value: float,
        unit: str | None = None,
        time: datetime | float | None = None,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One metric in the ingest shape (time as ISO 8601 with an offset; now when not given)."""
        if time is None:
            when = datetime.now(UTC)
        elif isinstance(time, datetime):
            when = time if time.tzinfo else time.replace(tzinfo=UTC)
        else:
            when = datetime.fromtimestamp(float(time), UTC)
        item: dict[str, Any] = {
            "time": when.isoformat(),
            "device_id": device_id,
            "metric_type": metric_type,
            "value": value,
        }
        if unit is not None:
            item["unit"] = unit
        if tags:
            item["tags"] = tags
        return item


def to_wire(item: MetricLike) -> dict[str, Any]:
    """A metric as it travels in a frame (dicts pass through; Metric objects become the ingest shape)."""
    if isinstance(item, dict):
        return item
    wire: dict[str, Any] = {
        "time": item.time.isoformat(),
        "device_id": item.device_id,
        "metric_type": item.metric_type,
        "value": item.value,
        "unit": item.unit,
    }
    if item.tags:
        wire["tags"] = item.tags
    return wire
