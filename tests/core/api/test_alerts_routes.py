"""Alert rules and events over HTTP: CRUD, validation, events list/ack, scopes, 404."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aetherlens.api.schemas.alerts import AlertOut, EventList

from .conftest import Api, MakeApi
from .test_devices_routes import bearer, error_of

RULE: dict[str, Any] = {
    "name": "kettle left on",
    "device_id": "kettle",
    "metric_type": "power",
    "condition": {"type": "threshold", "op": ">", "value": 1500, "for_seconds": 600},
    "severity": "critical",
    "notify": [{"type": "webhook", "url": "https://example.invalid/hook"}],
}


async def _writer(api: Api) -> dict[str, str]:
    h = bearer(await api.key(["read", "write"]))
    resp = await api.client.post("/api/v1/devices", json={"id": "kettle", "name": "Kettle"}, headers=h)
    assert resp.status == 201
    return h


async def test_rule_crud(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    resp = await api.client.post("/api/v1/alerts", json=RULE, headers=h)
    assert resp.status == 201, await resp.text()
    rule = await resp.json()
    AlertOut.model_validate(rule)
    assert rule["condition"] == {"type": "threshold", "op": ">", "value": 1500.0, "for_seconds": 600}
    assert (rule["enabled"], rule["cooldown_seconds"], rule["severity"]) == (True, 300, "critical")
    assert dt.datetime.fromisoformat(rule["created_at"]).utcoffset() is not None

    assert (await (await api.client.get("/api/v1/alerts", headers=h)).json())["items"] == [rule]
    assert await (await api.client.get(f"/api/v1/alerts/{rule['id']}", headers=h)).json() == rule

    replacement = {
        "name": "silent meter",
        "condition": {"type": "no_data", "for_seconds": 900},
        "enabled": False,
    }
    resp = await api.client.put(f"/api/v1/alerts/{rule['id']}", json=replacement, headers=h)
    assert resp.status == 200, await resp.text()
    replaced = await resp.json()
    assert (replaced["name"], replaced["device_id"], replaced["enabled"], replaced["notify"]) == (
        "silent meter",
        None,
        False,
        [],
    )

    assert (await api.client.delete(f"/api/v1/alerts/{rule['id']}", headers=h)).status == 204
    for method in ("GET", "PUT", "DELETE"):
        resp = await api.client.request(method, f"/api/v1/alerts/{rule['id']}", json=RULE, headers=h)
        assert resp.status == 404, method
        error_of(await resp.json(), "not_found")
    assert (await api.client.get("/api/v1/alerts/99999999999999999999", headers=h)).status == 404
    assert (await api.client.get("/api/v1/alerts/abc", headers=h)).status == 404


async def test_rule_validation(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**RULE, "condition": {"type": "threshold", "op": "~", "value": 1}}, "body.condition"),
        ({**RULE, "condition": {"type": "magic"}}, "body.condition"),
        ({**RULE, "severity": "doom"}, "body.severity"),
        ({**RULE, "cooldown_seconds": -1}, "body.cooldown_seconds"),
        ({**RULE, "notify": [{"type": "webhook", "url": "ftp://x"}]}, "body.notify"),
        ({k: v for k, v in RULE.items() if k != "name"}, "body.name"),
        ({**RULE, "colour": "red"}, "body.colour"),
        ({**RULE, "condition": {"type": "anomaly", "sensitivity": 11}}, "body.condition.anomaly.sensitivity"),
        ({**RULE, "condition": {"type": "anomaly", "min_history_days": 3}}, "body.condition.anomaly"),
        ({**RULE, "condition": {"type": "budget", "scope": "site", "period": "day", "amount": -1}}, "amount"),
        ({**RULE, "condition": {"type": "energy", "window": "week", "op": ">", "value": 1}}, "window"),
    ]
    for body, text in cases:
        resp = await api.client.post("/api/v1/alerts", json=body, headers=h)
        assert resp.status == 400, (body, await resp.text())
        assert text in error_of(await resp.json(), "validation_error")["message"]
    assert (await (await api.client.get("/api/v1/alerts", headers=h)).json())["items"] == []


async def test_unworkable_rules_are_422_naming_the_field(make_api: MakeApi) -> None:
    """Well-formed rules that cannot work: unknown device, unknown metric type, impossible threshold."""
    api = await make_api()
    h = await _writer(api)
    site_budget = {"type": "budget", "scope": "site", "period": "cycle", "amount": 100, "projected": True}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**RULE, "device_id": "ghost"}, "body.device_id", "device 'ghost' does not exist"),
        ({**RULE, "metric_type": "humidity"}, "body.metric_type", "unknown metric type 'humidity'"),
        (
            {
                **RULE,
                "metric_type": "power_factor",
                "condition": {"type": "threshold", "op": ">", "value": 1.5},
            },
            "body.condition.value",
            "can never hold",
        ),
        (
            {**RULE, "metric_type": "energy", "condition": {"type": "threshold", "op": "<", "value": 0}},
            "body.condition.value",
            "can never hold",
        ),
        ({**RULE, "metric_type": None}, "body.metric_type", "needs the metric_type"),
        (
            {**RULE, "condition": {"type": "energy", "window": "day", "op": "<", "value": 0}},
            "body.condition.value",
            "never below 0",
        ),
        ({**RULE, "condition": site_budget}, "body.device_id", "leave device_id out"),
        (
            {**RULE, "device_id": None, "condition": {**site_budget, "scope": "device"}},
            "body.device_id",
            "needs the device_id",
        ),
        (
            {
                **RULE,
                "device_id": None,
                "condition": {"type": "anomaly", "sensitivity": 5, "min_history_days": 14},
            },
            "body.device_id",
            "one device's series",
        ),
    ]
    for body, field, text in cases:
        resp = await api.client.post("/api/v1/alerts", json=body, headers=h)
        assert resp.status == 422, (body, await resp.text())
        error = error_of(await resp.json(), "invalid_rule")
        assert error["details"]["field"] == field, body
        assert field in error["message"] and text in error["message"], error
    rule = await (await api.client.post("/api/v1/alerts", json=RULE, headers=h)).json()
    resp = await api.client.put(
        f"/api/v1/alerts/{rule['id']}", json={**RULE, "device_id": "ghost"}, headers=h
    )
    assert resp.status == 422
    assert error_of(await resp.json(), "invalid_rule")["details"]["field"] == "body.device_id"
    # Every kind the contract names is accepted when it can work.
    for condition in (
        {"type": "no_data", "for_seconds": 900},
        {"type": "energy", "window": "hour", "op": ">", "value": 2},
        {"type": "cost", "window": "cycle", "op": ">=", "value": 50},
        {"type": "plugin_unhealthy", "plugin_id": "shelly"},
        {"type": "cloud_budget", "provider": "aws", "account": "123", "amount": 200, "projected": True},
        {"type": "anomaly", "sensitivity": 7, "min_history_days": 7},
        {**site_budget, "scope": "device", "percent": 80},
    ):
        resp = await api.client.post("/api/v1/alerts", json={**RULE, "condition": condition}, headers=h)
        assert resp.status == 201, (condition, await resp.text())
        assert (await resp.json())["condition"] == condition | (
            {"value": float(condition["value"])} if "value" in condition else {}
        ) | ({"amount": float(condition["amount"])} if "amount" in condition else {}) | (
            {"percent": float(condition["percent"])} if "percent" in condition else {}
        )


async def test_events_list_filter_and_ack(make_api: MakeApi) -> None:
    api = await make_api()
    h = await _writer(api)
    rule = await (await api.client.post("/api/v1/alerts", json=RULE, headers=h)).json()
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ids = [
        await api.pool.fetchval(
            """INSERT INTO alert_events
                   (alert_id, device_id, triggered_at, resolved_at, severity, value, message)
               VALUES ($1, 'kettle', $2::timestamptz, $2::timestamptz + interval '30 seconds', 'critical',
                       2000, 'too high') RETURNING id""",
            rule["id"],
            t0 + dt.timedelta(minutes=i),
        )
        for i in range(3)
    ]
    viewer = await api.headers("viewer")
    resp = await api.client.get("/api/v1/alerts/events", headers=viewer)
    assert resp.status == 200
    events = await resp.json()
    EventList.model_validate(events)
    assert [e["id"] for e in events["items"]] == ids[::-1]

    resp = await api.client.get(
        "/api/v1/alerts/events",
        params={
            "from": (t0 + dt.timedelta(minutes=1)).isoformat(),
            "to": (t0 + dt.timedelta(minutes=2)).isoformat(),
        },
        headers=viewer,
    )
    assert [e["id"] for e in (await resp.json())["items"]] == [ids[1]]

    # Viewers may not acknowledge (control scope); operators may.
    assert (await api.client.post(f"/api/v1/alerts/events/{ids[0]}/ack", headers=viewer)).status == 403
    operator = await api.headers("operator")
    resp = await api.client.post(f"/api/v1/alerts/events/{ids[0]}/ack", headers=operator)
    assert resp.status == 200, await resp.text()
    acked = await resp.json()
    assert acked["acknowledged_by"] == "operator-user" and acked["acknowledged_at"]
    resp = await api.client.get("/api/v1/alerts/events", params={"unacknowledged": "true"}, headers=viewer)
    assert [e["id"] for e in (await resp.json())["items"]] == [ids[2], ids[1]]

    resp = await api.client.post("/api/v1/alerts/events/424242/ack", headers=operator)
    assert resp.status == 404
    error_of(await resp.json(), "not_found")
    for params in (
        {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        {"limit": "0"},
        {"from": "x"},
        {"alert_id": str(2**64)},
        {"from": "0001-01-01T00:00:00+14:00"},
    ):
        resp = await api.client.get("/api/v1/alerts/events", params=params, headers=viewer)
        assert resp.status == 400, params
        error_of(await resp.json(), "validation_error")


async def test_alert_scopes(make_api: MakeApi) -> None:
    api = await make_api()
    read = bearer(await api.key(["read"]))
    assert (await api.client.post("/api/v1/alerts", json=RULE, headers=read)).status == 403
    assert (await api.client.delete("/api/v1/alerts/1", headers=read)).status == 403
    assert (await api.client.put("/api/v1/alerts/1", json=RULE, headers=read)).status == 403
    assert (await api.client.get("/api/v1/alerts", headers=bearer(await api.key(["control"])))).status == 403
    assert (await api.client.get("/api/v1/alerts/events")).status == 401
