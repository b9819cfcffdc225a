"""Login, token expiry, refresh rotation, revocation (logout, password change), API keys, rate limits,
first admin, and credentials checked from memory while the database is gone."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dbtest import ADMIN_DSN

from aetherlens.api.security import STORE_KEY
from aetherlens.auth import queries as q
from aetherlens.auth.keys import SECRET_FILE, digest, new_api_key
from aetherlens.auth.service import ensure_admin
from aetherlens.auth.tokens import issue_access_token

from .conftest import ADMIN_PASSWORD, USER_PASSWORD, MakeApi, api_settings
from .test_framework import assert_envelope


async def test_login_and_bearer_access(make_api: MakeApi) -> None:
    api = await make_api()
    tokens = await api.login()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["refresh_token"].startswith("rt_")
    resp = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert resp.status == 200
    info = await resp.json()
    assert info == {
        "instance_id": "test-instance",
        "version": "0.1.0-test",
        "api_version": 1,
        "currency": "USD",
        "timezone": api.settings.site.timezone,
        "capabilities": {"timescaledb": False, "timescaledb_tsl": False},
    }


async def test_login_failures(make_api: MakeApi) -> None:
    api = await make_api()
    for payload in (
        {"username": "admin", "password": "wrong-password-xx"},
        {"username": "nobody", "password": "x"},
    ):
        resp = await api.client.post("/api/v1/auth/login", json=payload)
        assert resp.status == 401
        assert_envelope(await resp.json(), "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await api.client.post("/api/v1/auth/login", json={"username": "admin"})
    assert resp.status == 400
    assert "body.password" in assert_envelope(await resp.json(), "validation_error")["message"]


async def test_missing_and_invalid_tokens_are_401_with_challenge(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get("/api/v1/info")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert_envelope(await resp.json(), "unauthorized")
    for token in ("garbage", "al_deadbeef_" + "x" * 43, "Basic abc"):
        header = token if token.startswith("Basic") else f"Bearer {token}"
        resp = await api.client.get("/api/v1/info", headers={"Authorization": header})
        assert resp.status == 401, token
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_expired_access_token_is_rejected(make_api: MakeApi) -> None:
    api = await make_api()
    await api.login()  # creates a live session we can mint a token for
    store = api.app[STORE_KEY]
    session = next(iter(store.sessions.values()))
    admin = store.users[session.user_id]
    old = issue_access_token(
        store.secret,
        user_id=admin.id,
        user_name=admin.name,
        session_id=session.id,
        ttl=60,
        now=time.time() - 120,
    )
    resp = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401
    err = assert_envelope(await resp.json(), "invalid_token")
    assert "expired" in err["message"]
    fresh = issue_access_token(
        store.secret, user_id=admin.id, user_name=admin.name, session_id=session.id, ttl=60
    )
    resp = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {fresh}"})
    assert resp.status == 200


async def test_access_token_ttl_is_configurable(make_api: MakeApi) -> None:
    api = await make_api(auth={"access_token_ttl": 60})
    assert (await api.login())["expires_in"] == 60


async def test_refresh_rotates_and_replay_revokes_the_session(make_api: MakeApi) -> None:
    api = await make_api()
    first = await api.login()
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    h2 = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await api.client.get("/api/v1/info", headers=h2)).status == 200

    # The old refresh token was revoked by the rotation; presenting it again ends the whole session.
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 401
    assert_envelope(await resp.json(), "invalid_token")
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status == 401
    assert (await api.client.get("/api/v1/info", headers=h2)).status == 401

    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_" + "a" * 43})
    assert resp.status == 401
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": 5})
    assert resp.status == 400


async def test_expired_refresh_token_is_401(make_api: MakeApi) -> None:
    api = await make_api()
    tokens = await api.login()
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE auth_sessions SET expires_at = now() - interval '1 second'")
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401
    assert_envelope(await resp.json(), "invalid_token")


async def test_logout_revokes_access_and_refresh(make_api: MakeApi) -> None:
    api = await make_api()
    tokens = await api.login()
    other = await api.login()  # a second session stays valid
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    resp = await api.client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=h
    )
    assert resp.status == 204
    assert (await api.client.get("/api/v1/info", headers=h)).status == 401
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401
    h_other = {"Authorization": f"Bearer {other['access_token']}"}
    assert (await api.client.get("/api/v1/info", headers=h_other)).status == 200
    # Logout without a body is fine too; without a token it is a 401.
    assert (await api.client.post("/api/v1/auth/logout", headers=h_other)).status == 204
    assert (await api.client.post("/api/v1/auth/logout")).status == 401


async def test_password_change_revokes_sessions(make_api: MakeApi) -> None:
    api = await make_api()
    admin = await api.headers("admin")
    await api.auth.create_user("alice", "viewer", USER_PASSWORD)
    alice = await api.login("alice", USER_PASSWORD)
    h = {"Authorization": f"Bearer {alice['access_token']}"}
    assert (await api.client.get("/api/v1/info", headers=h)).status == 200
    resp = await api.client.patch(
        "/api/v1/users/alice", json={"password": "a-new-password-42"}, headers=admin
    )
    assert resp.status == 200
    assert (await api.client.get("/api/v1/info", headers=h)).status == 401
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": alice["refresh_token"]})
    assert resp.status == 401
    await api.login("alice", "a-new-password-42")
    resp = await api.client.post("/api/v1/auth/login", json={"username": "alice", "password": USER_PASSWORD})
    assert resp.status == 401


async def test_role_change_applies_to_live_tokens(make_api: MakeApi) -> None:
    api = await make_api()
    admin = await api.headers("admin")
    viewer = await api.headers("viewer")
    assert (await api.client.get("/api/v1/users", headers=viewer)).status == 403
    resp = await api.client.patch("/api/v1/users/viewer-user", json={"role": "admin"}, headers=admin)
    assert resp.status == 200
    assert (await api.client.get("/api/v1/users", headers=viewer)).status == 200


async def test_api_keys_lifecycle_and_scopes(make_api: MakeApi) -> None:
    api = await make_api()
    admin = await api.headers("admin")
    resp = await api.client.post(
        "/api/v1/auth/api-keys", json={"name": "grafana", "scopes": ["read"]}, headers=admin
    )
    assert resp.status == 201
    created = await resp.json()
    key = created["key"]
    assert key.startswith("al_") and len(key) == 3 + 8 + 1 + 43
    assert created["scopes"] == ["read"]

    stored = await api.pool.fetchrow(
        "SELECT key_digest, key_prefix FROM api_tokens WHERE id = $1::uuid", created["id"]
    )
    assert key not in stored["key_digest"] and len(stored["key_digest"]) == 64  # HMAC-SHA256 hex
    assert key.split("_")[1] == stored["key_prefix"]

    resp = await api.client.get("/api/v1/auth/api-keys", headers=admin)
    listed = (await resp.json())["items"]
    assert [k["name"] for k in listed] == ["grafana"]
    assert "key" not in listed[0] and key not in await resp.text()

    kh = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/api/v1/info", headers=kh)).status == 200
    resp = await api.client.get("/api/v1/users", headers=kh)
    assert resp.status == 403
    assert assert_envelope(await resp.json(), "forbidden")["details"]["required_scope"] == "admin"

    ingest_key = await api.key(["ingest"])
    resp = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {ingest_key}"})
    assert resp.status == 403

    await api.app[STORE_KEY].flush_key_use()  # the follower does this every refresh interval
    resp = await api.client.get("/api/v1/auth/api-keys", headers=admin)
    grafana = next(k for k in (await resp.json())["items"] if k["name"] == "grafana")
    assert grafana["last_used_at"] is not None

    resp = await api.client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=admin)
    assert resp.status == 204
    assert (await api.client.get("/api/v1/info", headers=kh)).status == 401
    resp = await api.client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=admin)
    assert resp.status == 404
    assert (await api.client.delete("/api/v1/auth/api-keys/not-a-uuid", headers=admin)).status == 404

    for payload in (
        {"name": "x", "scopes": ["superuser"]},
        {"name": "x", "scopes": []},
        {"name": "", "scopes": ["read"]},
    ):
        resp = await api.client.post("/api/v1/auth/api-keys", json=payload, headers=admin)
        assert resp.status == 400, payload
    viewer = await api.headers("viewer")
    resp = await api.client.post(
        "/api/v1/auth/api-keys", json={"name": "x", "scopes": ["read"]}, headers=viewer
    )
    assert resp.status == 403


async def test_key_created_elsewhere_is_seen_through_notify(make_api: MakeApi) -> None:
    """The CLI writes to the database directly; the running API learns of it by NOTIFY, not by polling."""
    api = await make_api()
    store = api.app[STORE_KEY]
    store.refresh_interval = 3600  # make sure the periodic refresh is not what picks it up
    await asyncio.sleep(0)
    prefix, key = new_api_key()
    conn = await asyncpg.connect(api.dsn)
    try:
        row = await q.insert_key(conn, "from-cli", prefix, digest(store.secret, key), ["read"], None)
    finally:
        await conn.close()
    h = {"Authorization": f"Bearer {key}"}
    for _ in range(400):  # wait (bounded) for the notification to be processed
        if prefix in store.keys:
            break
        await asyncio.sleep(0.025)
    assert (await api.client.get("/api/v1/info", headers=h)).status == 200
    conn = await asyncpg.connect(api.dsn)
    try:
        await q.revoke_key(conn, row["id"])
    finally:
        await conn.close()
    for _ in range(400):
        if prefix not in store.keys:
            break
        await asyncio.sleep(0.025)
    assert (await api.client.get("/api/v1/info", headers=h)).status == 401


async def test_credentials_checked_from_memory_while_database_is_gone(make_api: MakeApi) -> None:
    api = await make_api()
    key = await api.key(["read", "ingest"])
    token = await api.token("viewer")
    admin_headers = await api.headers("admin")
    # A real outage of this database: every connection is terminated and the database disappears.
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        name = api.dsn.rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    for credential in (key, token):
        resp = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {credential}"})
        assert resp.status == 200, await resp.text()
    resp = await api.client.get("/api/v1/info", headers={"Authorization": "Bearer al_00000000_" + "x" * 43})
    assert resp.status == 401
    # Routes that need the database say so with a 503, not a 500.
    resp = await api.client.get("/api/v1/users", headers=admin_headers)
    assert resp.status == 503
    assert_envelope(await resp.json(), "database_unavailable")
    assert resp.headers["Retry-After"] == "5"
    resp = await api.client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 503  # logging in needs the database; using a live token does not
    resp = await api.client.get("/health/ready")
    assert resp.status == 503
    assert (await resp.json())["checks"]["database"]["status"] == "failing"


async def test_login_rate_limit_per_ip(make_api: MakeApi) -> None:
    api = await make_api(api={"rate_limit": {"login_per_minute": 3}})
    statuses = []
    for _ in range(4):
        resp = await api.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "wrong-password-x"}
        )
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    assert_envelope(await resp.json(), "rate_limited")
    # Unauthenticated requests share the per-IP budget (key guessing is throttled like passwords)...
    resp = await api.client.get("/api/v1/info", headers={"Authorization": "Bearer al_00000000_" + "y" * 43})
    assert resp.status == 429
    # ...but public routes are not limited.
    assert (await api.client.get("/health/live")).status == 200


async def test_principal_rate_limit(make_api: MakeApi) -> None:
    api = await make_api(api={"rate_limit": {"principal_per_minute": 5}})
    key = await api.key(["read"])
    h = {"Authorization": f"Bearer {key}"}
    statuses = [(await api.client.get("/api/v1/info", headers=h)).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    other = await api.key(["read"], name="other")  # budgets are per principal
    assert (await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {other}"})).status == 200


async def test_default_limits_do_not_throttle_normal_use(make_api: MakeApi) -> None:
    """A Grafana dashboard: 10 panels every 10 s for a minute = 60 requests on one key."""
    api = await make_api()
    h = {"Authorization": f"Bearer {await api.key(['read'])}"}
    for _ in range(60):
        assert (await api.client.get("/api/v1/info", headers=h)).status == 200


async def test_ensure_admin_and_signing_secret_file(api_dsn: str, tmp_path: Path) -> None:
    settings = api_settings(tmp_path / "d", auth={"admin_password": None})
    conn = await asyncpg.connect(api_dsn)
    pool = await asyncpg.create_pool(api_dsn, min_size=1, max_size=2)
    try:
        await conn.execute("DELETE FROM users")
        password = await ensure_admin(pool, settings)
        assert password is not None and len(password) >= 12
        assert await ensure_admin(pool, settings) is None  # exists now: nothing shown again
        row = await conn.fetchrow("SELECT role, password_hash FROM users WHERE name = 'admin'")
        assert row["role"] == "admin" and row["password_hash"].startswith("$argon2")
        assert password not in row["password_hash"]
        await conn.execute("DELETE FROM users")
        configured = api_settings(tmp_path / "d", auth={"admin_password": ADMIN_PASSWORD})
        assert await ensure_admin(pool, configured) is None
    finally:
        await pool.close()
        await conn.close()

    from aetherlens.auth.keys import signing_secret

    secret = signing_secret(settings)
    path = settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_secret(settings) == secret  # stable across restarts
    configured_secret = api_settings(tmp_path / "e", auth={"secret_key": "k" * 40})
    assert signing_secret(configured_secret) == b"k" * 40
    assert not (configured_secret.data_dir / SECRET_FILE).exists()


async def test_secrets_never_logged(make_api: MakeApi, caplog: Any) -> None:
    caplog.set_level("DEBUG")
    api = await make_api()
    tokens = await api.login()
    await api.client.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong-password-zz"})
    key = await api.key(["read"])
    await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {key}"})
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (ADMIN_PASSWORD, "wrong-password-zz", tokens["access_token"], tokens["refresh_token"], key):
        assert secret not in text
    assert "aetherlens.api.access" in {r.name for r in caplog.records}


@pytest.mark.parametrize("bad", ["short", "x" * 11])
async def test_password_policy(make_api: MakeApi, bad: str) -> None:
    api = await make_api()
    resp = await api.client.post(
        "/api/v1/users", json={"name": "bob", "role": "viewer", "password": bad}, headers=await api.headers()
    )
    assert resp.status == 400
    assert "body.password" in assert_envelope(await resp.json(), "validation_error")["message"]
