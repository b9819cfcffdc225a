"""Credentials in memory, kept current from the database.

Every request is authenticated from this snapshot (users and their roles, live login sessions, i.e.
refresh-token families, API
key digests), never with a query, so ingest keeps being accepted while the database is down. The
snapshot is loaded at start, reloaded when PostgreSQL notifies a change (triggers in migration 040 call
``pg_notify('aetherlens_auth', ...)``: the CLI or a second process changing a key is seen at once) and
every ``refresh_interval`` seconds as a safety net. Changes made by this process update it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from aetherlens.auth import queries as q
from aetherlens.auth.errors import InvalidTokenError
from aetherlens.auth.keys import API_KEY_PATTERN, digest, digests_equal
from aetherlens.auth.principal import ROLE_SCOPES, Principal
from aetherlens.auth.tokens import decode_access_token

log = logging.getLogger("aetherlens.auth")
CHANNEL: Final = "aetherlens_auth"


@dataclass(frozen=True, slots=True)
class UserEntry:
    id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: str
    name: str
    prefix: str
    digest: str
    scopes: frozenset[str]
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SessionEntry:
    id: str
    user_id: str
    expires_at: float


class CredentialStore:
    def __init__(self, pool: asyncpg.Pool, secret: bytes, *, refresh_interval: float = 30.0) -> None:
        self.pool = pool
        self.secret = secret
        self.refresh_interval = refresh_interval
        self.users: dict[str, UserEntry] = {}  # by id
        self.keys: dict[str, KeyEntry] = {}  # by prefix
        self.sessions: dict[str, SessionEntry] = {}  # active only, by id
        self.loaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        # Bumped by every local change; a reload that overlapped one fetches again, so a snapshot
        # read before a change can never overwrite it.
        self._version = 0
        # API key id -> last use (epoch); written to api_tokens.last_used_at in batches by the
        # follower, never on the request path.
        self._key_use: dict[str, float] = {}
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    # -- authentication (memory only) ----------------------------------------------------------------
    def authenticate(self, token: str) -> Principal:
        if token.startswith("al_"):
            return self._authenticate_key(token)
        claims = decode_access_token(self.secret, token)
        session = self.sessions.get(claims.session_id)
        if session is None or session.user_id != claims.user_id:
            raise InvalidTokenError("access token was revoked (logged out or password changed)")
        user = self.users.get(claims.user_id)
        if user is None:
            raise InvalidTokenError("access token belongs to a user that no longer exists")
        return Principal(
            kind="user",
            id=user.id,
            name=user.name,
            scopes=ROLE_SCOPES[user.role],
            session_id=session.id,
            expires_at=claims.expires_at,
        )

    def _authenticate_key(self, token: str) -> Principal:
        match = API_KEY_PATTERN.match(token)
        entry = self.keys.get(match.group(1)) if match else None
        if entry is None or not digests_equal(entry.digest, digest(self.secret, token)):
            raise InvalidTokenError("API key is invalid or revoked")
        now = time.time()
        if entry.expires_at is not None and entry.expires_at <= now:
            raise InvalidTokenError("API key has expired")
        self._key_use[entry.id] = now
        return Principal(
            kind="api_key", id=entry.id, name=entry.name, scopes=entry.scopes, expires_at=entry.expires_at
        )

    def is_current(self, principal: Principal) -> bool:
        """Whether a principal authenticated earlier still holds: its key, or its session and user, are
        still live and it has not expired. From memory, for connections that outlive one request."""
        if principal.expires_at is not None and principal.expires_at <= time.time():
            return False
        if principal.kind == "api_key":
            return any(k.id == principal.id for k in self.keys.values())
        session = self.sessions.get(principal.session_id or "")
        return session is not None and session.user_id == principal.id and principal.id in self.users

    # -- change notifications ------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs after every change of the snapshot: made here, or reloaded after another
        process's change (NOTIFY) or the periodic refresh. It must not block."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _changed(self) -> None:
        self._version += 1
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # one listener's bug must not stop the others or the caller's change
                log.exception("credential change listener failed")

    def user_by_name(self, name: str) -> UserEntry | None:
        return next((u for u in self.users.values() if u.name == name), None)

    # -- updates made by this process ----------------------------------------------------------------
    def put_user(self, user: UserEntry) -> None:
        self.users[user.id] = user
        self._changed()

    def drop_user(self, user_id: str) -> None:
        self.users.pop(user_id, None)
        for sid in [s.id for s in self.sessions.values() if s.user_id == user_id]:
            del self.sessions[sid]
        self._changed()

    def put_session(self, session: SessionEntry) -> None:
        self.sessions[session.id] = session
        self._changed()

    def drop_sessions(self, session_ids: list[str]) -> None:
        for sid in session_ids:
            self.sessions.pop(sid, None)
        self._changed()

    def put_key(self, key: KeyEntry) -> None:
        self.keys[key.prefix] = key
        self._changed()

    def drop_key(self, key_id: str) -> None:
        for prefix in [k.prefix for k in self.keys.values() if k.id == key_id]:
            del self.keys[prefix]
        self._changed()

    # -- loading ---------------------------------------------------------------------------------------
    async def load(self) -> None:
        for _ in range(5):
            version = self._version
            async with self.pool.acquire() as conn:
                users, keys, sessions = await q.load_all(conn)
            if version == self._version:
                break
        self.users = {u["id"]: UserEntry(u["id"], u["name"], u["role"]) for u in users}
        self.keys = {
            k["prefix"]: KeyEntry(
                k["id"],
                k["name"],
                k["prefix"],
                k["digest"],
                frozenset(k["scopes"]),
                _epoch(k["expires_at"]) if k["expires_at"] is not None else None,
            )
            for k in keys
        }
        self.sessions = {
            s["id"]: SessionEntry(s["id"], s["user_id"], _epoch(s["expires_at"])) for s in sessions
        }
        self.loaded_at = time.time()
        self._changed()

    async def start(self) -> None:
        """Initial load (must succeed), then a background task that follows changes."""
        await self.load()
        self._task = asyncio.create_task(self._follow(), name="credential-store")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # best effort: last-use times are informational
            await self.flush_key_use()

    async def _follow(self) -> None:
        """LISTEN for changes on a dedicated connection; reload on notify and periodically. Survives
        outages: while the database is gone the last snapshot keeps serving."""
        while True:
            conn: Any = None
            try:
                conn = await self.pool.acquire(timeout=10)
                await conn.add_listener(CHANNEL, self._on_notify)
                self._wake.clear()
                await self.load()  # changes made while we were not listening
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.refresh_interval)
                    # Cleared before the reload, so a change notified while it runs wakes the next round
                    # instead of being lost until the periodic refresh.
                    self._wake.clear()
                    self._prune_expired()
                    await self.flush_key_use()
                    await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("credential refresh failed (%s); serving the last snapshot", type(exc).__name__)
                await asyncio.sleep(min(self.refresh_interval, 5.0))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(CHANNEL, self._on_notify)
                    with contextlib.suppress(Exception):
                        await self.pool.release(conn)

    async def flush_key_use(self) -> None:
        async with self._flush_lock:  # returns only after any flush in flight is written
            if not self._key_use:
                return
            used, self._key_use = self._key_use, {}
            try:
                stamps = [datetime.fromtimestamp(t, UTC) for t in used.values()]
                await q.mark_keys_used(self.pool, list(used), stamps)
            except Exception:
                for key_id, stamp in used.items():  # keep them for the next attempt
                    self._key_use.setdefault(key_id, stamp)
                raise

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    def _prune_expired(self) -> None:
        now = time.time()
        for sid in [s.id for s in self.sessions.values() if s.expires_at <= now]:
            del self.sessions[sid]


def _epoch(value: datetime) -> float:
    return value.timestamp()
