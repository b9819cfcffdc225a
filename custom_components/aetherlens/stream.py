"""The live stream: one background task per entry that keeps `/api/v1/stream` open.

It reconnects with exponential backoff, logs once when the stream is lost and once when it is back,
and stops (asking for reauthentication) when the core refuses the key. Costs and everything else keep
coming from polling, which is also the fallback for live values while the stream is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .api import (
    AetherLensAuthError,
    AetherLensClient,
    AetherLensError,
    StreamEvent,
    Subscribed,
)

_LOGGER = logging.getLogger(__name__)

BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


def next_delay(delay: float) -> float:
    """Exponential backoff: double, capped."""
    return min(delay * 2, BACKOFF_MAX_SECONDS)


@dataclass(slots=True)
class StreamCallbacks:
    """What the stream tells its owner (all called in the event loop)."""

    on_event: Callable[[StreamEvent], None]
    on_connected: Callable[[], None]
    on_disconnected: Callable[[], None]
    on_auth_failed: Callable[[], None]


class LiveStream:
    """Keeps the stream open until cancelled."""

    def __init__(self, client: AetherLensClient, callbacks: StreamCallbacks) -> None:
        self._client = client
        self._callbacks = callbacks
        self.connected = False
        self._failed_logged = False

    async def run(self) -> None:
        delay = BACKOFF_INITIAL_SECONDS
        while True:
            try:
                async for event in self._client.stream():
                    if isinstance(event, Subscribed):
                        self._opened()
                        delay = BACKOFF_INITIAL_SECONDS
                        continue
                    self._callbacks.on_event(event)
            except AetherLensAuthError:
                _LOGGER.warning("The AetherLens core refused the API key on the stream")
                self._closed()
                self._callbacks.on_auth_failed()
                return
            except AetherLensError as err:
                self._lost(str(err))
            except Exception:  # a bug in handling one event must not end live updates for good
                _LOGGER.exception("Unexpected error in the AetherLens stream")
                self._lost("unexpected error")
            else:
                self._lost("closed by the core")
            await asyncio.sleep(delay)
            delay = next_delay(delay)

    def _opened(self) -> None:
        if not self.connected:
            if self._failed_logged:
                _LOGGER.info("AetherLens stream connected again")
            self._failed_logged = False
            self.connected = True
            self._callbacks.on_connected()

    def _closed(self) -> None:
        if self.connected:
            self.connected = False
            self._callbacks.on_disconnected()

    def _lost(self, reason: str) -> None:
        # Once per outage, not once per reconnect attempt.
        if not self._failed_logged:
            _LOGGER.info("AetherLens stream lost (%s); polling until it is back", reason)
            self._failed_logged = True
        self._closed()
