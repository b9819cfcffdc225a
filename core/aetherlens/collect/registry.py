"""Device enrichment: which device ids exist, auto-registering unknown ones (or refusing them).

The hot path asks only an in-memory set; the database is asked once per *new* id. Ingest keeps working
while the database is down (CONTRACT.md): with auto-registration on, new ids are accepted at once and
registered when the database answers again; with it off, an id that cannot be checked is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Final

import asyncpg

from aetherlens.db.outage import DATABASE_UNREACHABLE

log = logging.getLogger(__name__)

_QUERY_TIMEOUT: Final = 2.0
_RETRY_SECONDS: Final = 5.0

_REGISTER: Final = """
INSERT INTO devices (id, name, type, source)
SELECT u.id, u.id, 'other', u.source FROM unnest($1::text[], $2::text[]) AS u(id, source)
ON CONFLICT (id) DO NOTHING
"""
_EXISTING: Final = "SELECT id FROM devices WHERE id = ANY($1::text[])"


class DeviceRegistry:
    def __init__(self, pool: asyncpg.Pool, *, auto_register: bool) -> None:
        self.pool = pool
        self.auto_register = auto_register
        self.known: set[str] = set()
        self._unregistered: dict[str, str] = {}  # accepted during an outage: id -> source
        self._retry_at = 0.0

    async def load(self) -> None:
        """Fill the cache from ``devices``; an unreachable database leaves it empty (filled lazily)."""
        try:
            async with self.pool.acquire(timeout=_QUERY_TIMEOUT) as conn:
                rows = await conn.fetch("SELECT id FROM devices", timeout=_QUERY_TIMEOUT)
        except DATABASE_UNREACHABLE as exc:
            log.warning("device registry not loaded (%s); ids are checked as they arrive", exc)
            return
        self.known.update(r["id"] for r in rows)

    def forget(self, device_id: str) -> None:
        """A device was deleted: its next metric registers it again (or is refused)."""
        self.known.discard(device_id)

    def remember(self, device_id: str) -> None:
        """A device was created elsewhere (API): no need to ask the database about it."""
        self.known.add(device_id)

    async def resolve(self, unknown: Iterable[str], source: str) -> dict[str, str]:
        """Make ``unknown`` ids known. Returns the refused ones with a reason (auto-registration off and
        the device does not exist, or the registry cannot be asked)."""
        ids = sorted(set(unknown))
        await self.retry_pending()
        if not ids:
            return {}
        try:
            async with self.pool.acquire(timeout=_QUERY_TIMEOUT) as conn:
                if self.auto_register:
                    await conn.execute(_REGISTER, ids, [source] * len(ids), timeout=_QUERY_TIMEOUT)
                    found = set(ids)
                    log.info("registered %d new device(s) from %s", len(ids), source)
                else:
                    found = {r["id"] for r in await conn.fetch(_EXISTING, ids, timeout=_QUERY_TIMEOUT)}
        except DATABASE_UNREACHABLE as exc:
            if self.auto_register:
                # Accept now (the metrics are spooled anyway); register when the database is back.
                for device_id in ids:
                    self._unregistered.setdefault(device_id, source)
                self.known.update(ids)
                self._retry_at = time.monotonic() + _RETRY_SECONDS
                return {}
            log.warning("cannot check unknown devices (%s)", exc)
            return {
                i: "the device registry is unreachable, so unknown device "
                f"{i!r} cannot be checked (collector.auto_register_devices is off)"
                for i in ids
            }
        self.known.update(found)
        return {
            i: f"unknown device {i!r} (collector.auto_register_devices is off; create the device first)"
            for i in ids
            if i not in found
        }

    @property
    def pending_registrations(self) -> int:
        return len(self._unregistered)

    async def retry_pending(self) -> None:
        """Register ids accepted during an outage, at most every few seconds while it lasts."""
        if not self._unregistered or time.monotonic() < self._retry_at:
            return
        ids = sorted(self._unregistered)
        try:
            async with self.pool.acquire(timeout=_QUERY_TIMEOUT) as conn:
                await conn.execute(
                    _REGISTER, ids, [self._unregistered[i] for i in ids], timeout=_QUERY_TIMEOUT
                )
        except DATABASE_UNREACHABLE:
            self._retry_at = time.monotonic() + _RETRY_SECONDS
            return
        log.info("registered %d device(s) first seen while the database was away", len(ids))
        for device_id in ids:
            self._unregistered.pop(device_id, None)
