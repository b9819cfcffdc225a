"""GET /cloud-costs and /cloud-costs/summary: what the cloud cost plugins stored, and each account's
month (UTC days: AWS and Azure bill calendar months of UTC days, so a local-time month would split their
days)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.cloud_costs import (
    CloudCostList,
    CloudCostQuery,
    CloudSummaryList,
    CloudSummaryQuery,
)
from aetherlens.db.queries.cloud_costs import list_cloud_costs, summary_items


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
    rows = await list_cloud_costs(
        call.ctx.pool, provider=query.provider, account=query.account, start=query.from_, end=query.to
    )
    return {"items": [row.as_dict() for row in rows]}


@route(
    "GET",
    "/api/v1/cloud-costs/summary",
    scope="read",
    query=CloudSummaryQuery,
    response=CloudSummaryList,
    summary="Each cloud account's month: month to date, forecast, budget, today's estimate",
    description=(
        "One item per provider, account and currency with costs this month (UTC days) or a configured "
        "budget. `forecast_month` = `month_to_date` + the provider's forecast rows for the days after today."
    ),
)
async def get_cloud_summary(call: Call[CloudSummaryQuery, None]) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    items = await summary_items(
        call.ctx.pool, today, provider=call.query.provider, account=call.query.account
    )
    return {"items": items}
