"""Turns HA states into metrics for the core and hands them over, keeping the watermarks.

``offer`` takes one state (from the live stream, the initial state or the recorder backfill) and queues
a metric when it is new (after the entity's watermark), numeric and not counter jitter; ``flush`` hands
the queue to the core through ``emit`` and only then makes the new watermarks durable. When ``emit``
raises (the core stopping), the queued marks are dropped with the batch, so nothing is marked done that
the core did not take.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aetherlens.plugins.builtin.homeassistant.mapping import CANONICAL, Tracked, canonical, is_jitter
from aetherlens.plugins.builtin.homeassistant.watermarks import Mark, WatermarkStore
from aetherlens.plugins.sdk import Emit

log = logging.getLogger(__name__)

MAX_BATCH = 5000


class Feed:
    def __init__(self, store: WatermarkStore) -> None:
        self.store = store
        self.tracked: dict[str, Tracked] = {}
        self._pending: dict[str, Mark] = {}
        self._batch: list[dict[str, Any]] = []
        self.skipped: Counter[str] = Counter()
        self.emitted = 0
        self.rejected = 0
        self.last_reading: float | None = None

    def mark(self, entity_id: str) -> Mark | None:
        return self._pending.get(entity_id) or self.store.marks.get(entity_id)

    def offer(self, entity_id: str, state: object, when: float) -> bool:
        """Queue one state; True when it became a metric."""
        item = self.tracked.get(entity_id)
        if item is None:
            return False
        mark = self.mark(entity_id)
        if mark is not None and when <= mark.time:
            return False  # already handed over (or older than what was)
        value = canonical(item, state)
        last = mark.value if mark else None
        if value is None:
            self.skipped["not_numeric" if state not in ("unavailable", "unknown") else str(state)] += 1
            self._pending[entity_id] = Mark(when, last)
            return False
        if is_jitter(item, value, last):
            self.skipped["counter_jitter"] += 1
            self._pending[entity_id] = Mark(when, last)
            return False
        self._pending[entity_id] = Mark(when, value if item.counter else None)
        self._batch.append(
            {
                "time": datetime.fromtimestamp(when, UTC).isoformat(),
                "device_id": item.device_id,
                "metric_type": item.metric_type,
                "value": value,
                "unit": CANONICAL[item.metric_type],
            }
        )
        self.last_reading = when
        return True

    def offer_past(self, entity_id: str, value: float, when: float) -> bool:
        """Queue a canonical value from before everything this entity ever handed over (HA's long-term
        statistics, older than the recorder's states): it neither checks nor moves the watermark."""
        item = self.tracked.get(entity_id)
        if item is None:
            return False
        self._batch.append(
            {
                "time": datetime.fromtimestamp(when, UTC).isoformat(),
                "device_id": item.device_id,
                "metric_type": item.metric_type,
                "value": value,
                "unit": CANONICAL[item.metric_type],
            }
        )
        return True

    @property
    def full(self) -> bool:
        return len(self._batch) >= MAX_BATCH

    async def flush(self, emit: Emit) -> int:
        """Hand the queued metrics to the core; returns how many it accepted."""
        batch, pending = self._batch, self._pending
        self._batch, self._pending = [], {}
        accepted = 0
        if batch:
            # If this raises, the batch's marks are dropped with it: the states are offered again.
            result = await emit(batch)
            accepted = int(getattr(result, "accepted", len(batch)))
            rejected: Sequence[Mapping[str, Any]] = getattr(result, "rejected", [])
            if rejected:
                # A rejection is about the value, so offering it again would not help; say which.
                self.rejected += len(rejected)
                first = rejected[0]
                log.warning(
                    "core rejected %d of %d readings, e.g. %s: %s",
                    len(rejected),
                    len(batch),
                    batch[int(first.get("index", 0))] if int(first.get("index", 0)) < len(batch) else "?",
                    first.get("reason"),
                )
            self.emitted += accepted
        if pending:
            self.store.marks.update(pending)
            self.store.save()
        return accepted
