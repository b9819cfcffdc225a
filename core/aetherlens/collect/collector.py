"""The collector: the one way in for metrics, from plugins and from HTTP ingest alike.

``submit(batch)`` validates every metric (one reason per refused one, good neighbours kept), converts
values to canonical units, makes sure each device exists (auto-registering unknown ids, or refusing them,
by ``collector.auto_register_devices``) and hands the accepted rows to the writer. It returns when the
writer has acknowledged them: committed to PostgreSQL or fsynced to the spool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from aetherlens.collect.normalize import UnitTable
from aetherlens.collect.registry import DeviceRegistry
from aetherlens.collect.validate import Validator
from aetherlens.config import Settings
from aetherlens.db import ingest_metrics as m
from aetherlens.db.writer import BatchQuarantinedError, Row, Writer
from aetherlens.models import MetricType, Rejection, SubmitResult

log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        writer: Writer,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        extra_metric_types: Iterable[MetricType] = (),
    ) -> None:
        self.writer = writer
        self.settings = settings
        self.units = UnitTable(extra_metric_types)
        self.validator = Validator(
            self.units, settings.collector.max_future_seconds, settings.retention.raw_days
        )
        # The core's one device registry: the API and plugin discovery change devices through it too, so
        # the ids this collector takes as known are always the ones the table has.
        self.registry = DeviceRegistry(pool, auto_register=settings.collector.auto_register_devices)

    async def start(self) -> None:
        """Load the known device ids (tolerates an unreachable database)."""
        await self.registry.load()

    def register_metric_types(self, types: Iterable[MetricType]) -> None:
        """Accept the extra types a plugin's manifest declares (the manifest is their authority)."""
        self.units.add_types(types)

    async def submit(self, batch: Sequence[Any], *, wait: bool = True, source: str = "api") -> SubmitResult:
        """Validate, normalise, enrich and write ``batch`` (``models.Metric`` objects or HTTP-shaped dicts).

        ``source`` (a plugin id, or ``api``) is recorded on devices it registers. With ``wait=False`` a full
        write queue raises ``BackpressureError`` (HTTP answers 503 + Retry-After) instead of waiting; then
        nothing of the batch was taken. Never raises for bad metrics: they come back as rejections (also
        those the database itself refuses, which the writer keeps in its dead-letter file).
        """
        checked = self.validator.check(batch)
        rows, indexes = checked.rows, checked.indexes
        rejected = checked.rejected
        known = self.registry.known
        unknown = {row[1] for row in rows if row[1] not in known} if rows else set()
        if unknown or self.registry.pending_registrations:
            refused = await self.registry.resolve(unknown, source)
            if refused:
                rows, indexes, rejected = _drop_refused(rows, indexes, rejected, refused, checked.categories)
        if rows:
            try:
                await self.writer.submit(rows, wait=wait)
            except BatchQuarantinedError as exc:
                rejected = [*rejected, *(Rejection(index, exc.message) for index in indexes)]
                checked.categories.extend("database" for _ in indexes)
                rows = []
        if rejected:
            rejected.sort(key=lambda r: r.index)
            for category in checked.categories:
                m.REJECTED.labels(category).inc()
        return SubmitResult(accepted=len(rows), rejected=rejected)


def _drop_refused(
    rows: list[Row],
    indexes: list[int],
    rejected: list[Rejection],
    refused: dict[str, str],
    categories: list[str],
) -> tuple[list[Row], list[int], list[Rejection]]:
    kept: list[Row] = []
    kept_indexes: list[int] = []
    rejected = list(rejected)
    for row, index in zip(rows, indexes, strict=True):
        reason = refused.get(row[1])
        if reason is None:
            kept.append(row)
            kept_indexes.append(index)
        else:
            rejected.append(Rejection(index, reason))
            categories.append("unknown_device")
    return kept, kept_indexes, rejected
