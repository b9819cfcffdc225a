"""Cost routes over HTTP, wired to aetherlens.costs.service: the answers are the service's numbers for a
metered month (meter 3 kWh/h, two plugs), plus validation, scopes and 404s."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from aetherlens.api.schemas.costs import Bill, CostChanges, CostHistory, CostSummary, DeviceCostList
from aetherlens.costs import service
from aetherlens.costs.job import CostJob

from .conftest import Api, MakeApi
from .test_devices_routes import bearer, error_of

UTC = dt.UTC
FLAT: dict[str, Any] = {
    "name": "flat",
    "timezone": "UTC",
    "effective_from": "2026-01-01",
    "periods": {"flat": {"price": "0.10"}},
    "fixed": {"per_month": "9"},
}


async def _metered(api: Api) -> str:
    """March 2026 of hourly counters, the tariff stored over HTTP, and the cost job run once."""
    admin = bearer(await api.key(["admin"]))
    resp = await api.client.post("/api/v1/tariffs", json=FLAT, headers=admin)
    assert resp.status == 201, await resp.text()
    tariff_id: str = (await resp.json())["id"]
    for device, per_hour in (("main", 3.0), ("tv", 1.0), ("pc", 0.5)):
        await api.pool.execute(
            """INSERT INTO metrics (time, device_id, metric_type, value, unit)
               SELECT $1::timestamptz + make_interval(hours => i), $2, 'energy', i * $3::float8, 'kWh'
               FROM generate_series(0, 24 * 31) i""",
            dt.datetime(2026, 3, 1, tzinfo=UTC),
            device,
            per_hour,
        )
    async with api.pool.acquire() as conn:
        await CostJob(meter_device="main").run_once(conn, now=dt.datetime(2026, 4, 1, 1, tzinfo=UTC))
    return tariff_id


async def test_bill_devices_history_comparison_match_the_service(make_api: MakeApi) -> None:
    api = await make_api(site={"timezone": "UTC", "currency": "USD", "meter_device": "main"})
    tariff_id = await _metered(api)
    h = bearer(await api.key(["read"]))
    march = {"from": "2026-03-01", "to": "2026-04-01"}

    resp = await api.client.get("/api/v1/costs/bill", params={**march, "tariff_id": tariff_id}, headers=h)
    assert resp.status == 200, await resp.text()
    (bill,) = await resp.json()
    Bill.model_validate(bill)
    assert bill["kwh"] == pytest.approx(3.0 * 24 * 31)
    assert bill["total"] == pytest.approx(3.0 * 24 * 31 * 0.10 + 9)
    # Without tariff_id: the active tariff (the first one stored).
    resp = await api.client.get("/api/v1/costs/bill", params=march, headers=h)
    assert [b["total"] for b in await resp.json()] == [bill["total"]]
    # One device.
    resp = await api.client.get("/api/v1/costs/bill", params={**march, "device_id": "tv"}, headers=h)
    assert (await resp.json())[0]["kwh"] == pytest.approx(24 * 31)

    resp = await api.client.get("/api/v1/costs/devices", params=march, headers=h)
    assert resp.status == 200
    devices = await resp.json()
    DeviceCostList.model_validate(devices)
    assert devices["items"] == await service.device_costs(
        api.pool, "2026-03-01", "2026-04-01", meter_device="main"
    )
    assert {d["device_id"] for d in devices["items"]} == {"tv", "pc", "unmetered"}
    assert sum(d["cost"] for d in devices["items"]) == pytest.approx(bill["total"])

    resp = await api.client.get(
        "/api/v1/costs/history", params={**march, "device_id": "tv", "resolution": "day"}, headers=h
    )
    history = await resp.json()
    CostHistory.model_validate(history)
    assert len(history["points"]) == 31
    assert history == await service.history(api.pool, "tv", "2026-03-01", "2026-04-01", "day")

    admin = bearer(await api.key(["admin"]))
    cheap = {**FLAT, "name": "cheap", "periods": {"flat": {"price": "0.01"}}}
    cheap_id = (await (await api.client.post("/api/v1/tariffs", json=cheap, headers=admin)).json())["id"]
    resp = await api.client.get("/api/v1/costs/comparison", params=march, headers=h)
    ranking = await resp.json()
    assert [r["tariff_id"] for r in ranking] == [cheap_id, tariff_id]
    assert ranking[0]["total"] == pytest.approx(3.0 * 24 * 31 * 0.01 + 9)


async def test_summary_shape(make_api: MakeApi) -> None:
    api = await make_api(site={"timezone": "UTC", "currency": "EUR"})
    h = await api.headers("viewer")
    resp = await api.client.get("/api/v1/costs/summary", headers=h)
    assert resp.status == 200
    empty = await resp.json()
    CostSummary.model_validate(empty)
    assert empty == {
        "currency": "EUR",
        "today": None,
        "month_to_date": None,
        "projected_month": None,
        "current_price": None,
        "current_period": None,
        "carbon_today_kg": None,
        "tariff_id": None,
        "day_start": None,
        "cycle_start": None,
        "cycle_end": None,
        "previous_cycle_start": None,
    }
    tariff_id = await _metered(api)
    summary = await (await api.client.get("/api/v1/costs/summary", headers=h)).json()
    assert summary["current_period"] == "flat"
    assert summary["current_price"] == pytest.approx(0.10)
    assert summary["tariff_id"] == tariff_id
    now = dt.datetime.now(UTC)
    bounds = [dt.datetime.fromisoformat(summary[k]) for k in ("previous_cycle_start", "cycle_start")]
    day, end = (
        dt.datetime.fromisoformat(summary["day_start"]),
        dt.datetime.fromisoformat(summary["cycle_end"]),
    )
    assert bounds[0] < bounds[1] <= day <= now < end
    assert (day.hour, day.minute, day.utcoffset()) == (0, 0, dt.timedelta(0))  # local midnight (UTC site)


async def test_changes_over_http(make_api: MakeApi) -> None:
    api = await make_api(site={"timezone": "UTC", "currency": "USD", "meter_device": "main"})
    h = bearer(await api.key(["read"]))
    resp = await api.client.get("/api/v1/costs/changes", params={"since": "0"}, headers=h)
    assert resp.status == 200
    assert await resp.json() == {"revision": 0, "changes": []}  # no tariff yet
    await _metered(api)
    resp = await api.client.get("/api/v1/costs/changes", params={"since": "0"}, headers=h)
    assert resp.status == 200, await resp.text()
    full = await resp.json()
    CostChanges.model_validate(full)
    assert full == await service.changes(api.pool, 0)
    assert full["changes"][0] == {"device_id": None, "from": "2026-03-01T00:00:00+00:00"}
    assert {"tv", "pc"} <= {c["device_id"] for c in full["changes"]}
    resp = await api.client.get("/api/v1/costs/changes", params={"since": str(full["revision"])}, headers=h)
    assert await resp.json() == {"revision": full["revision"], "changes": []}
    for params, text in (({}, "since"), ({"since": "-1"}, "since"), ({"since": "soon"}, "since")):
        resp = await api.client.get("/api/v1/costs/changes", params=params, headers=h)
        assert resp.status == 400, params
        assert text in error_of(await resp.json(), "validation_error")["message"], params


async def test_cost_validation_scopes_and_not_found(make_api: MakeApi) -> None:
    api = await make_api(site={"timezone": "UTC"})
    h = bearer(await api.key(["read"]))
    bad = [
        ("/api/v1/costs/devices", {"from": "2026-03-02", "to": "2026-03-01"}, None),
        ("/api/v1/costs/devices", {"from": "2026-03-01"}, "query.to"),
        (
            "/api/v1/costs/history",
            {"from": "2026-03-01", "to": "2026-04-01", "resolution": "week"},
            "resolution",
        ),
        ("/api/v1/costs/bill", {"from": "soon", "to": "2026-04-01", "tariff_id": "x"}, None),
    ]
    await _metered(api)
    for path, params, text in bad:
        resp = await api.client.get(path, params=params, headers=h)
        assert resp.status in (400, 404), (path, params, await resp.text())
        if resp.status == 400:
            message = error_of(await resp.json(), "validation_error")["message"]
            assert text is None or text in message, message
    resp = await api.client.get(
        "/api/v1/costs/devices", params={"from": "2026-03-02", "to": "2026-03-01"}, headers=h
    )
    assert resp.status == 400
    assert "after" in (await resp.json())["error"]["message"]
    resp = await api.client.get("/api/v1/costs/bill", params={"from": "soon", "to": "2026-04-01"}, headers=h)
    assert resp.status == 400
    assert "soon" in (await resp.json())["error"]["message"]
    # Billing cycles around the range must stay inside the calendar (a cycle past 9999 once was a 500).
    resp = await api.client.get(
        "/api/v1/costs/bill", params={"from": "9999-12-01", "to": "9999-12-31"}, headers=h
    )
    assert resp.status == 400
    assert "between the years" in (await resp.json())["error"]["message"]
    resp = await api.client.get(
        "/api/v1/costs/bill",
        params={"from": "2026-03-01", "to": "2026-04-01", "tariff_id": "nope"},
        headers=h,
    )
    assert resp.status == 404
    error_of(await resp.json(), "not_found")
    ingest = bearer(await api.key(["ingest"]))
    for path in ("summary", "devices", "history", "bill", "comparison", "changes?since=0"):
        assert (await api.client.get(f"/api/v1/costs/{path}", headers=ingest)).status == 403, path
    assert (await api.client.get("/api/v1/costs/summary")).status == 401


async def test_bill_without_any_tariff_is_404(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get(
        "/api/v1/costs/bill",
        params={"from": "2026-03-01", "to": "2026-04-01"},
        headers=await api.headers("viewer"),
    )
    assert resp.status == 404
    assert "no tariff" in error_of(await resp.json(), "not_found")["message"]


async def test_cost_ranges_are_checked_with_or_without_a_tariff(make_api: MakeApi) -> None:
    """The range is validated first: a garbage range is 400 whether a tariff exists or not."""
    api = await make_api(site={"timezone": "UTC", "currency": "USD"})
    h = bearer(await api.key(["read"]))
    for path in ("/api/v1/costs/devices", "/api/v1/costs/history"):
        resp = await api.client.get(path, params={"from": "garbage", "to": "2026-04-01"}, headers=h)
        assert resp.status == 400, path
        body = await resp.json()
        assert "garbage" in body["error"]["message"], body
    admin = bearer(await api.key(["admin"]))
    assert (await api.client.post("/api/v1/tariffs", json=FLAT, headers=admin)).status == 201
    for path in ("/api/v1/costs/devices", "/api/v1/costs/history"):
        resp = await api.client.get(path, params={"from": "garbage", "to": "2026-04-01"}, headers=h)
        assert resp.status == 400, path
