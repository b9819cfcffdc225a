"""GET /cloud-costs over HTTP: filters, validation, scope."""

from __future__ import annotations

import datetime as dt

from aetherlens.api.schemas.cloud_costs import CloudCostList

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
