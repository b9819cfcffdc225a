"""Parameterised SQL for the API's data routes, split by area (devices, metrics, alerts, cloud costs,
plugins).

Every function takes anything with asyncpg's query methods (a pool or a connection), so callers choose
whether a call runs in its own transaction. User values only ever travel as bind parameters; the few
identifiers chosen at run time (rollup table, aggregate column) come from fixed whitelists in this package.
JSONB travels as text (``$n::text::jsonb`` / ``col::text``) so the queries do not depend on which codecs
the pool registered.
"""

from __future__ import annotations

from typing import Any, Protocol


class Queryable(Protocol):
    """The subset of ``asyncpg.Pool`` / ``asyncpg.Connection`` the queries use."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...
