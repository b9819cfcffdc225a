"""Azure Cost Management source: daily costs per subscription, month to date, forecast, budgets.

Every poll asks each subscription (concurrently, each within ``subscription_timeout``, so a dead or
throttled one never holds up the others) for the days that may still change: the current month,
minus the closed days already stored, plus the settle window (today and the ``settle_days`` before,
which Azure still revises; they are marked estimated). The Forecast API fills the rest of the month.
A closed day is asked for until a report covering it was stored, then never again (``closed_days``).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline import PipelineRequest
from azure.mgmt.costmanagement.aio import CostManagementClient

from aetherlens.plugins.sdk import BasePlugin, CostBudget, CostRecord, CostReport

from . import config as configuration
from . import credentials, query
from .closed_days import ClosedDays
from .health import SubscriptionHealth, describe_error, subscription_of
from .throttle import CostManagementRetryPolicy

MAX_SPAN_DAYS: Final = 31


@dataclass(frozen=True)
class Window:
    """The days one poll asks for: ``start``..``today``; days from ``open_from`` on are estimates."""

    start: date
    open_from: date
    today: date

    @property
    def closed_through(self) -> date | None:
        """The last closed day this window covers (None: it covers only open days)."""
        last = self.open_from - timedelta(days=1)
        return last if self.start <= last else None


def plan(today: date, settle_days: int, stored_through: date | None) -> Window:
    open_from = today - timedelta(days=settle_days)
    month_start = today.replace(day=1)
    if stored_through is None:
        # The month so far, and last month's days that are still open (on the 1st, say).
        start = min(month_start, open_from)
    else:
        # From the first closed day not stored yet: on April 1st that is a March day fetched only as
        # an estimate so far. Never before last month's first day, though: after a long pause the
        # plugin does not go back in history (the month to date and last month's total are what count).
        last_month_start = (month_start - timedelta(days=1)).replace(day=1)
        start = min(max(stored_through + timedelta(days=1), last_month_start), open_from)
    return Window(start=start, open_from=open_from, today=today)


def spans(start: date, end: date) -> list[tuple[date, date]]:
    """``start``..``end`` in pieces the Query API takes at daily granularity (at most 31 days each);
    after a pause the window reaches back to last month's first day, which can be longer."""
    pieces = []
    while start <= end:
        last = min(end, start + timedelta(days=MAX_SPAN_DAYS - 1))
        pieces.append((start, last))
        start = last + timedelta(days=1)
    return pieces


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


class AzureCostPlugin(BasePlugin):
    capabilities = ("costs.collect",)

    #: the current UTC time; Cost Management's days are UTC days. Replaceable for a test's calendar.
    clock: Callable[[], datetime] = staticmethod(lambda: datetime.now(UTC))

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        return configuration.problems(config)

    async def setup(self) -> None:
        # azure-core logs every request at INFO (headers, redacted, but noisy) and the identity
        # library's debug output may describe token requests: keep both out of the core log.
        logging.getLogger("azure").setLevel(logging.WARNING)
        self.cfg = configuration.parse(self.config)
        self.health = {s.id: SubscriptionHealth(s.name) for s in self.cfg.subscriptions}
        self.closed = ClosedDays(self.state_dir)
        self.closed.load()
        for sub_id, entry in self.health.items():
            entry.stored_through = self.closed.get(sub_id)
        #: closed-day marks of the last report, applied once the core says it stored it
        self.pending: dict[str, date] = {}
        self.currency: dict[str, str] = {}
        self.last_poll: datetime | None = None
        self.credential: AsyncTokenCredential = credentials.build(self.cfg)
        client_options: dict[str, Any] = {}
        if self.cfg.ca_file:
            client_options["connection_verify"] = self.cfg.ca_file
        self.client = CostManagementClient(
            self.credential,
            base_url=self.cfg.endpoint,
            retry_policy=CostManagementRetryPolicy(
                max_retry_wait=self.cfg.max_retry_wait, retry_total=self.cfg.retry_total
            ),
            raw_request_hook=self._count_request,
            **client_options,
        )

    async def teardown(self) -> None:
        await self.client.close()
        await self.credential.close()

    def _count_request(self, request: PipelineRequest[Any]) -> None:
        sub_id = subscription_of(request.http_request.url)
        entry = self.health.get(sub_id) if sub_id else None
        if entry is not None:
            entry.count_request(self.clock().date())

    async def collect_costs(self) -> CostReport:
        now = self.clock()
        self.last_poll = now
        self.pending = {}
        results = await asyncio.gather(*(self._collect_one(sub, now) for sub in self.cfg.subscriptions))
        records = [record for batch in results for record in batch]
        budgets = [
            CostBudget(query.PROVIDER, s.id, s.budget, self.currency.get(s.id))
            for s in self.cfg.subscriptions
            if s.budget is not None
        ]
        return CostReport(records=records, budgets=budgets)

    async def _collect_one(self, sub: configuration.Subscription, now: datetime) -> list[CostRecord]:
        entry = self.health[sub.id]
        window = plan(now.date(), self.cfg.settle_days, self.closed.get(sub.id))
        found: list[CostRecord] = []
        try:
            async with asyncio.timeout(self.cfg.subscription_timeout):
                for first, last in spans(window.start, window.today):
                    definition = query.usage_definition(self.cfg, first, last)
                    table = await query.fetch_usage(self.client, sub, definition)
                    found.extend(
                        query.records(table, sub, self.cfg, kind="actual", estimated_from=window.open_from)
                    )
                if window.closed_through is not None:
                    self.pending[sub.id] = window.closed_through
                last = month_end(window.today)
                if self.cfg.forecast and window.today < last:
                    tomorrow = window.today + timedelta(days=1)
                    forecast = query.forecast_definition(self.cfg, tomorrow, last)
                    table = await query.fetch_forecast(self.client, sub, forecast)
                    found.extend(query.records(table, sub, self.cfg, kind="forecast"))
        except Exception as exc:  # one subscription's trouble is its own; the others still report
            error = describe_error(exc)
            entry.failed(error, self.clock())
            self.log.warning("subscription %s (%s): %s", sub.name, sub.id, error)
            return found  # actuals already read still count; their closed days only if marked above
        if found:
            self.currency[sub.id] = found[0].currency
        entry.succeeded(self.clock())
        return found

    async def costs_stored(self, ok: bool, error: str | None = None) -> None:
        if ok:
            self.closed.advance(self.pending)
            for sub_id, day in self.pending.items():
                self.health[sub_id].stored_through = self.closed.get(sub_id) or day
        else:
            self.log.warning("the core could not store the last report (%s): its days are asked again", error)
        self.pending = {}

    async def get_health(self) -> dict[str, Any]:
        base = await super().get_health()
        today = self.clock().date()
        return {
            **base,
            "credential": credentials.describe(self.cfg),
            "last_poll": self.last_poll.isoformat() if self.last_poll else None,
            "subscriptions": {sub_id: entry.to_dict(today) for sub_id, entry in self.health.items()},
        }
