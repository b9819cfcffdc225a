"""The ``plugins`` table's SQL, all of it (id, enabled, config, secrets, status), and its NOTIFY channel.

Writers: the API's config route (``set_plugin_config``), the supervisor's status reports
(``upsert_status``); readers: the API, the supervisor's stored-config overlay, ``aetherlens plugins
status``. Restart requests from a process without the supervisor (the CLI, an API without one) go to the
supervisor that LISTENs on ``NOTIFY_CHANNEL`` through ``request_restart``.

``secrets`` is not in any row these functions return, so no route can echo it by mistake; the
only functions touching it are ``set_plugin_config`` (writes already encrypted secrets, returns nothing
about them) and ``secrets_blob`` (read back only to merge an update).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from aetherlens.db.queries import Queryable

_COLUMNS: Final = "id, enabled, config::text, status::text"
NOTIFY_CHANNEL: Final = "aetherlens_plugins"  # named here only: the supervisor listens, others notify


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


async def plugin_known(db: Queryable, plugin_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM plugins WHERE id = $1)", plugin_id))


async def status_rows(db: Queryable, plugin_id: str | None = None) -> list[tuple[PluginRow, datetime]]:
    """Persisted status with when it was written: one plugin, or all by id."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS}, updated_at FROM plugins WHERE $1::text IS NULL OR id = $1 ORDER BY id",
        plugin_id,
    )
    return [(_plugin(r), r[4]) for r in rows]


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """Config saved through the API: plain values and the encrypted secrets blob (decrypted by the caller)."""

    id: str
    enabled: bool
    config: dict[str, Any]
    secrets: bytes | None


async def stored_configs(db: Queryable) -> list[StoredConfig]:
    """Plugins with a config or secrets saved through the API (they overlay ``plugins.<id>.config``)."""
    rows = await db.fetch(
        "SELECT id, enabled, config::text, secrets FROM plugins"
        " WHERE config <> '{}'::jsonb OR secrets IS NOT NULL ORDER BY id"
    )
    return [StoredConfig(r[0], bool(r[1]), _loads(r[2]) or {}, r[3]) for r in rows]


async def upsert_status(db: Queryable, statuses: Sequence[Mapping[str, Any]]) -> None:
    """The supervisor's report, one status dict (with ``id`` and ``enabled``) per plugin; a new row takes
    ``enabled`` from the report, an existing one keeps its stored flag (set through the API)."""
    if not statuses:
        return
    await db.execute(
        """INSERT INTO plugins (id, enabled, status, updated_at)
           SELECT u.id, u.enabled, u.status::jsonb, now()
           FROM unnest($1::text[], $2::bool[], $3::text[]) AS u(id, enabled, status)
           ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_at = now()""",
        [str(item["id"]) for item in statuses],
        [bool(item["enabled"]) for item in statuses],
        [orjson.dumps(item).decode() for item in statuses],
    )


async def request_restart(db: Queryable, plugin_id: str) -> None:
    """Ask the supervisor listening on this database to restart ``plugin_id``."""
    payload = orjson.dumps({"action": "restart", "id": plugin_id}).decode()
    await db.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)
