"""GET /cloud-costs over HTTP: filters, validation, scope."""

from __future__ import annotations

import datetime as dt

from aetherlens.api.schemas.cloud_costs import CloudCostList, CloudSummaryList

from .conftest import MakeApi
from .test_devices_routes import bearer, error_of


async def test_cloud_costs_filters(make_api: MakeApi) -> None:
    api = await make_api()
    await api.pool.executemany(
        """INSERT INTO cloud_costs (day, provider, account, service, region, amount, currency, kind)
           VALUES ($1, $2, '123', $3, 'eu-west-1', $4, 'USD', $5)""",
        [
            (dt.date(2026, 3, 1), "aws", "EC2", 1.25, "actual"),
            (dt.date(2026, 3, 2), "aws", "S3", 0.5, "actual"),
            (dt.date(2026, 3, 2), "azure", "VM", 2.0, "actual"),
            (dt.date(2026, 3, 9), "aws", "EC2", 1.5, "forecast"),
        ],
    )
    h = bearer(await api.key(["read"]))
    resp = await api.client.get("/api/v1/cloud-costs", headers=h)
    assert resp.status == 200
    everything = await resp.json()
    CloudCostList.model_validate(everything)
    assert len(everything["items"]) == 4
    resp = await api.client.get(
        "/api/v1/cloud-costs", params={"provider": "aws", "from": "2026-03-02", "to": "2026-03-09"}, headers=h
    )
    assert (await resp.json())["items"] == [
        {
            "day": "2026-03-02",
            "provider": "aws",
            "account": "123",
            "service": "S3",
            "resource_group": None,
            "region": "eu-west-1",
            "amount": 0.5,
            "currency": "USD",
            "kind": "actual",
            "estimated": False,
        }
    ]
    for params, text in [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "'from' must be earlier than 'to'"),
        ({"from": "March"}, "query.from"),
        ({"provider": ""}, "query.provider"),
    ]:
        resp = await api.client.get("/api/v1/cloud-costs", params=params, headers=h)
        assert resp.status == 400
        assert text in error_of(await resp.json(), "validation_error")["message"]
    assert (
        await api.client.get("/api/v1/cloud-costs", headers=bearer(await api.key(["ingest"])))
    ).status == 403


async def test_cloud_costs_account_filter_and_estimated(make_api: MakeApi) -> None:
    api = await make_api()
    await api.pool.executemany(
        """INSERT INTO cloud_costs (day, provider, account, service, amount, currency, kind, estimated)
           VALUES ($1, 'aws', $2, 'EC2', 1, 'USD', 'actual', $3)""",
        [
            (dt.date(2026, 3, 1), "111", False),
            (dt.date(2026, 3, 2), "111", True),
            (dt.date(2026, 3, 1), "222", False),
        ],
    )
    h = bearer(await api.key(["read"]))
    resp = await api.client.get("/api/v1/cloud-costs", params={"account": "111"}, headers=h)
    items = (await resp.json())["items"]
    assert [(i["day"], i["account"], i["estimated"]) for i in items] == [
        ("2026-03-01", "111", False),
        ("2026-03-02", "111", True),
    ]
    resp = await api.client.get("/api/v1/cloud-costs", params={"account": ""}, headers=h)
    assert resp.status == 400


async def test_cloud_costs_summary_month_forecast_budget_and_estimate(make_api: MakeApi) -> None:
    api = await make_api()
    today = dt.datetime.now(dt.UTC).date()
    first = today.replace(day=1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    rows = [
        (first - dt.timedelta(days=1), "aws", "111", "EC2", 500.0, "USD", "actual", False),  # last month
        (first, "aws", "111", "EC2", 10.0, "USD", "actual", False),
        (first, "aws", "111", "S3", 2.5, "USD", "actual", False),
        (today, "aws", "111", "Lambda", 1.5, "USD", "actual", True),
        (today, "aws", "111", None, 99.0, "USD", "forecast", False),  # today: the actuals count instead
        (last + dt.timedelta(days=1), "aws", "111", None, 50.0, "USD", "forecast", False),  # next month
        (today, "azure", "sub-1", "VM", 3.0, "EUR", "actual", False),
    ]
    if today != last:
        rows.append((last, "aws", "111", None, 7.0, "USD", "forecast", False))
    await api.pool.executemany(
        """INSERT INTO cloud_costs (day, provider, account, service, amount, currency, kind, estimated)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        rows,
    )
    await api.pool.executemany(
        "INSERT INTO cloud_budgets (provider, account, amount, currency, source) VALUES ($1, $2, $3, $4, $5)",
        [("aws", "111", 200, None, "aws_cost"), ("aws", "999", 40, "USD", "aws_cost")],
    )
    h = bearer(await api.key(["read"]))
    resp = await api.client.get("/api/v1/cloud-costs/summary", headers=h)
    assert resp.status == 200
    body = await resp.json()
    CloudSummaryList.model_validate(body)
    month_to_date = 10.0 + 2.5 + 1.5
    assert body["items"] == [
        {
            "provider": "aws",
            "account": "111",
            "currency": "USD",
            "month_to_date": month_to_date,
            "forecast_month": month_to_date + (7.0 if today != last else 0.0),
            "budget": 200.0,
            "estimated_today": 1.5,
        },
        {
            "provider": "aws",
            "account": "999",
            "currency": "USD",
            "month_to_date": None,
            "forecast_month": None,
            "budget": 40.0,
            "estimated_today": None,
        },
        {
            "provider": "azure",
            "account": "sub-1",
            "currency": "EUR",
            "month_to_date": 3.0,
            "forecast_month": 3.0 if today == last else None,  # no forecast rows: unknown
            "budget": None,
            "estimated_today": None,
        },
    ]
    resp = await api.client.get("/api/v1/cloud-costs/summary", params={"provider": "azure"}, headers=h)
    assert [i["account"] for i in (await resp.json())["items"]] == ["sub-1"]
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    schema = doc["paths"]["/api/v1/cloud-costs/summary"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]
    assert "schema" in schema
    assert (await api.client.get("/api/v1/cloud-costs/summary")).status == 401
