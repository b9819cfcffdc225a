"""In-memory rate limits (token buckets) with the wait a client should honour in ``Retry-After``.

Per IP for login/refresh and unauthenticated callers (against password and key guessing: 60/min and
1000/h by default); per principal for authenticated callers with a budget far above normal use.
Memory is bounded: idle buckets are dropped once full again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass(frozen=True, slots=True)
class Limit:
    capacity: int  # burst size
    per_seconds: float  # the capacity refills over this many seconds

    @property
    def rate(self) -> float:
        return self.capacity / self.per_seconds


class RateLimiter:
    """Several limits that must all allow a hit (e.g. 60/min *and* 1000/h)."""

    def __init__(
        self, limits: list[Limit], clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ):
        self._limits = limits
        self._clock = clock
        self._buckets: list[dict[str, _Bucket]] = [{} for _ in limits]
        self._max_keys = max_keys

    def hit(self, key: str) -> float:
        """Take one token for ``key``; return 0 if allowed, else the seconds until a retry can pass."""
        now = self._clock()
        wait = 0.0
        states: list[_Bucket] = []
        for limit, buckets in zip(self._limits, self._buckets, strict=True):
            bucket = buckets.get(key)
            if bucket is None:
                if len(buckets) >= self._max_keys:
                    self._prune(buckets, limit, now)
                bucket = buckets[key] = _Bucket(float(limit.capacity), now)
            bucket.tokens = min(float(limit.capacity), bucket.tokens + (now - bucket.stamp) * limit.rate)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = max(wait, (1.0 - bucket.tokens) / limit.rate)
            states.append(bucket)
        if wait > 0:
            return wait
        for bucket in states:
            bucket.tokens -= 1.0
        return 0.0

    def wait(self, key: str) -> float:
        """The seconds until ``hit(key)`` would pass (0 = now), without taking a token."""
        now = self._clock()
        wait = 0.0
        for limit, buckets in zip(self._limits, self._buckets, strict=True):
            bucket = buckets.get(key)
            if bucket is None:
                continue
            tokens = min(float(limit.capacity), bucket.tokens + (now - bucket.stamp) * limit.rate)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / limit.rate)
        return wait

    def _prune(self, buckets: dict[str, _Bucket], limit: Limit, now: float) -> None:
        full = [k for k, b in buckets.items() if b.tokens + (now - b.stamp) * limit.rate >= limit.capacity]
        for k in full:
            del buckets[k]
        if (
            len(buckets) >= self._max_keys
        ):  # still crowded: drop the oldest half rather than grow without bound
            for k in sorted(buckets, key=lambda k: buckets[k].stamp)[: len(buckets) // 2]:
                del buckets[k]
