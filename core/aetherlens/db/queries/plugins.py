"""Stored plugin rows (``plugins``: id, enabled, config, secrets, status) — read without secrets.

``secrets`` is never selected here, so no route built on these functions can echo it by mistake; the
only way to touch it is ``set_plugin_config``, which writes (already encrypted) secrets and returns nothing
about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from aetherlens.db.queries import Queryable
from aetherlens.errors import NotFoundError

_COLUMNS: Final = "id, enabled, config::text, status::text"


@dataclass(frozen=True, slots=True)
class PluginRow:
    id: str
    enabled: bool
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] | str | None = None


def _loads(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def _plugin(row: Any) -> PluginRow:
    return PluginRow(id=row[0], enabled=bool(row[1]), config=_loads(row[2]) or {}, status=_loads(row[3]))


async def list_plugins(db: Queryable) -> list[PluginRow]:
    return [_plugin(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM plugins ORDER BY id")]


async def get_plugin(db: Queryable, plugin_id: str) -> PluginRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM plugins WHERE id = $1", plugin_id)
    return None if row is None else _plugin(row)


async def require_plugin(db: Queryable, plugin_id: str) -> PluginRow:
    found = await get_plugin(db, plugin_id)
    if found is None:
        raise NotFoundError(f"plugin {plugin_id!r} not found", details={"plugin_id": plugin_id})
    return found
