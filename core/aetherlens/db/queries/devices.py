"""The ``devices`` table's SQL, all of it: list, get, create, partial update, delete, the collector's
auto-registration and plugin discovery's upsert.

Nothing else writes ``devices``: callers go through ``aetherlens.collect.registry.DeviceRegistry``, which
keeps the collector's id cache in step with every change made here.

Ids follow ``DEVICE_ID_PATTERN`` and types ``DEVICE_TYPES`` (aetherlens.models); tags are string -> string.
The HTTP layer validates the same rules with pydantic first; they are checked here too because the
registry is also written by the collector's auto-registration and plugin discovery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from aetherlens.db.queries import Queryable
from aetherlens.errors import ConflictError, NotFoundError, ValidationError
from aetherlens.models import DEVICE_ID_PATTERN, DEVICE_TYPES

_COLUMNS: Final = "id, name, type, room, source, tags::text, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str
    type: str
    room: str | None
    source: str | None
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The contract's device shape."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "room": self.room,
            "source": self.source,
            "tags": self.tags,
        }


def _device(row: Any) -> Device:
    return Device(
        id=row[0],
        name=row[1],
        type=row[2],
        room=row[3],
        source=row[4],
        tags=orjson.loads(row[5]) if row[5] is not None else {},
        created_at=row[6],
        updated_at=row[7],
    )


def validate_device_id(device_id: str) -> None:
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise ValidationError(
            f"device id {device_id!r} must match {DEVICE_ID_PATTERN.pattern}",
            details={"field": "id", "value": device_id},
        )


def _validate_type(device_type: str) -> None:
    if device_type not in DEVICE_TYPES:
        raise ValidationError(
            f"device type {device_type!r} is not one of {', '.join(DEVICE_TYPES)}",
            details={"field": "type", "value": device_type},
        )


def _validate_tags(tags: dict[str, str]) -> None:
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(
                "tags must map strings to strings", details={"field": "tags", "key": str(key)}
            )


async def list_devices(db: Queryable) -> list[Device]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM devices ORDER BY id")
    return [_device(row) for row in rows]


async def get_device(db: Queryable, device_id: str) -> Device:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
    if row is None:
        raise NotFoundError(f"device {device_id!r} not found", details={"device_id": device_id})
    return _device(row)


async def device_exists(db: Queryable, device_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", device_id))


async def all_ids(db: Queryable) -> set[str]:
    return {row[0] for row in await db.fetch("SELECT id FROM devices")}


async def existing_ids(db: Queryable, ids: Sequence[str]) -> set[str]:
    return {row[0] for row in await db.fetch("SELECT id FROM devices WHERE id = ANY($1::text[])", list(ids))}


async def register_placeholders(db: Queryable, sources: Mapping[str, str]) -> None:
    """Auto-registration: each id -> source becomes a device named after its id (type ``other``) unless
    it exists; the name = id placeholder is what discovery may later replace."""
    ids = sorted(sources)
    await db.execute(
        """INSERT INTO devices (id, name, type, source)
           SELECT u.id, u.id, 'other', u.source FROM unnest($1::text[], $2::text[]) AS u(id, source)
           ON CONFLICT (id) DO NOTHING""",
        ids,
        [sources[i] for i in ids],
    )


async def upsert_discovered(
    db: Queryable, found: Sequence[tuple[str, str, str, str | None]], source: str
) -> None:
    """Devices a plugin discovered, as (id, name, type, room): new ones are created. What a user set is
    never overwritten: an existing device takes the discovered name and type only while it still has the
    placeholder name of auto-registration (name = id), and the discovered room only while it has none."""
    by_id = {device_id: (name, kind, room) for device_id, name, kind, room in found}  # one row per id
    for device_id, (_, device_type, _) in by_id.items():
        validate_device_id(device_id)
        _validate_type(device_type)
    ids = sorted(by_id)
    await db.execute(
        """INSERT INTO devices (id, name, type, room, source)
           SELECT u.id, u.name, u.type, u.room, $5
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(id, name, type, room)
           ON CONFLICT (id) DO UPDATE
               SET name = CASE WHEN devices.name = devices.id THEN EXCLUDED.name ELSE devices.name END,
                   type = CASE WHEN devices.name = devices.id THEN EXCLUDED.type ELSE devices.type END,
                   source = CASE WHEN devices.name = devices.id THEN EXCLUDED.source ELSE devices.source END,
                   room = COALESCE(devices.room, EXCLUDED.room),
                   updated_at = now()
           WHERE devices.name = devices.id OR (devices.room IS NULL AND EXCLUDED.room IS NOT NULL)""",
        ids,
        [by_id[i][0] for i in ids],
        [by_id[i][1] for i in ids],
        [by_id[i][2] for i in ids],
        source,
    )


async def create_device(
    db: Queryable,
    *,
    device_id: str,
    name: str,
    type: str = "other",
    room: str | None = None,
    source: str | None = "api",
    tags: dict[str, str] | None = None,
) -> Device:
    validate_device_id(device_id)
    _validate_type(type)
    tags = tags or {}
    _validate_tags(tags)
    row = await db.fetchrow(
        "INSERT INTO devices (id, name, type, room, source, tags) "
        f"VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) "
        f"ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}",
        device_id,
        name,
        type,
        room,
        source,
        orjson.dumps(tags).decode(),
    )
    if row is None:
        raise ConflictError(f"device {device_id!r} already exists", details={"device_id": device_id})
    return _device(row)


# One fixed statement for every partial update: each column has a "was it given" flag, so no SQL is built
# from the request.
_UPDATE_SQL: Final = f"""
UPDATE devices SET
  name = CASE WHEN $2 THEN $3 ELSE name END,
  type = CASE WHEN $4 THEN $5 ELSE type END,
  room = CASE WHEN $6 THEN $7 ELSE room END,
  source = CASE WHEN $8 THEN $9 ELSE source END,
  tags = CASE WHEN $10 THEN $11::text::jsonb ELSE tags END,
  updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""

_UPDATABLE: Final = ("name", "type", "room", "source", "tags")


async def update_device(db: Queryable, device_id: str, changes: dict[str, Any]) -> Device:
    """Apply the given fields only; a field given as ``None`` clears it (room, source)."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        raise ValidationError(
            f"cannot update {', '.join(sorted(unknown))}; updatable fields: {', '.join(_UPDATABLE)}",
            details={"fields": sorted(unknown)},
        )
    if changes.get("name", "") is None:
        raise ValidationError("name cannot be null", details={"field": "name"})
    if "type" in changes:
        _validate_type(changes["type"])
    tags = changes.get("tags")
    if "tags" in changes:
        tags = tags or {}
        _validate_tags(tags)
    row = await db.fetchrow(
        _UPDATE_SQL,
        device_id,
        "name" in changes,
        changes.get("name"),
        "type" in changes,
        changes.get("type"),
        "room" in changes,
        changes.get("room"),
        "source" in changes,
        changes.get("source"),
        "tags" in changes,
        orjson.dumps(tags).decode() if "tags" in changes else None,
    )
    if row is None:
        raise NotFoundError(f"device {device_id!r} not found", details={"device_id": device_id})
    return _device(row)


async def delete_device(db: Queryable, device_id: str) -> None:
    """Remove the device from the registry; its stored metrics stay (history is not lost by a rename)."""
    status = await db.execute("DELETE FROM devices WHERE id = $1", device_id)
    if status == "DELETE 0":
        raise NotFoundError(f"device {device_id!r} not found", details={"device_id": device_id})
