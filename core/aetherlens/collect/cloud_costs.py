"""Cloud-cost reports from the plugins into ``cloud_costs`` / ``cloud_budgets`` (the core's ``CostSink``).

A report is ``CostReport.to_wire()`` of ``aetherlens.plugins.sdk``: records and budgets whose amounts
travel as decimal strings. ``parse_report`` checks every item and names what is wrong with the bad ones
(they are left out, the rest is stored); ``CostWriter.store_costs`` stores the good ones in one
transaction, or raises when it cannot (database down), so the plugin learns nothing of that report
was kept and fetches those days again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import asyncpg

from aetherlens.db.queries.cloud_costs import BudgetRow, CostRow, replace_budgets, upsert_cloud_costs
from aetherlens.models import MAX_MAGNITUDE, CostsStored

log = logging.getLogger(__name__)

PROVIDER_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
CURRENCY_PATTERN: Final = re.compile(r"^[A-Z]{3}$")
MAX_TEXT: Final = 512  # account ids, service names, resource groups and regions are far shorter
MAX_ITEMS: Final = 200_000
STORE_TIMEOUT: Final = 30.0  # an unreachable database must not hold the plugin's schedule for long


@dataclass(slots=True)
class ParsedReport:
    records: list[CostRow] = field(default_factory=list)
    budgets: list[BudgetRow] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class _Bad(ValueError):
    pass


def _text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise _Bad(f"'{key}' is missing")
        return None
    if not isinstance(value, str):
        raise _Bad(f"'{key}' must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_TEXT:
        raise _Bad(f"'{key}' must be 1 to {MAX_TEXT} characters")
    return value


def _provider(item: Mapping[str, Any]) -> str:
    provider = _text(item, "provider", required=True)
    assert provider is not None
    if not PROVIDER_PATTERN.fullmatch(provider):
        raise _Bad(f"'provider' {provider!r} must be lower-case letters, digits and '_' (e.g. aws, azure)")
    return provider


def _amount(item: Mapping[str, Any], *, minimum: Decimal | None = None) -> Decimal:
    raw = item.get("amount")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _Bad("'amount' must be a decimal string")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise _Bad(f"'amount' {raw!r} is not a decimal number") from None
    if not amount.is_finite() or abs(amount) > MAX_MAGNITUDE:
        raise _Bad(f"'amount' {raw!r} is not a finite amount")
    if minimum is not None and amount < minimum:
        raise _Bad(f"'amount' {raw!r} must be at least {minimum}")
    return amount


def _currency(item: Mapping[str, Any], *, required: bool) -> str | None:
    currency = _text(item, "currency", required=required)
    if currency is not None and not CURRENCY_PATTERN.fullmatch(currency):
        raise _Bad(f"'currency' {currency!r} must be a three-letter ISO 4217 code such as USD")
    return currency


def _record(item: Any) -> CostRow:
    if not isinstance(item, Mapping):
        raise _Bad("must be an object")
    day_text = _text(item, "day", required=True)
    assert day_text is not None
    try:
        day = dt.date.fromisoformat(day_text)
    except ValueError:
        raise _Bad(f"'day' {day_text!r} is not an ISO date (YYYY-MM-DD)") from None
    kind = item.get("kind", "actual")
    if kind not in ("actual", "forecast"):
        raise _Bad(f"'kind' {kind!r} must be 'actual' or 'forecast'")
    estimated = item.get("estimated", False)
    if not isinstance(estimated, bool):
        raise _Bad("'estimated' must be true or false")
    currency = _currency(item, required=True)
    assert currency is not None
    return CostRow(
        day=day,
        provider=_provider(item),
        account=_text(item, "account"),
        service=_text(item, "service"),
        resource_group=_text(item, "resource_group"),
        region=_text(item, "region"),
        amount=_amount(item),
        currency=currency,
        kind=kind,
        estimated=estimated,
    )


def _budget(item: Any) -> BudgetRow:
    if not isinstance(item, Mapping):
        raise _Bad("must be an object")
    account = _text(item, "account", required=True)
    assert account is not None
    return BudgetRow(
        provider=_provider(item),
        account=account,
        amount=_amount(item, minimum=Decimal(0)),
        currency=_currency(item, required=False),
    )


def parse_report(report: Any) -> ParsedReport:
    """Validate a wire report; a report that is not ``{"records": [...], "budgets": [...]}`` raises."""
    if not isinstance(report, Mapping):
        raise ValueError(f"a cost report must be an object, not {type(report).__name__}")
    records, budgets = report.get("records", []), report.get("budgets", [])
    if not isinstance(records, list) or not isinstance(budgets, list):
        raise ValueError("a cost report's 'records' and 'budgets' must be lists")
    if len(records) + len(budgets) > MAX_ITEMS:
        raise ValueError(f"a cost report may hold at most {MAX_ITEMS} records and budgets")
    parsed = ParsedReport()
    for index, item in enumerate(records):
        try:
            parsed.records.append(_record(item))
        except _Bad as exc:
            parsed.rejected.append(f"records[{index}]: {exc}")
    for index, item in enumerate(budgets):
        try:
            parsed.budgets.append(_budget(item))
        except _Bad as exc:
            parsed.rejected.append(f"budgets[{index}]: {exc}")
    return parsed


def replaces_budgets(report: Mapping[str, Any]) -> bool:
    """A report that says nothing at all (a poll the plugin skipped) leaves the stored budgets alone;
    any other report (even one whose items were all refused) states the instance's whole set."""
    return bool(report.get("records") or report.get("budgets"))


class CostWriter:
    """The core's ``CostSink``: one transaction per report on the core's pool."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = STORE_TIMEOUT) -> None:
        self.pool = pool
        self.timeout = timeout

    async def store_costs(self, report: Mapping[str, Any], *, source: str) -> CostsStored:
        parsed = parse_report(report)
        async with asyncio.timeout(self.timeout):
            async with self.pool.acquire() as conn, conn.transaction():
                records = await upsert_cloud_costs(conn, parsed.records)
                budgets = (
                    await replace_budgets(conn, source, parsed.budgets) if replaces_budgets(report) else 0
                )
        if parsed.rejected:
            log.warning(
                "cost report of %s: %d item(s) refused, e.g. %s",
                source,
                len(parsed.rejected),
                parsed.rejected[0],
                extra={"plugin": source},
            )
        return CostsStored(records=records, budgets=budgets, rejected=parsed.rejected)
