"""The broadcast hub behind the WebSocket stream (``ctx.stream``), free of aiohttp.

Producers (the runtime after each committed write batch, the cost job, the alert engine) call
``hub.publish(topic, data)``, which never waits: each client has a bounded queue, and a client whose
queue is full is disconnected instead of slowing anyone down (CONTRACT.md: a consumer that falls behind
is disconnected). The socket side lives in ``aetherlens.api.websocket``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

TOPICS: Final = {"metrics": "metric", "costs": "cost", "alerts": "alert"}
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW_CONSUMER: Final = 4408
CLOSE_BAD_MESSAGE: Final = 4400
AUTH_TIMEOUT: Final = 10.0


@dataclass(eq=False, slots=True)
class _Client:
    queue: asyncio.Queue[bytes | None]
    topics: set[str] = field(default_factory=set)
    dropped: bool = False


class StreamHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._clients: set[_Client] = set()
        self.disconnected_slow = 0

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def publish(self, topic: str, data: Any) -> int:
        """Queue ``data`` for every subscriber of ``topic``; return how many got it. Never blocks."""
        kind = TOPICS.get(topic)
        if kind is None:
            raise ValueError(f"unknown stream topic {topic!r}; known: {', '.join(TOPICS)}")
        payload: bytes | None = None
        delivered = 0
        for client in list(self._clients):
            if topic not in client.topics or client.dropped:
                continue
            if payload is None:
                payload = orjson.dumps({"type": kind, "data": data}, default=str)
            try:
                client.queue.put_nowait(payload)
                delivered += 1
            except asyncio.QueueFull:
                self._drop(client)
        return delivered

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        self.disconnected_slow += 1
        # Wake the sender so it closes the socket; drain one slot for the sentinel.
        with contextlib.suppress(asyncio.QueueEmpty):
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    def _add(self) -> _Client:
        client = _Client(queue=asyncio.Queue(maxsize=self.queue_size))
        self._clients.add(client)
        return client

    def _remove(self, client: _Client) -> None:
        self._clients.discard(client)

    async def close(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
