"""Device routes over HTTP against the real database: CRUD, validation, scopes, 404, control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aetherlens.api.schemas.devices import DeviceType
from aetherlens.models import DEVICE_TYPES

from .conftest import Api, MakeApi, running_collector


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(data: Any, code: str) -> dict[str, Any]:
    assert set(data) == {"error"}, data
    assert data["error"]["code"] == code, data
    assert data["error"]["message"]
    error: dict[str, Any] = data["error"]
    return error


async def _writer(api: Api) -> dict[str, str]:
    return bearer(await api.key(["read", "write"]))


def test_device_type_literal_matches_the_vocabulary() -> None:
    assert DeviceType.__args__ == DEVICE_TYPES


async def test_create_list_get_patch_delete(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    body = {"id": "plug.kettle", "name": "Kettle", "type": "plug", "room": "kitchen", "tags": {"phase": "L1"}}
    resp = await api.client.post("/api/v1/devices", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {**body, "source": "api"}

    resp = await api.client.get("/api/v1/devices", headers=h)
    assert resp.status == 200
    assert [d["id"] for d in (await resp.json())["items"]] == ["plug.kettle"]

    resp = await api.client.patch(
        "/api/v1/devices/plug.kettle", json={"room": None, "name": "Tea"}, headers=h
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert (patched["name"], patched["room"], patched["type"], patched["tags"]) == (
        "Tea",
        None,
        "plug",
        {"phase": "L1"},
    )

    resp = await api.client.get("/api/v1/devices/plug.kettle", headers=h)
    assert await resp.json() == patched

    resp = await api.client.delete("/api/v1/devices/plug.kettle", headers=h)
    assert resp.status == 204
    resp = await api.client.get("/api/v1/devices/plug.kettle", headers=h)
    assert resp.status == 404
    error_of(await resp.json(), "not_found")


async def test_validation_errors_name_the_field(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    cases = [
        ({"name": "no id"}, "body.id"),
        ({"id": "bad id", "name": "x"}, "body.id"),
        ({"id": "ok", "name": "x", "type": "toaster"}, "body.type"),
        ({"id": "ok", "name": "x", "tags": {"a": 1}}, "body.tags.a"),
        ({"id": "ok", "name": "x", "colour": "red"}, "body.colour"),
        ({"id": "ok", "name": ""}, "body.name"),
    ]
    for body, field in cases:
        resp = await api.client.post("/api/v1/devices", json=body, headers=h)
        assert resp.status == 400, (body, await resp.text())
        error = error_of(await resp.json(), "validation_error")
        assert field in error["message"], (field, error)
    resp = await api.client.patch("/api/v1/devices/ok", json={"type": "toaster"}, headers=h)
    assert resp.status == 400
    resp = await api.client.get("/api/v1/devices", headers=h)
    assert (await resp.json())["items"] == []


async def test_duplicate_is_409_and_missing_is_404(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    assert (await api.client.post("/api/v1/devices", json={"id": "d", "name": "n"}, headers=h)).status == 201
    resp = await api.client.post("/api/v1/devices", json={"id": "d", "name": "again"}, headers=h)
    assert resp.status == 409
    error_of(await resp.json(), "conflict")
    for method, path, kwargs in [
        ("GET", "/api/v1/devices/ghost", {}),
        ("PATCH", "/api/v1/devices/ghost", {"json": {"name": "x"}}),
        ("DELETE", "/api/v1/devices/ghost", {}),
        ("POST", "/api/v1/devices/ghost/control", {"json": {"action": "on"}}),
    ]:
        resp = await api.client.request(method, path, headers=bearer(await api.key(["admin"])), **kwargs)
        assert resp.status == 404, (method, path)
        error_of(await resp.json(), "not_found")


async def test_scopes(make_api: MakeApi) -> None:
    api = await make_api()
    read_only = bearer(await api.key(["read"]))
    ingest_only = bearer(await api.key(["ingest"]))
    resp = await api.client.post("/api/v1/devices", json={"id": "d", "name": "n"}, headers=read_only)
    assert resp.status == 403
    error_of(await resp.json(), "forbidden")
    assert (await api.client.get("/api/v1/devices", headers=ingest_only)).status == 403
    assert (await api.client.get("/api/v1/devices", headers=read_only)).status == 200
    resp = await api.client.get("/api/v1/devices")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # Viewer role: read but not write; operator: control but not write.
    viewer = await api.headers("viewer")
    assert (await api.client.delete("/api/v1/devices/d", headers=viewer)).status == 403
    operator = await api.headers("operator")
    assert (await api.client.patch("/api/v1/devices/d", json={"name": "x"}, headers=operator)).status == 403
    resp = await api.client.post("/api/v1/devices/d/control", json={"action": "on"}, headers=read_only)
    assert resp.status == 403


class FakeControlSupervisor:
    """Stands in for the plugin supervisor's control interface (a real plugin process is the plugin
    helper's territory); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def status(self) -> list[dict[str, Any]]:
        return [self.status_of("shelly")]

    def status_of(self, plugin_id: str) -> dict[str, Any]:
        from aetherlens.errors import NotFoundError

        if plugin_id != "shelly":
            raise NotFoundError(f"no plugin '{plugin_id}'")
        return {"id": "shelly", "capabilities": ["metrics.collect", "device.control"], "state": "running"}

    async def restart(self, plugin_id: str) -> None: ...

    async def reconfigure(self, plugin_id: str, config: Any) -> None: ...

    async def control_device(self, plugin_id: str, device_id: str, action: str) -> dict[str, Any]:
        self.calls.append((plugin_id, device_id, action))
        return {"state": "on" if action != "off" else "off"}


