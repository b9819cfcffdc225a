"""The one device registry: API CRUD, the collector's auto-registration and plugin discovery all go
through a ``DeviceRegistry``, so the collector's id cache changes with every change of ``devices``.

The SQL is ``aetherlens.db.queries.devices`` (the table's one owner). The hot path asks only the
in-memory set; the database is asked once per *new* id. Ingest keeps working while the database is down
(CONTRACT.md): with auto-registration on, new ids are accepted at once and registered when the database
answers again; with it off, an id that cannot be checked is refused.

A deleted device leaves the cache in the same call, so its next metric is refused (auto-registration off)
or registers it again (on) instead of being written under an id the registry no longer has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aetherlens.db.connection import PoolOrConnection, connection
from aetherlens.db.outage import DATABASE_UNREACHABLE
from aetherlens.db.queries import devices as q
from aetherlens.models import DEVICE_ID_PATTERN, DEVICE_TYPES

log = logging.getLogger(__name__)

_QUERY_TIMEOUT: Final = 2.0
_RETRY_SECONDS: Final = 5.0


class DeviceRegistry:
    def __init__(self, db: PoolOrConnection, *, auto_register: bool) -> None:
        self.db = db
        self.auto_register = auto_register
        self.known: set[str] = set()
        self._unregistered: dict[str, str] = {}  # accepted during an outage: id -> source
        self._retry_at = 0.0

    async def load(self) -> None:
        """Fill the cache from ``devices``; an unreachable database leaves it empty (filled lazily)."""
        try:
            async with asyncio.timeout(_QUERY_TIMEOUT), connection(self.db, timeout=_QUERY_TIMEOUT) as conn:
                ids = await q.all_ids(conn)
        except DATABASE_UNREACHABLE as exc:
            log.warning("device registry not loaded (%s); ids are checked as they arrive", exc)
            return
        self.known.update(ids)

    # -- CRUD (the API) ----------------------------------------------------------------------------------
    async def list_all(self) -> list[q.Device]:
        return await q.list_devices(self.db)

    async def get(self, device_id: str) -> q.Device:
        return await q.get_device(self.db, device_id)

    async def create(
        self,
        *,
        device_id: str,
        name: str,
        type: str = "other",
        room: str | None = None,
        source: str | None = "api",
        tags: dict[str, str] | None = None,
    ) -> q.Device:
        device = await q.create_device(
            self.db, device_id=device_id, name=name, type=type, room=room, source=source, tags=tags
        )
        self.known.add(device.id)
        return device

    async def update(self, device_id: str, changes: dict[str, Any]) -> q.Device:
        return await q.update_device(self.db, device_id, changes)

    async def delete(self, device_id: str) -> None:
        """Remove the device; its stored metrics stay. Ingest stops taking it as known at once."""
        await q.delete_device(self.db, device_id)
        self.known.discard(device_id)
        self._unregistered.pop(device_id, None)

    # -- plugin discovery --------------------------------------------------------------------------------
    async def register_discovered(self, plugin_id: str, found: Iterable[object]) -> int:
        """Register what a plugin's discovery answered (dicts with ``id`` and optional ``name``, ``type``,
        ``room``); entries without a valid id are skipped. Returns how many were registered or refreshed."""
        rows = [
            (
                str(d["id"]),
                str(d.get("name") or d["id"]),
                _device_type(d.get("type")),
                str(d["room"]) if d.get("room") else None,
            )
            for d in found
            if isinstance(d, Mapping) and DEVICE_ID_PATTERN.fullmatch(str(d.get("id", "")))
        ]
        if rows:
            await q.upsert_discovered(self.db, rows, plugin_id)
            self.known.update(row[0] for row in rows)
        return len(rows)

    # -- the collector's hot path ------------------------------------------------------------------------
    async def resolve(self, unknown: Iterable[str], source: str) -> dict[str, str]:
        """Make ``unknown`` ids known. Returns the refused ones with a reason (auto-registration off and
        the device does not exist, or the registry cannot be asked)."""
        ids = sorted(set(unknown))
        await self.retry_pending()
        if not ids:
            return {}
        try:
            async with asyncio.timeout(_QUERY_TIMEOUT), connection(self.db, timeout=_QUERY_TIMEOUT) as conn:
                if self.auto_register:
                    await q.register_placeholders(conn, dict.fromkeys(ids, source))
                    found = set(ids)
                    log.info("registered %d new device(s) from %s", len(ids), source)
                else:
                    found = await q.existing_ids(conn, ids)
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
        pending = dict(self._unregistered)
        try:
            async with asyncio.timeout(_QUERY_TIMEOUT), connection(self.db, timeout=_QUERY_TIMEOUT) as conn:
                await q.register_placeholders(conn, pending)
        except DATABASE_UNREACHABLE:
            self._retry_at = time.monotonic() + _RETRY_SECONDS
            return
        log.info("registered %d device(s) first seen while the database was away", len(pending))
        for device_id in pending:
            self._unregistered.pop(device_id, None)


def _device_type(value: object) -> str:
    return value if isinstance(value, str) and value in DEVICE_TYPES else "other"


__all__ = ["DeviceRegistry"]
