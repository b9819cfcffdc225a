"""What the API needs from the rest of the core, as one typed dataclass and a few small protocols.

The API sits at the end of the one-way flow: it reads what others produce and hands HTTP ingest to the
collector. Everything it touches arrives through :class:`ApiContext`, so tests can build an app from a
real pool and leave the optional parts (collector, supervisor, writer) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web

from aetherlens.api.stream import StreamHub
from aetherlens.config import Settings
from aetherlens.models import SubmitResult

if TYPE_CHECKING:
    import asyncpg


@runtime_checkable
class CapabilitiesLike(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class CollectorLike(Protocol):
    async def submit(self, batch: Sequence[Any], *, wait: bool = True) -> SubmitResult: ...


class SupervisorLike(Protocol):
    def status(self) -> Sequence[Mapping[str, Any]]: ...

    async def restart(self, plugin_id: str) -> None: ...

    async def reconfigure(self, plugin_id: str, config: dict[str, Any]) -> None: ...


class WriterStatusLike(Protocol):
    """Anything that reports the writer's state; keys used by /health: ``queue_depth``, ``queue_max``,
    ``spool_bytes``, ``spool_max_bytes``, ``database_ok`` (all optional)."""

    def status(self) -> Mapping[str, Any]: ...


class JobStatusLike(Protocol):
    """A background job that reports itself to /health: ``status`` (ok|degraded) and details."""

    def status(self) -> Mapping[str, Any]: ...


class AlertEngineLike(Protocol):
    """The running alert engine, as the API sees it."""

    def status(self) -> Mapping[str, Any]: ...

    def rules_changed(self) -> None: ...

    def transition_recorded(self) -> None: ...

    async def webhook_backlog(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class StaticCapabilities:
    """Capabilities known up front (tests, or a core that probed before building the app)."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass(slots=True)
class ApiContext:
    settings: Settings
    pool: asyncpg.Pool
    capabilities: CapabilitiesLike = field(default_factory=StaticCapabilities)
    collector: CollectorLike | None = None
    writer: WriterStatusLike | None = None
    supervisor: SupervisorLike | None = None
    cost_job: JobStatusLike | None = None
    alert_engine: AlertEngineLike | None = None
    instance_id: str = "unknown"
    version: str = "0.0.0"
    # Broadcast hub of the WebSocket stream; producers call ``ctx.stream.publish(topic, data)``.
    stream: StreamHub = field(default_factory=StreamHub)


CTX_KEY = web.AppKey("aetherlens_ctx", ApiContext)
