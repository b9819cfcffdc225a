"""The core's asyncpg pool: named ``aetherlens-core`` and decoding json/jsonb with orjson.

The application name is load-bearing: ``aetherlens restore`` refuses to run while connections with
this name are open on the target database.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from aetherlens.config import Settings

APPLICATION_NAME = "aetherlens-core"


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary wire format is a version byte (1) followed by the JSON text.
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Install the JSON codecs on a connection (the pool does this for each of its connections)."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=orjson.dumps, decoder=orjson.loads, format="binary"
    )


def server_settings(application_name: str = APPLICATION_NAME) -> dict[str, str]:
    # UTC sessions make date_trunc and friends independent of the server's configured zone.
    return {"application_name": application_name, "TimeZone": "UTC"}


async def create_pool(
    dsn: str, settings: Settings, *, min_size: int | None = None, max_size: int | None = None
) -> asyncpg.Pool:
    """Open the pool; sizes default to ``database.pool_min_size``/``pool_max_size``."""
    maximum = max_size or settings.database.pool_max_size
    minimum = min(min_size or settings.database.pool_min_size, maximum)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=minimum,
        max_size=maximum,
        init=init_connection,
        server_settings=server_settings(),
    )
    return pool
