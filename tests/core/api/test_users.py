"""/api/v1/users (admin) and the `users` / `api-keys` CLI commands."""

from __future__ import annotations

import io
import json
import logging
import stat
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aetherlens import cli
from aetherlens.secrets import PREFIX, REDACTED, SecretBox, redact, secret_fields_of

from .conftest import USER_PASSWORD, MakeApi
from .test_framework import assert_envelope


async def test_users_crud(make_api: MakeApi) -> None:
    api = await make_api()
    h = await api.headers("admin")
    resp = await api.client.post(
        "/api/v1/users", json={"name": "carol", "role": "operator", "password": USER_PASSWORD}, headers=h
    )
    assert resp.status == 201
    created = await resp.json()
    assert created["name"] == "carol" and created["role"] == "operator"
    assert "password" not in created and "password_hash" not in created

    resp = await api.client.get("/api/v1/users", headers=h)
    assert [u["name"] for u in (await resp.json())["items"]] == ["admin", "carol"]
    resp = await api.client.get("/api/v1/users/carol", headers=h)
    assert (await resp.json())["role"] == "operator"

    resp = await api.client.patch("/api/v1/users/carol", json={"role": "viewer"}, headers=h)
    assert resp.status == 200 and (await resp.json())["role"] == "viewer"

    resp = await api.client.post(
        "/api/v1/users", json={"name": "carol", "role": "viewer", "password": USER_PASSWORD}, headers=h
    )
    assert resp.status == 409
    assert_envelope(await resp.json(), "conflict")

    resp = await api.client.delete("/api/v1/users/carol", headers=h)
    assert resp.status == 204
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"role": "viewer"}} if method == "patch" else {}
        resp = await getattr(api.client, method)("/api/v1/users/carol", headers=h, **kwargs)
        assert resp.status == 404, method
        assert_envelope(await resp.json(), "not_found")


async def test_deleted_user_tokens_stop_working(make_api: MakeApi) -> None:
    api = await make_api()
    h = await api.headers("admin")
    viewer = await api.headers("viewer")
    assert (await api.client.get("/api/v1/info", headers=viewer)).status == 200
    assert (await api.client.delete("/api/v1/users/viewer-user", headers=h)).status == 204
    assert (await api.client.get("/api/v1/info", headers=viewer)).status == 401


async def test_users_validation(make_api: MakeApi) -> None:
    api = await make_api()
    h = await api.headers("admin")
    cases = [
        ({"name": "dave", "role": "root", "password": USER_PASSWORD}, "body.role"),
        ({"name": "bad name!", "role": "viewer", "password": USER_PASSWORD}, "body.name"),
        ({"name": "dave", "role": "viewer"}, "body.password"),
        ({"name": "dave", "role": "viewer", "password": USER_PASSWORD, "admin": True}, "body.admin"),
    ]
    for payload, field in cases:
        resp = await api.client.post("/api/v1/users", json=payload, headers=h)
        assert resp.status == 400, payload
        assert field in assert_envelope(await resp.json(), "validation_error")["message"]
    resp = await api.client.patch("/api/v1/users/admin", json={"password": "short"}, headers=h)
    assert resp.status == 400


async def test_last_admin_is_protected(make_api: MakeApi) -> None:
    api = await make_api()
    h = await api.headers("admin")
    resp = await api.client.patch("/api/v1/users/admin", json={"role": "viewer"}, headers=h)
    assert resp.status == 409
    resp = await api.client.delete("/api/v1/users/admin", headers=h)
    assert resp.status == 409
    await api.auth.create_user("second", "admin", USER_PASSWORD)
    assert (await api.client.patch("/api/v1/users/admin", json={"role": "viewer"}, headers=h)).status == 200


async def test_users_need_admin(make_api: MakeApi) -> None:
    api = await make_api()
    for role in ("viewer", "operator"):
        resp = await api.client.get("/api/v1/users", headers=await api.headers(role))
        assert resp.status == 403
        assert_envelope(await resp.json(), "forbidden")


