"""Stored plugin rows (``plugins``: id, enabled, config, secrets, status) — read without secrets.

``secrets`` is not in any row these functions return, so no route can echo it by mistake; the
only functions touching it are ``set_plugin_config`` (writes already encrypted secrets, returns nothing
about them) and ``secrets_blob`` (read back only to merge an update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from aetherlens.db.queries import Queryable

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


async def secrets_blob(db: Queryable, plugin_id: str) -> bytes | None:
    """The encrypted secrets of one plugin (only for merging on update; never for an answer)."""
    blob: bytes | None = await db.fetchval("SELECT secrets FROM plugins WHERE id = $1", plugin_id)
    return blob


async def set_plugin_config(
    db: Queryable, plugin_id: str, *, config: dict[str, Any], secrets: bytes | None, enabled: bool | None
) -> PluginRow:
    """Store the plain config and the (already encrypted) secrets; ``enabled=None`` keeps the flag."""
    row = await db.fetchrow(
        f"""INSERT INTO plugins (id, enabled, config, secrets, updated_at)
            VALUES ($1, coalesce($4, true), $2::text::jsonb, $3, now())
            ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config, secrets = EXCLUDED.secrets,
                enabled = coalesce($4, plugins.enabled), updated_at = now()
            RETURNING {_COLUMNS}""",
        plugin_id,
        orjson.dumps(config).decode(),
        secrets,
        enabled,
    )
    return _plugin(row)
