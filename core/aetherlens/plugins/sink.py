"""Where the supervisor hands collected metrics: anything with the collector's ``submit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from aetherlens.models import Metric, SubmitResult


@runtime_checkable
class MetricSink(Protocol):
    """``aetherlens.collect.Collector`` implements this; so does the test kit's in-memory sink."""

    async def submit(
        self, batch: Sequence[Metric | dict[str, Any]], *, wait: bool = True, source: str = "plugin"
    ) -> SubmitResult:
        """``source`` is the submitting plugin's id: devices it auto-registers record where they came from."""
        ...