async def test_control_switches_through_the_devices_plugin_else_409(make_api: MakeApi) -> None:
    supervisor = FakeControlSupervisor()
    api = await make_api(ctx={"supervisor": supervisor})
    admin = bearer(await api.key(["admin"]))
    assert (
        await api.client.post(
            "/api/v1/devices", json={"id": "sw1", "name": "Switch", "source": "shelly"}, headers=admin
        )
    ).status == 201
    assert (
        await api.client.post("/api/v1/devices", json={"id": "manual", "name": "By hand"}, headers=admin)
    ).status == 201
    operator = await api.headers("operator")

    resp = await api.client.post("/api/v1/devices/sw1/control", json={"action": "off"}, headers=operator)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"state": "off"}
    assert supervisor.calls == [("shelly", "sw1", "off")]

    resp = await api.client.post("/api/v1/devices/manual/control", json={"action": "on"}, headers=operator)
    assert resp.status == 409, await resp.text()
    assert "manual" in error_of(await resp.json(), "not_controllable")["message"]

    resp = await api.client.post("/api/v1/devices/sw1/control", json={"action": "dim"}, headers=operator)
    assert resp.status == 400
    assert supervisor.calls == [("shelly", "sw1", "off")]


async def test_control_without_supervisor_is_409(make_api: MakeApi) -> None:
    api = await make_api()
    admin = bearer(await api.key(["admin"]))
    assert (
        await api.client.post(
            "/api/v1/devices", json={"id": "sw1", "name": "S", "source": "shelly"}, headers=admin
        )
    ).status == 201
    resp = await api.client.post("/api/v1/devices/sw1/control", json={"action": "toggle"}, headers=admin)
    assert resp.status == 409
    error_of(await resp.json(), "not_controllable")


@pytest.mark.parametrize("auto_register", [False, True], ids=["auto_register_off", "auto_register_on"])
async def test_deleting_a_device_stops_its_ingest(
    make_api: MakeApi, api_dsn: str, tmp_path: Path, auto_register: bool
) -> None:
    # The real collector + writer: the collector caches known ids, and DELETE must reach that cache.
    async with running_collector(api_dsn, tmp_path, auto_register=auto_register) as (collector, writer):
        api = await make_api(
            ctx={"collector": collector, "writer": writer},
            collector={"auto_register_devices": auto_register},
        )
        h = bearer(await api.key(["ingest", "read", "write"]))

        async def ingest(minutes_ago: int) -> dict[str, Any]:
            moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
            metric = {"time": moment, "device_id": "plug1", "metric_type": "power", "value": 5.0}
            resp = await api.client.post("/api/v1/metrics", json={"metrics": [metric]}, headers=h)
            assert resp.status == 200, await resp.text()
            answer: dict[str, Any] = await resp.json()
            return answer

        created = await api.client.post("/api/v1/devices", json={"id": "plug1", "name": "Kettle"}, headers=h)
        assert created.status == 201, await created.text()
        assert (await ingest(2))["accepted"] == 1
        resp = await api.client.delete("/api/v1/devices/plug1", headers=h)
        assert resp.status == 204, await resp.text()

        after = await ingest(1)
        stored = await api.pool.fetchval("SELECT count(*) FROM metrics WHERE device_id = 'plug1'")
        if auto_register:
            # Registered again by its next metric, as any unknown id is: no metric without a device.
            assert after == {"accepted": 1, "rejected": []}
            again = await api.client.get("/api/v1/devices/plug1", headers=h)
            assert again.status == 200, await again.text()
            assert (await again.json())["name"] == "plug1"  # the placeholder of auto-registration
            assert stored == 2
        else:
            assert after["accepted"] == 0
            assert [r["index"] for r in after["rejected"]] == [0]
            assert "unknown device 'plug1'" in after["rejected"][0]["reason"]
            assert stored == 1
        orphans = await api.pool.fetchval(
            "SELECT count(*) FROM metrics m"
            " WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = m.device_id)"
        )
        assert orphans == (0 if auto_register else 1)  # off: the history stays, the device is gone
