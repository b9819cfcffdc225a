"""The broadcast hub behind the WebSocket stream (``ctx.stream``), free of aiohttp.

Producers (the runtime after each committed write batch, the cost job, the alert engine) call
``hub.publish(topic, data)`` or ``hub.publish_many(topic, items)``; neither waits. Each client has a
bounded queue of *items*: one item is one event, or all events of one write batch (``publish_many``,
which the socket sends as one message per event). A write batch of 50,000 rows is therefore one queue
slot, not 50,000, and only a client whose queue is full (it has not taken the last ``queue_size`` items)
is disconnected, instead of slowing anyone down (CONTRACT.md: a consumer that falls behind is
disconnected). The socket side lives in ``aetherlens.api.websocket``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from aetherlens.db.writer import Row

TOPICS: Final = {"metrics": "metric", "costs": "cost", "alerts": "alert"}
CLOSE_GOING_AWAY: Final = 1001
CLOSE_BAD_MESSAGE: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW_CONSUMER: Final = 4408
CLOSE_RATE_LIMITED: Final = 4429
AUTH_TIMEOUT: Final = 10.0
QUEUE_SIZE: Final = 1000

# One queue item: an encoded event, or the encoded events of one write batch.
type Item = bytes | tuple[bytes, ...]


@dataclass(eq=False, slots=True)
class StreamClient:
    queue: asyncio.Queue[Item | None]
    topics: set[str] = field(default_factory=set)
    close_code: int | None = None  # set once: the socket is to be closed with it
    close_reason: str = ""
    # Set with close_code: wakes the socket's handler even while its sender is stuck in a send to a
    # client that does not read.
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def close(self, code: int, reason: str) -> None:
        """Have the socket closed with ``code`` (its handler wakes on ``closed``). Queued events are
        discarded: after a revocation nothing more may reach the socket, and a slow consumer would not
        read them anyway."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        self.queue.put_nowait(None)


class StreamHub:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._clients: set[StreamClient] = set()
        self.disconnected_slow = 0

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def publish(self, topic: str, data: Any) -> int:
        """Queue one event for every subscriber of ``topic``; return how many got it. Never blocks."""
        kind = _kind(topic)
        return self._put(topic, lambda: orjson.dumps({"type": kind, "data": data}, default=str))

    def publish_many(self, topic: str, items: Sequence[Any]) -> int:
        """Queue ``items`` as *one* queue item per subscriber (sent as one message each, in order);
        return how many subscribers got it. Never blocks. For everything one write batch produced."""
        kind = _kind(topic)
        if not items:
            return 0
        return self._put(
            topic, lambda: tuple(orjson.dumps({"type": kind, "data": d}, default=str) for d in items)
        )

    def _put(self, topic: str, encode: Callable[[], Item]) -> int:
        payload: Item | None = None
        delivered = 0
        for client in list(self._clients):
            if topic not in client.topics or client.closing:
                continue
            if payload is None:  # encoded once, and only when someone listens
                payload = encode()
            if client.queue.qsize() >= self.queue_size:
                self.disconnected_slow += 1
                client.close(CLOSE_SLOW_CONSUMER, "consumer too slow")
                continue
            client.queue.put_nowait(payload)
            delivered += 1
        return delivered

    def add(self) -> StreamClient:
        # Bounded by publish (queue_size items), not by the queue itself, so close() always has room
        # for its sentinel.
        client = StreamClient(queue=asyncio.Queue())
        self._clients.add(client)
        return client

    def remove(self, client: StreamClient) -> None:
        self._clients.discard(client)

    async def close(self) -> None:
        for client in list(self._clients):
            client.close(CLOSE_GOING_AWAY, "server shutting down")


def latest_per_series(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The stream's view of one committed write batch: the latest reading of each (device_id,
    metric_type), as the contract's metric event data. A stream consumer shows current values; the
    readings in between are in the database (GET /metrics)."""
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row[1], row[2])
        seen = latest.get(key)
        if seen is None or row[0] >= seen[0]:  # equal times: the later row of the batch wins
            latest[key] = row
    return [
        {"time": r[0].isoformat(), "device_id": r[1], "metric_type": r[2], "value": r[3], "unit": r[4]}
        for r in latest.values()
    ]


def publish_written(hub: StreamHub, rows: Sequence[Row]) -> int:
    """Writer listener body: one queue item per committed batch for each ``metrics`` subscriber."""
    if not hub.client_count:
        return 0
    return hub.publish_many("metrics", latest_per_series(rows))


def _kind(topic: str) -> str:
    kind = TOPICS.get(topic)
    if kind is None:
        raise ValueError(f"unknown stream topic {topic!r}; known: {', '.join(TOPICS)}")
    return kind
