"""Cost routes: /costs/summary, /costs/devices, /costs/history, /costs/changes, /costs/bill,
/costs/comparison.

All numbers come from aetherlens.costs.service, the same layer the CLI's ``bill`` uses.
"""

from __future__ import annotations

from typing import Any

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.costs import (
    Bill,
    BillQuery,
    ChangesQuery,
    ComparisonQuery,
    ComparisonRow,
    CostChanges,
    CostHistory,
    CostHistoryQuery,
    CostRange,
    CostSummary,
    DeviceCostList,
)
from aetherlens.costs import service, store
from aetherlens.errors import NotFoundError


@route("GET", "/api/v1/costs/summary", scope="read", response=CostSummary, summary="Cost at a glance")
async def cost_summary(call: Call[None, None]) -> dict[str, Any]:
    return await service.summary(call.ctx.pool, call.ctx.settings)


@route(
    "GET",
    "/api/v1/costs/devices",
    scope="read",
    query=CostRange,
    response=DeviceCostList,
    summary="Each device's share of the site bill for exactly this range (the items add up to it)",
)
async def cost_by_device(call: Call[CostRange, None]) -> dict[str, Any]:
    meter = call.ctx.settings.site.meter_device
    items = await service.device_costs(call.ctx.pool, call.query.from_, call.query.to, meter_device=meter)
    return {"items": items}


@route(
    "GET",
    "/api/v1/costs/history",
    scope="read",
    query=CostHistoryQuery,
    response=CostHistory,
    summary="Cost over time: UTC hours, or the tariff's local days",
)
async def cost_history(call: Call[CostHistoryQuery, None]) -> dict[str, Any]:
    q = call.query
    return await service.history(call.ctx.pool, q.device_id, q.from_, q.to, q.resolution)


@route(
    "GET",
    "/api/v1/costs/changes",
    scope="read",
    query=ChangesQuery,
    response=CostChanges,
    summary="Which series of the hourly cost history changed after a revision, from which hour",
)
async def cost_changes(call: Call[ChangesQuery, None]) -> dict[str, Any]:
    return await service.changes(call.ctx.pool, call.query.since)


@route(
    "GET",
    "/api/v1/costs/bill",
    scope="read",
    query=BillQuery,
    response=list[Bill],
    errors=(404,),
    summary="Bill per billing cycle inside [from, to)",
)
async def cost_bill(call: Call[BillQuery, None]) -> list[dict[str, Any]]:
    q = call.query
    tariff_id = q.tariff_id
    if tariff_id is None:
        async with call.ctx.pool.acquire() as conn:
            tariff_id = await store.active_tariff_id(conn)
        if tariff_id is None:
            raise NotFoundError("no tariff_id given and no tariff is active")
    return await service.bill(
        call.ctx.pool,
        tariff_id,
        q.from_,
        q.to,
        q.device_id,
        meter_device=call.ctx.settings.site.meter_device,
    )


@route(
    "GET",
    "/api/v1/costs/comparison",
    scope="read",
    query=ComparisonQuery,
    response=list[ComparisonRow],
    summary="Every stored tariff priced on the same metered energy, cheapest first",
)
async def cost_comparison(call: Call[ComparisonQuery, None]) -> list[dict[str, Any]]:
    q = call.query
    return await service.comparison(
        call.ctx.pool, q.from_, q.to, meter_device=call.ctx.settings.site.meter_device
    )