def _run_cli(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, stdin: str = ""
) -> tuple[int, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = cli.main(argv)
    finally:
        root.handlers[:] = handlers  # cli.main configures logging for the process; give it back
        root.setLevel(level)
        monkeypatch.undo()
    return code, out.getvalue()


async def test_cli_users_and_api_keys(api_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    env = {
        "AETHERLENS_DATABASE_URL": api_dsn,
        "AETHERLENS_DATA_DIR": str(tmp_path / "data"),
        "AETHERLENS_LOG__FORMAT": "text",
    }

    def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
        return _run_cli(argv, env, monkeypatch, stdin)

    code, out = await asyncio.to_thread(
        run, ["users", "create", "erin", "--role", "operator", "--password-stdin"], "erin-password-1234\n"
    )
    assert (code, out.strip()) == (0, "erin")
    code, _ = await asyncio.to_thread(
        run, ["users", "create", "frank", "--role", "viewer", "--password-stdin"], "short\n"
    )
    assert code == 1
    code, _ = await asyncio.to_thread(
        run, ["users", "set-password", "erin", "--password-stdin"], "erin-password-5678\n"
    )
    assert code == 0

    code, out = await asyncio.to_thread(
        run, ["api-keys", "create", "--name", "ha", "--scopes", "read,ingest"]
    )
    assert code == 0
    key = out.strip()
    assert key.startswith("al_")
    code, out = await asyncio.to_thread(run, ["api-keys", "list", "--json"])
    listed = json.loads(out)
    assert [(k["name"], k["scopes"]) for k in listed] == [("ha", ["read", "ingest"])]
    assert key not in out

    conn = await asyncpg.connect(api_dsn)
    try:
        row = await conn.fetchrow("SELECT role, password_hash FROM users WHERE name = 'erin'")
        assert row["role"] == "operator" and row["password_hash"].startswith("$argon2")
        digests = await conn.fetchval("SELECT array_agg(key_digest) FROM api_tokens")
        assert key not in digests[0]
    finally:
        await conn.close()

    code, out = await asyncio.to_thread(run, ["api-keys", "revoke", listed[0]["id"]])
    assert code == 0
    code, out = await asyncio.to_thread(run, ["api-keys", "list", "--json"])
    assert json.loads(out) == []
    code, _ = await asyncio.to_thread(run, ["api-keys", "revoke", listed[0]["id"]])
    assert code == 1


def test_secret_box_encrypts_at_rest_and_keeps_references(tmp_path: Path) -> None:
    box = SecretBox.for_data_dir(tmp_path)
    key_file = tmp_path / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = {"host": "10.0.0.5", "password": "hunter2-hunter2", "token": "${HA_TOKEN}"}
    stored = box.encrypt_fields(config, ["password", "token"])
    assert stored["host"] == "10.0.0.5"
    assert stored["password"].startswith(PREFIX) and "hunter2" not in stored["password"]
    assert stored["token"] == "${HA_TOKEN}"  # a reference stays a reference
    assert box.encrypt_fields(stored, ["password"]) == stored  # idempotent
    again = SecretBox.for_data_dir(tmp_path)  # same key file after a restart
    assert again.decrypt_fields(stored, ["password", "token"]) == config
    assert redact(config, ["password", "token"]) == {
        "host": "10.0.0.5",
        "password": REDACTED,
        "token": "${HA_TOKEN}",
    }
    schema = {
        "properties": {
            "password": {"type": "string", "format": "password"},
            "host": {"type": "string"},
            "api_key": {"type": "string", "writeOnly": True},
        }
    }
    assert secret_fields_of(schema) == ["password", "api_key"]
    other = SecretBox.for_data_dir(tmp_path / "other")
    from aetherlens.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be decrypted"):
        other.decrypt(stored["password"])
