"""Shared by the ``api-keys`` and ``users`` commands: the auth service on the application database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aetherlens.auth.keys import signing_secret
from aetherlens.auth.service import AuthService
from aetherlens.auth.store import CredentialStore
from aetherlens.config import Settings
from aetherlens.db.database import open_database


@asynccontextmanager
async def auth_service(settings: Settings) -> AsyncIterator[AuthService]:
    """A running core learns of the change through NOTIFY (migration 040), so nothing else is needed."""
    database = await open_database(settings)
    try:
        store = CredentialStore(database.pool, signing_secret(settings))
        yield AuthService(database.pool, store, settings)
    finally:
        await database.close()
