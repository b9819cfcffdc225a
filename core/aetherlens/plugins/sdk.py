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

Cloud-cost plugins (capability ``costs.collect``) return ``CostReport``s from ``collect_costs()``
instead of metrics: daily cost records and the budgets configured per account. The core upserts them
into ``cloud_costs`` (re-sending a day updates it) and then calls ``costs_stored(ok)`` so the plugin
learns whether they are safely stored before it stops re-fetching a closed day.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from aetherlens.keyfile import fsync_directory
from aetherlens.models import Metric

MetricLike = Metric | dict[str, Any]


@dataclass(frozen=True)
class PushResult:
    """The core's answer to one ``emit``: how many metrics it took, and why it refused the others."""

    accepted: int
    rejected: list[dict[str, Any]]  # [{"index", "reason"}] as for POST /metrics


class PushError(Exception):
    """The core could not take a pushed batch (nothing of it is acknowledged: send it again later)."""


@dataclass(frozen=True)
class CostRecord:
    """One day of one cloud cost line, as the provider reported it (currency kept as reported).

    ``kind`` is ``actual`` for a day's (possibly still growing) spend and ``forecast`` for a predicted
    day; ``estimated`` marks an actual that is not final yet (today so far, or a day the provider still
    revises). Records are keyed by (day, provider, account, service, resource_group, region, kind):
    sending the same key again replaces its amount."""

    day: date
    provider: str
    amount: Decimal | float | str
    currency: str
    account: str | None = None
    service: str | None = None
    resource_group: str | None = None
    region: str | None = None
    kind: Literal["actual", "forecast"] = "actual"
    estimated: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "provider": self.provider,
            "account": self.account,
            "service": self.service,
            "resource_group": self.resource_group,
            "region": self.region,
            "amount": str(self.amount),  # a string: JSON floats would lose the provider's decimals
            "currency": self.currency,
            "kind": self.kind,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class CostBudget:
    """A monthly budget the user configured for one account (in the account's currency)."""

    provider: str
    account: str
    amount: Decimal | float | str
    currency: str | None = None  # None: the currency the account's records carry

    def to_wire(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "account": self.account,
            "amount": str(self.amount),
            "currency": self.currency,
        }


@dataclass(frozen=True)
class CostReport:
    """What one ``collect_costs()`` returns: records to upsert, and the budgets of the accounts."""

    records: Sequence[CostRecord] = ()
    budgets: Sequence[CostBudget] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "records": [r.to_wire() for r in self.records],
            "budgets": [b.to_wire() for b in self.budgets],
        }


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
        # Set by the host: sends a frame to the core (outside a host, devices_changed() does nothing).
        self._notify: Callable[[dict[str, Any]], None] | None = None

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

    async def collect_costs(self) -> CostReport:
        """Cloud costs (capability ``costs.collect``): called every ``poll_interval`` seconds, never
        overlapping itself; return the records fetched this time (only what is new or may have changed)."""
        return CostReport()

    async def costs_stored(self, ok: bool, error: str | None = None) -> None:
        """Called after the core tried to store the last ``collect_costs()`` report: ``ok`` False means
        nothing of it was stored (the database is down, say), so whatever the plugin meant to stop
        fetching must be fetched again next time."""

    async def export_metrics(self, metrics: Sequence[dict[str, Any]]) -> None:
        """Receive metrics the core has written (capability ``metrics.export``)."""

    async def discover_devices(self) -> list[dict[str, Any]]:
        """Devices this source knows: dicts with id, name, type (see CONTRACT.md devices)."""
        return []

    async def control_device(self, device_id: str, action: str) -> dict[str, Any]:
        """Switch a device: ``action`` is on, off or toggle; return ``{"state": ...}``."""
        raise NotImplementedError(f"plugin '{self.plugin_id}' cannot control devices")

    def devices_changed(self) -> None:
        """Tell the core that the devices this plugin knows changed (one added, renamed, moved to another
        room): the core calls ``discover_devices()`` again and registers what is new, keeping the names
        and rooms a user set. Cheap and safe to call whenever the list may have changed; the core also
        asks once after every start of the process."""
        if self._notify is not None:
            self._notify({"type": "devices_changed"})

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


def write_state_file(path: pathlib.Path, body: Any) -> None:
    """Replace ``path`` (in a plugin's ``state_dir``) with ``body`` as JSON, atomically and durably:
    written and fsynced under a temporary name, renamed, the folder fsynced; after a crash the file is
    the old one or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        json.dump(body, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_directory(path.parent)


async def emit_until_taken(
    emit: Emit, batch: Sequence[MetricLike], log: logging.Logger, pause: float = 1.0
) -> tuple[PushResult, str | None]:
    """``emit`` one batch again and again until the core takes it (a ``PushError`` means it took
    nothing of it, so resending repeats nothing), ``pause`` seconds apart. Returns the core's answer and
    the last refusal (for the plugin's health), or None when the first try was taken."""
    refusal: str | None = None
    while True:
        try:
            return await emit(batch), refusal
        except PushError as exc:
            refusal = f"the core did not take a batch: {exc}"
            log.warning("%s; retrying", refusal)
            await asyncio.sleep(pause)
