"""Where the supervisor hands what plugins collect: metrics to a ``MetricSink``, cost reports to a
``CostSink``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from aetherlens.models import CostsStored, Metric, SubmitResult


@runtime_checkable
class MetricSink(Protocol):
    """``aetherlens.collect.Collector`` implements this; so does the test kit's in-memory sink."""

    async def submit(
        self, batch: Sequence[Metric | dict[str, Any]], *, wait: bool = True, source: str = "plugin"
    ) -> SubmitResult:
        """``source`` is the submitting plugin's id: devices it auto-registers record where they came from."""
        ...


@runtime_checkable
class CostSink(Protocol):
    """``aetherlens.collect.cloud_costs.CostWriter`` implements this (upserting ``cloud_costs``); so does
    the test kit's in-memory ``MemoryCostSink``."""

    async def store_costs(self, report: Mapping[str, Any], *, source: str) -> CostsStored:
        """Store one ``CostReport.to_wire()`` of plugin instance ``source`` in one transaction.

        Raises when nothing could be stored (the database is down): the runner then tells the plugin
        ``costs_stored(ok=False)`` so it fetches those days again. Malformed items are left out and named
        in the result's ``rejected``; the rest is stored."""
        ...
