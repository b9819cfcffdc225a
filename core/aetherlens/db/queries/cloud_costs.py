"""The ``cloud_costs`` and ``cloud_budgets`` tables: their one owner.

The cloud-cost plugins' reports reach them through ``aetherlens.collect.cloud_costs.CostWriter``
(``upsert_cloud_costs`` and ``replace_budgets`` in one transaction); the API and the alert engine read
them (``list_cloud_costs``, ``list_budgets``, ``month_summary``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from aetherlens.db.queries import Queryable
from aetherlens.errors import ValidationError

# NULL parameters switch a filter off, so one fixed statement serves every combination.
_LIST_SQL: Final = """
SELECT day, provider, account, service, resource_group, region, amount, currency, kind, estimated
FROM cloud_costs
WHERE ($1::text IS NULL OR provider = $1)
  AND ($2::date IS NULL OR day >= $2)
  AND ($3::date IS NULL OR day < $3)
  AND ($5::text IS NULL OR account = $5)
ORDER BY day, provider, account, service, resource_group, region, kind
LIMIT $4
"""

# A re-fetched day replaces what was stored for its key (the provider revised it); NULLS NOT DISTINCT on
# the key makes a row without, say, a resource group still one row.
_UPSERT_SQL: Final = """
INSERT INTO cloud_costs
    (day, provider, account, service, resource_group, region, amount, currency, kind, estimated)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::numeric[], $8::text[], $9::text[], $10::boolean[])
ON CONFLICT ON CONSTRAINT cloud_costs_key DO UPDATE
SET amount = EXCLUDED.amount,
    currency = EXCLUDED.currency,
    estimated = EXCLUDED.estimated,
    updated_at = now()
"""

_DELETE_BUDGETS_SQL: Final = """
DELETE FROM cloud_budgets
WHERE source = $1 AND (provider, account) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))
"""

_UPSERT_BUDGETS_SQL: Final = """
INSERT INTO cloud_budgets (provider, account, amount, currency, source)
SELECT p, a, m, c, $5 FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[]) AS b(p, a, m, c)
ON CONFLICT (provider, account) DO UPDATE
SET amount = EXCLUDED.amount, currency = EXCLUDED.currency, source = EXCLUDED.source, updated_at = now()
"""

_BUDGETS_SQL: Final = """
SELECT provider, account, amount, currency, source, updated_at
FROM cloud_budgets
WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR account = $2)
ORDER BY provider, account
"""

# One row per (provider, account, currency) with spend this month; `today`'s estimated actuals apart;
# forecast rows only for the days after today (earlier ones are superseded by actuals).
_SUMMARY_SQL: Final = """
SELECT provider, account, currency,
       sum(amount) FILTER (WHERE kind = 'actual' AND day <= $2) AS month_to_date,  -- NULL: no actuals
       sum(amount) FILTER (WHERE kind = 'forecast' AND day > $2) AS forecast_rest,
       sum(amount) FILTER (WHERE kind = 'actual' AND day = $2 AND estimated) AS estimated_today
FROM cloud_costs
WHERE day >= $1 AND day < $3
  AND ($4::text IS NULL OR provider = $4)
  AND ($5::text IS NULL OR account = $5)
GROUP BY provider, account, currency
ORDER BY provider, account, currency
"""

MAX_ROWS: Final = 100_000


@dataclass(frozen=True, slots=True)
class CloudCost:
    day: dt.date
    provider: str
    account: str | None
    service: str | None
    resource_group: str | None
    region: str | None
    amount: float
    currency: str
    kind: str | None
    estimated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "provider": self.provider,
            "account": self.account,
            "service": self.service,
            "resource_group": self.resource_group,
            "region": self.region,
            "amount": self.amount,
            "currency": self.currency,
            "kind": self.kind,
            "estimated": self.estimated,
        }


@dataclass(frozen=True, slots=True)
class CostRow:
    """One record to upsert, already validated (``aetherlens.collect.cloud_costs.parse_report``)."""

    day: dt.date
    provider: str
    account: str | None
    service: str | None
    resource_group: str | None
    region: str | None
    amount: Decimal
    currency: str
    kind: str
    estimated: bool

    def key(self) -> tuple[Any, ...]:
        return (
            self.day, self.provider, self.account, self.service, self.resource_group, self.region, self.kind
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BudgetRow:
    provider: str
    account: str
    amount: Decimal
    currency: str | None


@dataclass(frozen=True, slots=True)
class StoredBudget:
    provider: str
    account: str
    amount: float
    currency: str | None
    source: str
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One account's current month: sums of what is stored (None where nothing is)."""

    provider: str
    account: str | None
    currency: str
    month_to_date: float | None
    forecast_rest: float | None
    estimated_today: float | None


