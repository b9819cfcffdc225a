"""One subscription's Query and Forecast calls, their pages, and their rows as cost records.

The generated SDK returns one page per call and leaves ``properties.nextLink`` to the caller. The next
page is the same POST with the link's ``$skiptoken``; it is sent through the same client (so through
its authentication, retry and throttling policies) to the configured endpoint, instead of to whatever
host the link names, so the bearer token only ever goes where the configuration said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from azure.mgmt.costmanagement.aio import CostManagementClient
from azure.mgmt.costmanagement.models import (
    ForecastAggregation,
    ForecastDataset,
    ForecastDefinition,
    ForecastTimePeriod,
    QueryAggregation,
    QueryDataset,
    QueryDefinition,
    QueryGrouping,
    QueryTimePeriod,
)

from aetherlens.plugins.sdk import CostRecord

from .config import SERVICE_DIMENSIONS, AzureCostConfig, Subscription

PROVIDER: Final = "azure"
MAX_PAGES: Final = 500  # a link that never ends is a service fault, not a reason to loop forever
COST_COLUMNS: Final = ("Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD")


class AnswerError(Exception):
    """The service answered something this plugin cannot read (columns missing, a bad row)."""


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]


def scope(subscription: Subscription) -> str:
    return f"subscriptions/{subscription.id}"  # the form the REST examples use


def next_page(next_link: str) -> dict[str, str]:
    """The query parameter that asks for the page ``next_link`` names (``$skiptoken``; ``skiptoken``
    as some Cost Management links spell it)."""
    query = parse_qs(urlsplit(next_link).query)
    for name in ("$skiptoken", "skiptoken"):
        values = query.get(name)
        if values and values[0]:
            return {name: values[0]}
    raise AnswerError(f"nextLink without a $skiptoken: {next_link[:200]}")


def _window(start: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(start, time.min, UTC), datetime.combine(end, time(23, 59, 59), UTC)


def usage_definition(cfg: AzureCostConfig, start: date, end: date) -> QueryDefinition:
    first, last = _window(start, end)
    return QueryDefinition(
        type=cfg.cost_type,
        timeframe="Custom",
        time_period=QueryTimePeriod(from_property=first, to=last),
        dataset=QueryDataset(
            granularity="Daily",
            aggregation={"totalCost": QueryAggregation(name=cfg.cost_column, function="Sum")},
            grouping=[QueryGrouping(type="Dimension", name=name) for name in cfg.group_by],
        ),
    )


def forecast_definition(cfg: AzureCostConfig, start: date, end: date) -> ForecastDefinition:
    first, last = _window(start, end)
    return ForecastDefinition(
        type=cfg.cost_type,
        timeframe="Custom",
        time_period=ForecastTimePeriod(from_property=first, to=last),
        dataset=ForecastDataset(
            granularity="Daily",
            aggregation={"totalCost": ForecastAggregation(name=cfg.cost_column, function="Sum")},
        ),
        include_actual_cost=False,
        include_fresh_partial_cost=False,
    )


async def fetch_usage(client: CostManagementClient, sub: Subscription, definition: QueryDefinition) -> Table:
    table = Table([], [])
    params: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        result = await client.query.usage(scope(sub), definition, params=params)
        if result is None or result.properties is None:  # 204: nothing in that period
            return table
        link = _add_page(table, result.properties)
        if not link:
            return table
        params = next_page(link)
    raise AnswerError(f"more than {MAX_PAGES} pages of query results")


async def fetch_forecast(
    client: CostManagementClient, sub: Subscription, definition: ForecastDefinition
) -> Table:
    table = Table([], [])
    params: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        result = await client.forecast.usage(scope(sub), definition, params=params)
        if result is None or result.properties is None:
            return table
        link = _add_page(table, result.properties)
        if not link:
            return table
        params = next_page(link)
    raise AnswerError(f"more than {MAX_PAGES} pages of forecast results")


def _add_page(table: Table, properties: Any) -> str | None:
    columns = [str(c.name) for c in (properties.columns or [])]
    rows = list(properties.rows or [])
    if rows:
        if table.columns and [c.lower() for c in columns] != [c.lower() for c in table.columns]:
            raise AnswerError(f"a later page has other columns ({columns} after {table.columns})")
        if not table.columns:
            table.columns.extend(columns)
        table.rows.extend(rows)
    elif not table.columns:
        table.columns.extend(columns)
    link = properties.next_link
    return str(link) if link else None


def _index(columns: Sequence[str], *names: str) -> int | None:
    lowered = [c.lower() for c in columns]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def _day(value: Any) -> date:
    # UsageDate is a number yyyymmdd in the documented answers; some scopes send an ISO string.
    text = str(int(value)) if isinstance(value, int | float) else str(value)
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _amount(value: Any) -> Decimal:
    try:
        # str() of a float is its shortest round-trip form: the digits the JSON answer carried.
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise AnswerError(f"cost {value!r} is not a number") from exc


def records(
    table: Table,
    sub: Subscription,
    cfg: AzureCostConfig,
    *,
    kind: Literal["actual", "forecast"],
    estimated_from: date | None = None,
) -> list[CostRecord]:
    """Rows as records; rows of the same key are summed (the store keeps one amount per key)."""
    if not table.rows:
        return []
    cols = table.columns
    cost = _index(cols, cfg.cost_column, *COST_COLUMNS)
    day = _index(cols, "UsageDate")
    currency = _index(cols, "Currency")
    if cost is None or day is None or currency is None:
        raise AnswerError(f"answer lacks a cost, UsageDate or Currency column (columns: {cols})")
    resource_group = _index(cols, "ResourceGroup", "ResourceGroupName") if kind == "actual" else None
    service_dim = next((g for g in cfg.group_by if g in SERVICE_DIMENSIONS), None)
    service = _index(cols, service_dim) if service_dim and kind == "actual" else None
    status = _index(cols, "CostStatus")
    totals: dict[tuple[date, str | None, str | None, str], Decimal] = {}
    for row in table.rows:
        try:
            if status is not None and kind == "forecast" and str(row[status]).lower() != "forecast":
                continue  # an actual the Forecast API mixed in: the Query API is the source of those
            key = (
                _day(row[day]),
                (str(row[service]) or None) if service is not None else None,
                # Resource group names are case-insensitive in Azure and the answers mix cases
                # (the documented example has "Ict_..._Prod" and "ict_..._prod"): one key per group.
                (str(row[resource_group]).lower() or None) if resource_group is not None else None,
                str(row[currency]),
            )
            totals[key] = totals.get(key, Decimal(0)) + _amount(row[cost])
        except (IndexError, ValueError, TypeError) as exc:
            raise AnswerError(f"unreadable row {row!r}: {exc}") from exc
    return [
        CostRecord(
            day=d,
            provider=PROVIDER,
            amount=amount,
            currency=cur,
            account=sub.id,
            service=svc,
            resource_group=rg,
            kind=kind,
            estimated=kind == "actual" and estimated_from is not None and d >= estimated_from,
        )
        for (d, svc, rg, cur), amount in sorted(totals.items(), key=lambda item: str(item[0]))
    ]
