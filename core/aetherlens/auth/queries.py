"""SQL of the auth module (users, api_tokens, auth_sessions). Parameterised; ids are returned as text
so callers never depend on the column type."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# asyncpg.Connection or asyncpg.Pool (asyncpg ships no type hints).
type Conn = Any


async def load_all(conn: Conn) -> tuple[list[Any], list[Any], list[Any]]:
    users = await conn.fetch("SELECT id::text AS id, name, role FROM users")
    keys = await conn.fetch(
        "SELECT id::text AS id, name, key_prefix AS prefix, key_digest AS digest, scopes, expires_at "
        "FROM api_tokens WHERE revoked_at IS NULL AND key_prefix IS NOT NULL "
        "AND (expires_at IS NULL OR expires_at > now())"
    )
    # A login session is a refresh-token family; it is alive while one of its tokens is.
    sessions = await conn.fetch(
        "SELECT family_id::text AS id, min(user_id)::text AS user_id, max(expires_at) AS expires_at "
        "FROM auth_sessions WHERE revoked_at IS NULL AND expires_at > now() GROUP BY family_id"
    )
    return list(users), list(keys), list(sessions)


# -- users ------------------------------------------------------------------------------------------------
_USER_COLS = "id::text AS id, name, role, created_at, updated_at"


async def list_users(conn: Conn) -> list[Any]:
    return list(await conn.fetch(f"SELECT {_USER_COLS} FROM users ORDER BY name"))


async def get_user(conn: Conn, name: str) -> Any:
    return await conn.fetchrow(f"SELECT {_USER_COLS}, password_hash FROM users WHERE name = $1", name)


async def insert_user(conn: Conn, name: str, role: str, password_hash: str) -> Any:
    return await conn.fetchrow(
        f"INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) "
        f"ON CONFLICT (name) DO NOTHING RETURNING {_USER_COLS}",
        name,
        role,
        password_hash,
    )


async def update_user(conn: Conn, name: str, *, role: str | None, password_hash: str | None) -> Any:
    return await conn.fetchrow(
        f"UPDATE users SET role = COALESCE($2, role), password_hash = COALESCE($3, password_hash), "
        f"updated_at = now() WHERE name = $1 RETURNING {_USER_COLS}",
        name,
        role,
        password_hash,
    )


async def delete_user(conn: Conn, name: str) -> str | None:
    value: str | None = await conn.fetchval("DELETE FROM users WHERE name = $1 RETURNING id::text", name)
    return value


async def count_admins(conn: Conn) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM users WHERE role = 'admin'")
    return value


# -- refresh sessions (one row per refresh token; a login is a family of them) -------------------------
async def insert_refresh(
    conn: Conn, family_id: str, user_id: str, token_digest: str, expires_at: datetime, client_ip: str | None
) -> str:
    value: str = await conn.fetchval(
        "INSERT INTO auth_sessions (family_id, user_id, token_digest, expires_at, client_ip) "
        "VALUES ($1::uuid, $2, $3, $4, $5::inet) RETURNING id::text",
        family_id,
        int(user_id),
        token_digest,
        expires_at,
        client_ip,
    )
    return value


async def find_refresh(conn: Conn, token_digest: str) -> Any:
    return await conn.fetchrow(
        "SELECT s.id::text AS id, s.family_id::text AS family_id, s.user_id::text AS user_id, s.expires_at, "
        "s.revoked_at, u.name AS user_name FROM auth_sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.token_digest = $1",
        token_digest,
    )


async def consume_refresh(conn: Conn, token_id: str) -> bool:
    """Revoke the presented token if it is still current; False when it was used (or revoked) already."""
    row = await conn.fetchval(
        "UPDATE auth_sessions SET revoked_at = now() WHERE id = $1::uuid AND revoked_at IS NULL "
        "AND expires_at > now() RETURNING 1",
        token_id,
    )
    return row is not None


async def link_replacement(conn: Conn, old_id: str, new_id: str) -> None:
    await conn.execute("UPDATE auth_sessions SET replaced_by = $2::uuid WHERE id = $1::uuid", old_id, new_id)


async def revoke_family(conn: Conn, family_id: str) -> None:
    await conn.execute(
        "UPDATE auth_sessions SET revoked_at = now() WHERE family_id = $1::uuid AND revoked_at IS NULL",
        family_id,
    )


async def revoke_user_sessions(conn: Conn, user_id: str) -> list[str]:
    rows = await conn.fetch(
        "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL "
        "RETURNING family_id::text AS id",
        int(user_id),
    )
    return sorted({r["id"] for r in rows})


async def touch_login(conn: Conn, user_id: str) -> None:
    await conn.execute("UPDATE users SET last_login_at = now() WHERE id = $1", int(user_id))


# -- API keys ---------------------------------------------------------------------------------------------
_KEY_COLS = "id::text AS id, name, key_prefix AS prefix, scopes, created_at, last_used_at, expires_at"


async def insert_key(
    conn: Conn, name: str, prefix: str, key_digest: str, scopes: list[str], created_by: str | None
) -> Any:
    return await conn.fetchrow(
        "INSERT INTO api_tokens (name, key_prefix, key_digest, scopes, created_by) "
        f"VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY_COLS}",
        name,
        prefix,
        key_digest,
        scopes,
        int(created_by) if created_by is not None else None,
    )


async def list_keys(conn: Conn) -> list[Any]:
    return list(
        await conn.fetch(
            f"SELECT {_KEY_COLS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
        )
    )


async def revoke_key(conn: Conn, key_id: str) -> bool:
    row = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1::uuid AND revoked_at IS NULL RETURNING 1",
        key_id,
    )
    return row is not None


async def mark_keys_used(conn: Conn, key_ids: list[str], used_at: list[datetime]) -> None:
    await conn.execute(
        "UPDATE api_tokens AS t SET last_used_at = u.used_at "
        "FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, used_at) "
        "WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.used_at)",
        key_ids,
        used_at,
    )
