"""Webhook delivery from the outbox (``alert_deliveries``), with retries and exponential backoff.

Each transition's outbox rows are written in the transition's own transaction, so nothing is lost when
an endpoint, the network or the core is down. The sender runs beside the evaluator, never inside it: a
dead or slow endpoint delays only its own rows (each attempt has a timeout, attempts run concurrently),
never an evaluation. A 2xx marks the row delivered; anything else schedules the next attempt after
``backoff_initial * 2^(attempts-1)`` seconds (capped at ``backoff_max``) until ``max_attempts``, after
which the row is marked failed (visible in ``/health``).

The body is the stream's message, ``{"type": "alert", "data": {...}}``; the header
``X-AetherLens-Delivery`` carries the row's id, the same on every retry, so a receiver that saw a
delivery whose answer was lost can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import asyncpg
import orjson
from prometheus_client import Counter
from yarl import URL

from aetherlens import __version__
from aetherlens.db.queries import alerts as q

log = logging.getLogger(__name__)

BATCH: Final = 100
DELIVERIES = Counter(
    "aetherlens_alert_webhook_attempts_total", "Webhook delivery attempts of alert transitions", ["outcome"]
)


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    timeout: float = 10.0
    max_attempts: int = 12
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    poll_interval: float = 5.0


def backoff(attempts: int, options: WebhookOptions) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (1, 2, ...)."""
    return float(min(options.backoff_max, options.backoff_initial * 2 ** max(0, attempts - 1)))


class WebhookSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        options: WebhookOptions | None = None,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.pool = pool
        self.options = options or WebhookOptions()
        self.clock = clock
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed_attempts = 0

    def nudge(self) -> None:
        """A new transition is in the outbox: look now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                headers={"User-Agent": f"AetherLens/{__version__}"},
            )
        return self._session

    async def deliver_due(self) -> int:
        """One pass: attempt every row due now (concurrently); return how many were delivered."""
        now = self.clock()
        lease = now + dt.timedelta(seconds=self.options.timeout * 2 + 5)
        due = await q.claim_due_deliveries(self.pool, now, lease, BATCH)
        if not due:
            return 0
        results = await asyncio.gather(*(self._attempt(d) for d in due))
        return sum(results)

    async def _attempt(self, delivery: q.Delivery) -> bool:
        body = orjson.dumps({"type": "alert", "data": delivery.data})
        headers = {"Content-Type": "application/json", "X-AetherLens-Delivery": str(delivery.id)}
        error: str | None = None
        try:
            async with self._client().post(delivery.url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    error = f"HTTP {resp.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        now = self.clock()
        if error is None:
            await q.mark_delivered(self.pool, delivery.id, now)
            self.delivered += 1
            DELIVERIES.labels("delivered").inc()
            return True
        attempts = delivery.attempts + 1
        self.failed_attempts += 1
        if attempts >= self.options.max_attempts:
            DELIVERIES.labels("given_up").inc()
            # The URL may carry a token in its query: log the host only.
            log.warning("webhook to %s failed %d times; giving up: %s", _host(delivery.url), attempts, error)
            await q.mark_attempt_failed(self.pool, delivery.id, error, None, now)
        else:
            DELIVERIES.labels("retry").inc()
            next_at = now + dt.timedelta(seconds=backoff(attempts, self.options))
            await q.mark_attempt_failed(self.pool, delivery.id, error, next_at, now)
        return False

    async def run(self) -> None:
        """Deliver until cancelled: at once when nudged, else when the next retry is due (or every
        ``poll_interval``, which also picks up rows another process, such as the API's ack, wrote)."""
        while True:
            self._wake.clear()  # before the pass: a nudge during it makes the wait below return at once
            try:
                await self.deliver_due()
                wait = self.options.poll_interval
                next_at = await q.next_delivery_at(self.pool)
                if next_at is not None:
                    wait = min(wait, max(0.05, (next_at - self.clock()).total_seconds()))
            except Exception:  # the database may be down; the outbox waits for it
                log.exception("webhook delivery pass failed")
                wait = self.options.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)


def _host(url: str) -> str:
    try:
        return str(URL(url).with_query(None).with_user(None))
    except ValueError:
        return "<invalid url>"
