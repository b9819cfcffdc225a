"""GET /cloud-costs: what the cloud cost plugins stored, filtered by provider and day range."""

from __future__ import annotations

from typing import Any

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.cloud_costs import CloudCostList, CloudCostQuery
from aetherlens.db.queries.cloud_costs import list_cloud_costs


@route(
    "GET",
    "/api/v1/cloud-costs",
    scope="read",
    query=CloudCostQuery,
    response=CloudCostList,
    summary="Cloud cost rows",
    description="Rows with `from <= day < to`, oldest first; either end may be left open.",
)
async def get_cloud_costs(call: Call[CloudCostQuery, None]) -> dict[str, Any]:
    query = call.query
    rows = await list_cloud_costs(call.ctx.pool, provider=query.provider, start=query.from_, end=query.to)
    return {"items": [row.as_dict() for row in rows]}
