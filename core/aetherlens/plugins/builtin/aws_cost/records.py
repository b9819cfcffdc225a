"""Cost Explorer answers -> cost records.

``GetCostAndUsage`` (DAILY, grouped by up to two dimensions) gives one ``ResultsByTime`` entry per day
with ``Groups`` (``Keys`` in the order of the request's ``GroupBy``, ``Metrics`` per metric) or, without
grouping, a ``Total``; ``Estimated`` says whether AWS still revises the day. ``GetCostForecast`` gives
``ForecastResultsByTime`` with a ``MeanValue`` per day (DAILY) or per month (MONTHLY, spread evenly over
its days here, so the summary's "rest of the month" stays a sum of days). Amounts stay ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from aetherlens.plugins.sdk import CostRecord

PROVIDER: Final = "aws"
DIMENSION_FIELDS: Final = {"SERVICE": "service", "LINKED_ACCOUNT": "account", "REGION": "region"}
SPREAD_QUANTUM: Final = Decimal("0.0000000001")


class AnswerError(ValueError):
    """Cost Explorer answered something this plugin cannot read (named, never guessed at)."""


def _day(period: Any, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(period[key])[:10])
    except (KeyError, TypeError, ValueError):
        raise AnswerError(f"a result's TimePeriod.{key} is not a date: {period!r}") from None


def _amount(metric: Any, what: str) -> tuple[Decimal, str]:
    try:
        return Decimal(str(metric["Amount"])), str(metric.get("Unit") or "USD")
    except (KeyError, TypeError, InvalidOperation):
        raise AnswerError(f"{what} has no decimal Amount: {metric!r}") from None


def usage_records(
    pages: Iterable[Mapping[str, Any]], metric: str, group_by: Sequence[str], payer: str
) -> tuple[list[CostRecord], set[dt.date]]:
    """Records of all pages, and every day the pages covered (with or without spend)."""
    records: list[CostRecord] = []
    days: set[dt.date] = set()
    for page in pages:
        for result in page.get("ResultsByTime") or []:
            day = _day(result.get("TimePeriod") or {}, "Start")
            days.add(day)
            estimated = bool(result.get("Estimated", False))
            if group_by:
                for group in result.get("Groups") or []:
                    keys = list(group.get("Keys") or [])
                    if len(keys) != len(group_by):
                        raise AnswerError(f"group keys {keys!r} do not match GroupBy {list(group_by)!r}")
                    fields: dict[str, str | None] = {"account": payer, "service": None, "region": None}
                    for dimension, key in zip(group_by, keys, strict=True):
                        fields[DIMENSION_FIELDS[dimension]] = key or None
                    amount, unit = _amount(
                        (group.get("Metrics") or {}).get(metric), f"group {keys!r} on {day}"
                    )
                    records.append(
                        CostRecord(
                            day,
                            PROVIDER,
                            amount,
                            unit,
                            account=fields["account"],
                            service=fields["service"],
                            region=fields["region"],
                            estimated=estimated,
                        )
                    )
            else:
                total = (result.get("Total") or {}).get(metric)
                if total is None:
                    continue  # a day without spend
                amount, unit = _amount(total, f"the total on {day}")
                records.append(CostRecord(day, PROVIDER, amount, unit, account=payer, estimated=estimated))
    return records, days


def forecast_records(answer: Mapping[str, Any], payer: str, first: dt.date, end: dt.date) -> list[CostRecord]:
    """One forecast record per day in ``[first, end)``, from a DAILY or MONTHLY forecast answer."""
    unit = str((answer.get("Total") or {}).get("Unit") or "USD")
    records: list[CostRecord] = []
    for result in answer.get("ForecastResultsByTime") or []:
        period = result.get("TimePeriod") or {}
        start, stop = max(_day(period, "Start"), first), min(_day(period, "End"), end)
        try:
            mean = Decimal(str(result["MeanValue"]))
        except (KeyError, InvalidOperation):
            raise AnswerError(f"a forecast result has no decimal MeanValue: {result!r}") from None
        span = (_day(period, "End") - _day(period, "Start")).days
        if span <= 0 or start >= stop:
            continue
        if span == 1:
            records.append(CostRecord(start, PROVIDER, mean, unit, account=payer, kind="forecast"))
            continue
        # A month (or a longer span): the same share per day, the rounding rest on its last day, so the
        # days add up to exactly what AWS forecast for the span.
        share = (mean / span).quantize(SPREAD_QUANTUM)
        span_days = [_day(period, "Start") + dt.timedelta(days=i) for i in range(span)]
        for index, day in enumerate(span_days):
            amount = share if index < span - 1 else mean - share * (span - 1)
            if start <= day < stop:
                records.append(CostRecord(day, PROVIDER, amount, unit, account=payer, kind="forecast"))
    return records
