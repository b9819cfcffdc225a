"""Auth operations that change state: login, refresh (rotation), logout, users, API keys, first admin.

Each writes the database first, then updates the in-memory store of this process (other processes
learn through NOTIFY), so an answer never claims something the database did not keep.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from aetherlens.auth import queries as q
from aetherlens.auth.errors import InvalidTokenError
from aetherlens.auth.keys import REFRESH_PATTERN, digest, new_api_key, new_refresh_token
from aetherlens.auth.passwords import hash_password_async, verify_password_async
from aetherlens.auth.principal import ROLES, SCOPES
from aetherlens.auth.store import CredentialStore, KeyEntry, SessionEntry, UserEntry
from aetherlens.auth.tokens import issue_access_token
from aetherlens.config import Settings
from aetherlens.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError

log = logging.getLogger("aetherlens.auth")
ADMIN_USER = "admin"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: str
    name: str
    scopes: list[str]
    key: str


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def check_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise ValidationError(f"an API key needs at least one scope of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValidationError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


class AuthService:
    def __init__(self, pool: asyncpg.Pool, store: CredentialStore, settings: Settings) -> None:
        self.pool = pool
        self.store = store
        self.settings = settings

    # -- sessions -----------------------------------------------------------------------------------------
    async def login(self, username: str, password: str, client_ip: str | None = None) -> TokenPair:
        row = await q.get_user(self.pool, username)
        ok = await verify_password_async(row["password_hash"] if row else None, password)
        if row is None or not ok:
            log.info("login failed", extra={"user": username[:64]})
            raise AuthenticationError("wrong username or password")
        await q.touch_login(self.pool, row["id"])
        family_id = str(uuid.uuid4())
        async with self.pool.acquire() as conn:
            refresh = await self._issue_refresh(conn, family_id, row["id"], client_ip)
        return self._pair(row["id"], row["name"], family_id, refresh)

    async def _issue_refresh(
        self, conn: asyncpg.Connection, family_id: str, user_id: str, client_ip: str | None
    ) -> tuple[str, str]:
        refresh = new_refresh_token()
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.auth.refresh_token_ttl)
        token_id = await q.insert_refresh(
            conn, family_id, user_id, digest(self.store.secret, refresh), expires, client_ip
        )
        self.store.put_session(SessionEntry(family_id, user_id, expires.timestamp()))
        return refresh, token_id

    def _pair(self, user_id: str, user_name: str, family_id: str, refresh: tuple[str, str]) -> TokenPair:
        ttl = self.settings.auth.access_token_ttl
        access = issue_access_token(
            self.store.secret, user_id=user_id, user_name=user_name, session_id=family_id, ttl=ttl
        )
        return TokenPair(access, refresh[0], ttl)

    async def refresh(self, refresh_token: str, client_ip: str | None = None) -> TokenPair:
        if REFRESH_PATTERN.match(refresh_token) is None:
            raise InvalidTokenError("refresh token is malformed")
        presented = digest(self.store.secret, refresh_token)
        async with self.pool.acquire() as conn:
            row = await q.find_refresh(conn, presented)
            if row is None:
                raise InvalidTokenError("refresh token is invalid; log in again")
            async with conn.transaction():
                consumed = await q.consume_refresh(conn, row["id"])
                if consumed:
                    new = await self._issue_refresh(conn, row["family_id"], row["user_id"], client_ip)
                    await q.link_replacement(conn, row["id"], new[1])
            if not consumed:
                if row["revoked_at"] is not None:
                    # A rotated-away token came back: someone holds a copy. End the whole session.
                    await q.revoke_family(conn, row["family_id"])
                    self.store.drop_sessions([row["family_id"]])
                raise InvalidTokenError("refresh token is expired or revoked; log in again")
        return self._pair(row["user_id"], row["user_name"], row["family_id"], new)

    async def logout(self, session_id: str | None, refresh_token: str | None) -> None:
        families = {session_id} if session_id else set()
        if refresh_token and REFRESH_PATTERN.match(refresh_token):
            row = await q.find_refresh(self.pool, digest(self.store.secret, refresh_token))
            if row is not None:
                families.add(row["family_id"])
        for family in families:
            await q.revoke_family(self.pool, family)
        self.store.drop_sessions(sorted(families))

    # -- users --------------------------------------------------------------------------------------------
    async def create_user(self, name: str, role: str, password: str) -> Any:
        check_role(role)
        password_hash = await hash_password_async(password)
        row = await q.insert_user(self.pool, name, role, password_hash)
        if row is None:
            raise ConflictError(f"user {name!r} already exists", details={"name": name})
        self.store.put_user(UserEntry(row["id"], row["name"], row["role"]))
        return row

    async def update_user(self, name: str, *, role: str | None, password: str | None) -> Any:
        if role is not None:
            check_role(role)
        password_hash = await hash_password_async(password) if password is not None else None
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise admin changes so two demotions cannot both pass the last-admin check.
            await conn.execute("SELECT pg_advisory_xact_lock(4045)")
            current = await q.get_user(conn, name)
            if current is None:
                raise NotFoundError(f"no user {name!r}", details={"name": name})
            if current["role"] == "admin" and role not in (None, "admin") and await q.count_admins(conn) <= 1:
                raise ConflictError("cannot demote the last admin", details={"name": name})
            row = await q.update_user(conn, name, role=role, password_hash=password_hash)
            revoked = await q.revoke_user_sessions(conn, row["id"]) if password is not None else []
        self.store.put_user(UserEntry(row["id"], row["name"], row["role"]))
        self.store.drop_sessions(revoked)
        return row

    async def delete_user(self, name: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(4045)")
            current = await q.get_user(conn, name)
            if current is None:
                raise NotFoundError(f"no user {name!r}", details={"name": name})
            if current["role"] == "admin" and await q.count_admins(conn) <= 1:
                raise ConflictError("cannot delete the last admin", details={"name": name})
            await q.revoke_user_sessions(conn, current["id"])
            await q.delete_user(conn, name)
        self.store.drop_user(current["id"])

    # -- API keys -----------------------------------------------------------------------------------------
    async def create_key(self, name: str, scopes: list[str], created_by: str | None = None) -> CreatedKey:
        scopes = check_scopes(scopes)
        if not name.strip():
            raise ValidationError("an API key needs a name")
        for _ in range(5):  # the 32-bit lookup prefix may collide; the secret never does
            prefix, key = new_api_key()
            try:
                row = await q.insert_key(
                    self.pool, name, prefix, digest(self.store.secret, key), scopes, created_by
                )
            except asyncpg.UniqueViolationError:
                continue
            self.store.put_key(
                KeyEntry(row["id"], name, prefix, digest(self.store.secret, key), frozenset(scopes))
            )
            return CreatedKey(row["id"], name, scopes, key)
        raise ConflictError("could not allocate a unique key prefix; try again")

    async def revoke_key(self, key_id: str) -> None:
        if not _is_uuid(key_id) or not await q.revoke_key(self.pool, key_id):
            raise NotFoundError(f"no API key {key_id!r}", details={"id": key_id})
        self.store.drop_key(key_id)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def ensure_admin(pool: asyncpg.Pool, settings: Settings) -> str | None:
    """Create user ``admin`` if absent. Returns the generated password (to show once) or None when the
    user existed or the password came from ``auth.admin_password``. Never logs the password."""
    if await q.get_user(pool, ADMIN_USER) is not None:
        return None
    configured = settings.auth.admin_password
    password = configured or secrets.token_urlsafe(18)
    row = await q.insert_user(pool, ADMIN_USER, "admin", await hash_password_async(password))
    if row is None:  # created concurrently by another process
        return None
    log.info("created user 'admin'")
    return None if configured else password
