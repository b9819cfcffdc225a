"""Plugin routes with the real supervisor running the ``probe`` test plugin in its own process:
status, restart, config with secrets encrypted at rest and never echoed, device control, scopes, 404."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import orjson
import pytest

from aetherlens.api.schemas.plugins import PluginDetail, PluginList
from aetherlens.config import Settings, load_settings
from aetherlens.db.queries.plugins import NOTIFY_CHANNEL
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.runner import SupervisorOptions
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.plugins.testkit import MemorySink
from aetherlens.secrets import KEY_FILE, PREFIX, SecretBox

from .conftest import MakeApi
from .test_devices_routes import bearer, error_of

SECRET = "tok-very-secret-123"
FIXTURES = Path(__file__).parents[1] / "plugins" / "fixtures"  # the plugin helper's test plugins
FAST = SupervisorOptions(heartbeat_interval=0.2, start_timeout=20.0, stop_timeout=2.0, restart_initial=0.3)


def probe_settings() -> Settings:
    return load_settings(
        env={},
        plugin_options={"directories": [str(FIXTURES)], "allow_unsigned": ["probe", "counter"]},
        plugins={"probe": {"enabled": True}},
    )


async def wait_for(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    settings = probe_settings()
    sup = Supervisor(settings, MemorySink(), plugins=discover(settings, include_packages=False), options=FAST)
    await sup.start()
    await wait_for(lambda: sup.status_of("probe")["state"] == "running", what="probe running")
    yield sup
    await sup.stop()


async def test_status_restart_and_not_found(make_api: MakeApi, supervisor: Supervisor) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    read = bearer(await api.key(["read"]))
    resp = await api.client.get("/api/v1/plugins", headers=read)
    assert resp.status == 200
    listing = await resp.json()
    PluginList.model_validate(listing)
    by_id = {p["id"]: p for p in listing["items"]}
    assert by_id["probe"]["state"] == "running"
    assert by_id["counter"]["state"] == "disabled"

    resp = await api.client.get("/api/v1/plugins/probe", headers=read)
    detail = await resp.json()
    PluginDetail.model_validate(detail)
    assert (detail["id"], detail["config"], detail["secrets"]) == ("probe", {}, [])

    admin = bearer(await api.key(["admin"]))
    before = supervisor.status_of("probe")["restarts"]
    resp = await api.client.post("/api/v1/plugins/probe/restart", headers=admin)
    assert resp.status == 202, await resp.text()
    assert supervisor.status_of("probe")["restarts"] == before + 1

    for method, path in [
        ("GET", "/api/v1/plugins/nope"),
        ("POST", "/api/v1/plugins/nope/restart"),
        ("PUT", "/api/v1/plugins/nope/config"),
    ]:
        resp = await api.client.request(method, path, json={"config": {}}, headers=admin)
        assert resp.status == 404, (method, path)
        error_of(await resp.json(), "not_found")


async def test_config_secrets_are_encrypted_and_never_echoed(
    make_api: MakeApi, supervisor: Supervisor
) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    resp = await api.client.put(
        "/api/v1/plugins/probe/config", json={"config": {"api_token": SECRET, "room": "lab"}}, headers=admin
    )
    text = await resp.text()
    assert resp.status == 200, text
    assert SECRET not in text
    body = await resp.json()
    assert body["config"] == {"room": "lab", "api_token": "********"}
    assert body["secrets"] == ["api_token"]
    # The running plugin got the real value (hot reload through the supervisor).
    assert supervisor.runners["probe"].config["api_token"] == SECRET

    # At rest: not in the plain config, and the secrets column is Fernet ciphertext.
    row = await api.pool.fetchrow("SELECT config::text AS config, secrets FROM plugins WHERE id = 'probe'")
    assert SECRET not in row["config"] and SECRET.encode() not in row["secrets"]
    key_path = api.settings.data_dir / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    stored = orjson.loads(row["secrets"])
    assert stored["api_token"].startswith(PREFIX)
    assert SecretBox.for_data_dir(api.settings.data_dir).decrypt(stored["api_token"]) == SECRET

    # GET never shows it either; sending back the mask keeps the stored secret.
    read = bearer(await api.key(["read"]))
    detail_text = await (await api.client.get("/api/v1/plugins/probe", headers=read)).text()
    assert SECRET not in detail_text
    list_text = await (await api.client.get("/api/v1/plugins", headers=read)).text()
    assert SECRET not in list_text
    resp = await api.client.put(
        "/api/v1/plugins/probe/config",
        json={"config": {"api_token": "********", "room": "attic"}},
        headers=admin,
    )
    assert resp.status == 200, await resp.text()
    assert supervisor.runners["probe"].config == {"api_token": SECRET, "room": "attic"}

    # ${VAR} references stay references (not secrets, not resolved here).
    resp = await api.client.put(
        "/api/v1/plugins/probe/config", json={"config": {"api_token": "${PROBE_TOKEN}"}}, headers=admin
    )
    assert (await resp.json())["config"] == {"api_token": "${PROBE_TOKEN}"}


async def test_secrets_inside_lists_are_encrypted_masked_and_kept(
    make_api: MakeApi, supervisor: Supervisor
) -> None:
    """A device plugin's per-device password (``devices[].password``, found by its name) and a field
    its schema marks writeOnly (``devices[].pin``) are secrets like a top-level token."""
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    config = {
        "devices": [
            {"host": "10.0.0.5", "password": SECRET, "pin": "4711-pin"},
            {"host": "10.0.0.6", "pin": "${PIN_6}"},
        ]
    }
    resp = await api.client.put("/api/v1/plugins/probe/config", json={"config": config}, headers=admin)
    text = await resp.text()
    assert resp.status == 200, text
    assert SECRET not in text and "4711-pin" not in text
    body = await resp.json()
    assert body["secrets"] == ["devices[0].password", "devices[0].pin"]
    assert body["config"]["devices"] == [
        {"host": "10.0.0.5", "password": "********", "pin": "********"},
        {"host": "10.0.0.6", "pin": "${PIN_6}"},
    ]
    assert supervisor.runners["probe"].config == config  # the plugin gets the real values

    row = await api.pool.fetchrow("SELECT config::text AS config, secrets FROM plugins WHERE id = 'probe'")
    assert SECRET not in row["config"] and "4711-pin" not in row["config"]
    assert SECRET.encode() not in row["secrets"] and b"4711-pin" not in row["secrets"]

    # The mask sent back keeps each stored secret at its place; a new value replaces one.
    echoed = body["config"]
    echoed["devices"][0]["pin"] = "0000-new"
    resp = await api.client.put("/api/v1/plugins/probe/config", json={"config": echoed}, headers=admin)
    assert resp.status == 200, await resp.text()
    kept = {"devices": [{**config["devices"][0], "pin": "0000-new"}, config["devices"][1]]}
    assert supervisor.runners["probe"].config == kept

    # A supervisor started later (the core restarting) reads them back from the database.
    settings = load_settings(
        env={},
        data_dir=str(api.settings.data_dir),
        plugin_options={"directories": [str(FIXTURES)], "allow_unsigned": ["probe", "counter"]},
        plugins={"probe": {"enabled": True}},
    )
    later = Supervisor(
        settings,
        MemorySink(),
        plugins=discover(settings, include_packages=False),
        pool=api.pool,
        options=FAST,
    )
    await later.prepare()
    assert later.runners["probe"].config == kept


async def test_bad_config_is_400_and_leaves_the_plugin_alone(
    make_api: MakeApi, supervisor: Supervisor
) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    runner = supervisor.runners["probe"]
    resp = await api.client.put("/api/v1/plugins/probe/config", json={"config": {"room": 5}}, headers=admin)
    assert resp.status == 400
    assert "room" in (await resp.json())["error"]["message"]
    assert supervisor.runners["probe"] is runner
    resp = await api.client.put(
        "/api/v1/plugins/probe/config", json={"config": {"api_token": "********"}}, headers=admin
    )
    assert resp.status == 400  # nothing stored to keep
    resp = await api.client.put("/api/v1/plugins/probe/config", json={"settings": {}}, headers=admin)
    assert resp.status == 400
    assert (
        await api.pool.fetchval("SELECT count(*) FROM plugins WHERE id = 'probe' AND secrets IS NOT NULL")
        == 0
    )


async def test_plugin_scopes(make_api: MakeApi, supervisor: Supervisor) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    rw = bearer(await api.key(["read", "write", "control", "ingest"]))
    assert (await api.client.post("/api/v1/plugins/probe/restart", headers=rw)).status == 403
    assert (
        await api.client.put("/api/v1/plugins/probe/config", json={"config": {}}, headers=rw)
    ).status == 403
    assert (await api.client.get("/api/v1/plugins", headers=bearer(await api.key(["ingest"])))).status == 403
    assert (await api.client.get("/api/v1/plugins", headers=rw)).status == 200


async def test_device_control_through_a_real_plugin_process(
    make_api: MakeApi, supervisor: Supervisor
) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    resp = await api.client.post(
        "/api/v1/devices", json={"id": "probe-1", "name": "Probe", "source": "probe"}, headers=admin
    )
    assert resp.status == 201
    operator = await api.headers("operator")
    states = []
    for action in ("on", "toggle", "toggle"):
        resp = await api.client.post(
            "/api/v1/devices/probe-1/control", json={"action": action}, headers=operator
        )
        assert resp.status == 200, await resp.text()
        states.append((await resp.json())["state"])
    assert states == ["on", "off", "on"]


async def test_without_supervisor_status_comes_from_the_table_and_restart_is_notified(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    await api.pool.execute(
        "INSERT INTO plugins (id, enabled, status) VALUES ('shelly', true, $1::text::jsonb)",
        orjson.dumps({"id": "shelly", "state": "running", "name": "Shelly"}).decode(),
    )
    read = bearer(await api.key(["read"]))
    listing = await (await api.client.get("/api/v1/plugins", headers=read)).json()
    (item,) = listing["items"]
    assert (item["id"], item["enabled"], item["state"], item["name"]) == ("shelly", True, "running", "Shelly")

    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(api.dsn)
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[-1]))
        resp = await api.client.post(
            "/api/v1/plugins/shelly/restart", headers=bearer(await api.key(["admin"]))
        )
        assert resp.status == 202
        payload = await asyncio.wait_for(received.get(), 5)
        assert orjson.loads(payload) == {"action": "restart", "id": "shelly"}
    finally:
        await listener.close()
    resp = await api.client.post("/api/v1/plugins/ghost/restart", headers=bearer(await api.key(["admin"])))
    assert resp.status == 404


async def test_config_of_a_disabled_plugin_is_validated_against_its_manifest(
    make_api: MakeApi, supervisor: Supervisor
) -> None:
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    assert supervisor.status_of("counter")["state"] == "disabled"
    # counter's schema says additionalProperties: false and step >= 0.
    resp = await api.client.put(
        "/api/v1/plugins/counter/config", json={"config": {"nope": 1, "step": -1}}, headers=admin
    )
    assert resp.status == 400, await resp.text()
    message = error_of(await resp.json(), "plugin_error")["message"]
    assert "nope" in message and "step" in message
    # Disabling a running plugin in the same request does not skip the check either.
    resp = await api.client.put(
        "/api/v1/plugins/probe/config", json={"config": {"room": 5}, "enabled": False}, headers=admin
    )
    assert resp.status == 400, await resp.text()
    assert supervisor.status_of("probe")["state"] == "running"
    assert await api.pool.fetchval("SELECT count(*) FROM plugins WHERE config <> '{}'::jsonb") == 0
    # A valid config for the plugin, kept disabled, is stored.
    resp = await api.client.put(
        "/api/v1/plugins/counter/config", json={"config": {"step": 2}, "enabled": False}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["config"] == {"step": 2}
    assert supervisor.status_of("counter")["state"] == "disabled"
