"""Tariff routes over HTTP: CRUD through the cost engine's validation, URDB import, scopes, 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from aetherlens.api.schemas.costs import TariffOut

from .conftest import MakeApi
from .test_costs_routes import FLAT
from .test_devices_routes import bearer, error_of

URDB = Path(__file__).parents[1] / "costs" / "fixtures" / "urdb_tou.json"


async def test_tariff_crud(make_api: MakeApi) -> None:
    api = await make_api()
    w = bearer(await api.key(["read", "write"]))
    resp = await api.client.post("/api/v1/tariffs", json=FLAT, headers=w)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    TariffOut.model_validate(created)
    assert (created["name"], created["currency"], created["timezone"], created["active"]) == (
        "flat",
        "USD",
        "UTC",
        True,
    )
    tariff_id = created["id"]

    listing = await (await api.client.get("/api/v1/tariffs", headers=w)).json()
    assert [t["id"] for t in listing["items"]] == [tariff_id]
    assert await (await api.client.get(f"/api/v1/tariffs/{tariff_id}", headers=w)).json() == created

    changed = {**FLAT, "periods": {"flat": {"price": "0.25"}}}
    resp = await api.client.put(f"/api/v1/tariffs/{tariff_id}", json=changed, headers=w)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert orjson.dumps(body["definition"]).count(b"0.25") >= 1

    # The same name and effective date twice is a conflict, not a second row.
    resp = await api.client.post("/api/v1/tariffs", json=FLAT, headers=w)
    assert resp.status == 409
    error_of(await resp.json(), "conflict")

    assert (await api.client.delete(f"/api/v1/tariffs/{tariff_id}", headers=w)).status == 204
    resp = await api.client.get(f"/api/v1/tariffs/{tariff_id}", headers=w)
    assert resp.status == 404
    error_of(await resp.json(), "not_found")
    assert (await api.client.delete(f"/api/v1/tariffs/{tariff_id}", headers=w)).status == 404
    assert (await api.client.put(f"/api/v1/tariffs/{tariff_id}", json=FLAT, headers=w)).status == 404


async def test_invalid_tariff_names_the_field(make_api: MakeApi) -> None:
    api = await make_api()
    w = bearer(await api.key(["write"]))
    bad: dict[str, Any] = {**FLAT, "currency": "DOLLARS"}
    resp = await api.client.post("/api/v1/tariffs", json=bad, headers=w)
    assert resp.status == 400
    assert "currency" in (await resp.json())["error"]["message"]
    resp = await api.client.post("/api/v1/tariffs", data=b"[1, 2]", headers=w)
    assert resp.status == 400
    resp = await api.client.post("/api/v1/tariffs", data=b"{oops", headers=w)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]["message"]


async def test_urdb_import(make_api: MakeApi) -> None:
    api = await make_api(site={"timezone": "UTC"})
    w = bearer(await api.key(["read", "write"]))
    payload = orjson.loads(URDB.read_bytes())
    resp = await api.client.post(
        "/api/v1/tariffs/import",
        params={
            "timezone": "America/Los_Angeles",
            "holidays": "US-CA",
            "name": "imported",
            "label": "5e1676e95457a3f87673e3b0",
        },
        data=orjson.dumps(payload),
        headers=w,
    )
    assert resp.status == 201, await resp.text()
    tariff_id = (await resp.json())["id"]
    stored = await (await api.client.get(f"/api/v1/tariffs/{tariff_id}", headers=w)).json()
    assert (stored["name"], stored["timezone"], stored["source"]) == (
        "imported",
        "America/Los_Angeles",
        "urdb",
    )

    resp = await api.client.post(
        "/api/v1/tariffs/import", params={"timezone": "Mars/Olympus"}, data=orjson.dumps(payload), headers=w
    )
    assert resp.status == 400
    resp = await api.client.post("/api/v1/tariffs/import", data=b'{"nothing": "here"}', headers=w)
    assert resp.status == 400
    # Two rates in the payload and no label: the answer lists the labels to pick from.
    resp = await api.client.post("/api/v1/tariffs/import", data=orjson.dumps(payload), headers=w)
    assert resp.status == 400
    assert "5e1676e95457a3f87673e3b1" in (await resp.json())["error"]["message"]


async def test_tariff_scopes(make_api: MakeApi) -> None:
    api = await make_api()
    read = bearer(await api.key(["read"]))
    assert (await api.client.post("/api/v1/tariffs", json=FLAT, headers=read)).status == 403
    assert (await api.client.post("/api/v1/tariffs/import", json={}, headers=read)).status == 403
    assert (await api.client.delete("/api/v1/tariffs/x", headers=read)).status == 403
    assert (await api.client.get("/api/v1/tariffs", headers=bearer(await api.key(["ingest"])))).status == 403
    assert (await api.client.get("/api/v1/tariffs", headers=read)).status == 200