async def list_cloud_costs(
    db: Queryable,
    *,
    provider: str | None = None,
    account: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int = MAX_ROWS,
) -> list[CloudCost]:
    """Rows with ``start <= day < end`` (either end open when ``None``), oldest first."""
    if start is not None and end is not None and start >= end:
        raise ValidationError(
            "'from' must be earlier than 'to'", details={"from": start.isoformat(), "to": end.isoformat()}
        )
    rows = await db.fetch(_LIST_SQL, provider, start, end, limit, account)
    return [
        CloudCost(
            day=r[0],
            provider=r[1],
            account=r[2],
            service=r[3],
            resource_group=r[4],
            region=r[5],
            amount=float(r[6]),
            currency=r[7],
            kind=r[8],
            estimated=bool(r[9]),
        )
        for r in rows
    ]


async def upsert_cloud_costs(db: Queryable, rows: Sequence[CostRow]) -> int:
    """Insert or replace ``rows`` (the last of several with one key wins); returns how many were written."""
    unique = list({row.key(): row for row in rows}.values())  # ON CONFLICT may touch a row only once
    if not unique:
        return 0
    columns: list[list[Any]] = [[] for _ in range(10)]
    for row in unique:
        values = (
            row.day,
            row.provider,
            row.account,
            row.service,
            row.resource_group,
            row.region,
            row.amount,
            row.currency,
            row.kind,
            row.estimated,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await db.execute(_UPSERT_SQL, *columns)
    return len(unique)


async def replace_budgets(db: Queryable, source: str, budgets: Sequence[BudgetRow]) -> int:
    """Make ``budgets`` the budgets of plugin instance ``source``: others it stored before are removed."""
    unique = list({(b.provider, b.account): b for b in budgets}.values())
    await db.execute(_DELETE_BUDGETS_SQL, source, [b.provider for b in unique], [b.account for b in unique])
    if unique:
        await db.execute(
            _UPSERT_BUDGETS_SQL,
            [b.provider for b in unique],
            [b.account for b in unique],
            [b.amount for b in unique],
            [b.currency for b in unique],
            source,
        )
    return len(unique)


async def list_budgets(
    db: Queryable, *, provider: str | None = None, account: str | None = None
) -> list[StoredBudget]:
    rows = await db.fetch(_BUDGETS_SQL, provider, account)
    return [StoredBudget(r[0], r[1], float(r[2]), r[3], r[4], r[5]) for r in rows]


async def month_summary(
    db: Queryable,
    today: dt.date,
    *,
    provider: str | None = None,
    account: str | None = None,
) -> list[MonthRow]:
    """The calendar month of ``today`` per (provider, account, currency)."""
    first = today.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    rows = await db.fetch(_SUMMARY_SQL, first, today, following, provider, account)

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return [
        MonthRow(
            provider=r["provider"],
            account=r["account"],
            currency=r["currency"],
            month_to_date=number(r["month_to_date"]),
            forecast_rest=number(r["forecast_rest"]),
            estimated_today=number(r["estimated_today"]),
        )
        for r in rows
    ]


async def summary_items(
    db: Queryable,
    today: dt.date,
    *,
    provider: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """``GET /cloud-costs/summary`` items: per account and currency, the month of ``today`` (UTC days).

    ``forecast_month`` = month to date + the forecast rows for the days after today (null without any,
    except on the month's last day, when nothing is left to forecast); ``budget`` from ``cloud_budgets``
    when its currency is unset or the account's; an account with a budget and no costs yet is listed with
    nulls. ``estimated_today`` is the sum of today's actuals the provider marks as estimates."""
    last_day = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    months = await month_summary(db, today, provider=provider, account=account)
    budgets = {(b.provider, b.account): b for b in await list_budgets(db, provider=provider, account=account)}
    items: list[dict[str, Any]] = []
    for m in months:
        budget = budgets.get((m.provider, m.account or ""))
        if m.month_to_date is None:
            forecast = None
        elif today == last_day:
            forecast = m.month_to_date
        else:
            forecast = None if m.forecast_rest is None else m.month_to_date + m.forecast_rest
        items.append(
            {
                "provider": m.provider,
                "account": m.account,
                "currency": m.currency,
                "month_to_date": m.month_to_date,
                "forecast_month": forecast,
                "budget": budget.amount
                if budget is not None and budget.currency in (None, m.currency)
                else None,
                "estimated_today": m.estimated_today,
            }
        )
    listed = {(m.provider, m.account) for m in months}
    for (budget_provider, budget_account), budget in budgets.items():
        if (budget_provider, budget_account) not in listed:
            items.append(
                {
                    "provider": budget_provider,
                    "account": budget_account,
                    "currency": budget.currency,
                    "month_to_date": None,
                    "forecast_month": None,
                    "budget": budget.amount,
                    "estimated_today": None,
                }
            )
    items.sort(key=lambda i: (i["provider"], i["account"] or "", i["currency"] or ""))
    return items
