"""Tariffs in ``rate_schedules``: one row per version; versions of a tariff share its name.

The id of any version names the tariff for billing: a bill uses every version with that row's name,
each in force from its ``effective_from``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import asyncpg
import orjson

from aetherlens.costs.engine import TariffVersion
from aetherlens.costs.tariff import Tariff, parse_tariff
from aetherlens.errors import ConflictError, NotFoundError

# definition travels as text so it reads the same with or without a pool's jsonb codec.
_COLUMNS = (
    "id, name, effective_from, currency, timezone, source, definition::text AS definition, active, "
    "created_at, updated_at"
)


def _definition(row: asyncpg.Record) -> dict[str, Any]:
    value = row["definition"]
    if isinstance(value, str | bytes):
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded
    return dict(value)


def row_to_tariff(row: asyncpg.Record) -> Tariff:
    data = _definition(row)
    data["effective_from"] = row["effective_from"].isoformat()
    return parse_tariff(data)


def row_to_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "effective_from": row["effective_from"].isoformat(),
        "currency": row["currency"],
        "timezone": row["timezone"],
        "source": row["source"],
        "active": row["active"],
        "definition": _definition(row),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def insert_tariff(
    conn: asyncpg.Connection, tariff: Tariff, *, source: str = "yaml", active: bool | None = None
) -> str:
    """Store one version; the first tariff stored becomes the active one unless told otherwise."""
    effective = tariff.effective_from_utc or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        if active is None:
            active = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rate_schedules WHERE active)")
        elif active:
            await conn.execute("UPDATE rate_schedules SET active = false WHERE active")
        try:
            new_id: str = await conn.fetchval(
                "INSERT INTO rate_schedules"
                " (name, effective_from, currency, timezone, source, definition, active)"
                " VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7) RETURNING id",
                tariff.name,
                effective,
                tariff.currency,
                tariff.timezone,
                source,
                orjson.dumps(tariff.to_json()).decode(),
                active,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(
                f"tariff '{tariff.name}' already has a version effective from {effective.isoformat()}",
                details={"name": tariff.name, "effective_from": effective.isoformat()},
            ) from None
    return new_id


async def fetch_row(conn: asyncpg.Connection, tariff_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM rate_schedules WHERE id = $1", tariff_id)
    if row is None:
        raise NotFoundError(f"no tariff with id '{tariff_id}'", details={"tariff_id": tariff_id})
    return row


async def versions_of(conn: asyncpg.Connection, tariff_id: str) -> list[TariffVersion]:
    """Every version of the tariff that row ``tariff_id`` belongs to."""
    row = await fetch_row(conn, tariff_id)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM rate_schedules WHERE name = $1 ORDER BY effective_from", row["name"]
    )
    return [TariffVersion(row_to_tariff(r), r["effective_from"]) for r in rows]


async def active_tariff_id(conn: asyncpg.Connection) -> str | None:
    value: str | None = await conn.fetchval("SELECT id FROM rate_schedules WHERE active LIMIT 1")
    return value


async def all_tariff_names(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(id of the latest version, name) for every stored tariff."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (name) id, name FROM rate_schedules ORDER BY name, effective_from DESC"
    )
    return [(r["id"], r["name"]) for r in rows]


def versions_signature(versions: list[TariffVersion]) -> str:
    """Changes whenever any version of a tariff is added, edited or removed (triggers re-pricing)."""
    payload = [(str(v.effective_from), v.tariff.to_json()) for v in versions]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def all_tariffs(conn: asyncpg.Connection) -> list[Tariff]:
    """Every stored version of every tariff (what the stored energy's slot grid must serve)."""
    return [row_to_tariff(r) for r in await conn.fetch(f"SELECT {_COLUMNS} FROM rate_schedules")]


async def list_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM rate_schedules ORDER BY name, effective_from"
    )
    return rows


async def update_tariff(
    conn: asyncpg.Connection, tariff_id: str, tariff: Tariff, effective_from: dt.datetime
) -> None:
    await conn.execute(
        "UPDATE rate_schedules SET name = $2, effective_from = $3, currency = $4, timezone = $5,"
        " definition = $6::text::jsonb, updated_at = now() WHERE id = $1",
        tariff_id,
        tariff.name,
        effective_from,
        tariff.currency,
        tariff.timezone,
        orjson.dumps(tariff.to_json()).decode(),
    )


async def delete_tariff(conn: asyncpg.Connection, tariff_id: str) -> bool:
    """Delete one version; False when there was none."""
    deleted = await conn.fetchval("DELETE FROM rate_schedules WHERE id = $1 RETURNING id", tariff_id)
    return deleted is not None


async def activate(conn: asyncpg.Connection, tariff_id: str) -> None:
    # Two statements: the one-active unique index is checked row by row, so a single UPDATE that turns
    # one row on and another off fails whenever it reaches the new row first (re-activating a tariff).
    async with conn.transaction():
        await conn.execute("UPDATE rate_schedules SET active = false WHERE active AND id <> $1", tariff_id)
        await conn.execute("UPDATE rate_schedules SET active = true WHERE id = $1 AND NOT active", tariff_id)
