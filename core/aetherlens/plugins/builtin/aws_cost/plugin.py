"""The ``aws_cost`` plugin: daily AWS costs (Cost Explorer) as cloud cost records, with the forecast to
month end and the configured monthly budget.

Each poll asks ``GetCostAndUsage`` (DAILY, grouped by up to two of SERVICE / LINKED_ACCOUNT / REGION) for
the open days only: from the oldest day of the window (this month, and the last ``closed_after_days``
days) that is not closed-and-stored yet, to today. A day is *closed* when it is at least
``closed_after_days`` (default 2) UTC days old — AWS updates billing data up to three times a day and
services deliver usage late, so yesterday is still filling while the day before has had a full day of
refreshes; once the core confirmed a closed day stored (``costs_stored(ok=True)``) it is never bought
again. ``GetCostForecast`` from tomorrow to month end follows every ``forecast_interval``. Every Cost
Explorer request (pages, retries, forecasts) is charged by AWS, so each is counted against
``daily_request_budget`` per UTC day before it is sent; an exhausted budget skips the poll and says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aetherlens.plugins.builtin.aws_cost.client import (
    AwsError,
    AwsSettings,
    CostExplorer,
    DataUnavailable,
    quiet_boto_logs,
)
from aetherlens.plugins.builtin.aws_cost.records import AnswerError, forecast_records, usage_records
from aetherlens.plugins.builtin.aws_cost.state import BudgetExhausted, CostState
from aetherlens.plugins.sdk import BasePlugin, CostBudget, CostRecord, CostReport

log = logging.getLogger(__name__)

PROVIDER: Final = "aws"
PACE_BURST: Final = 2  # requests a poll may use ahead of the day's even share (usage + forecast)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


class AwsCostPlugin(BasePlugin):
    capabilities = ("costs.collect",)

    # -- configuration ---------------------------------------------------------------------------------
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        prefix = f"plugins.{self.plugin_id}.config"
        problems = []
        if bool(config.get("access_key_id")) != bool(config.get("secret_access_key")):
            problems.append(f"config keys '{prefix}.access_key_id' and '.secret_access_key' go together")
        if config.get("session_token") and not config.get("access_key_id"):
            problems.append(f"config key '{prefix}.session_token' needs access_key_id and secret_access_key")
        if config.get("profile") and config.get("access_key_id"):
            problems.append(
                f"config keys '{prefix}.profile' and '.access_key_id' exclude each other: pick one"
            )
        if config.get("external_id") and not config.get("role_arn"):
            problems.append(f"config key '{prefix}.external_id' is only used with role_arn")
        return problems

    async def setup(self) -> None:
        quiet_boto_logs()
        c = self.config
        self.cost_metric: str = c.get("metric", "UnblendedCost")
        self.group_by: list[str] = list(c.get("group_by", ["SERVICE"]))
        self.budget: float | None = c.get("budget")
        self.forecast_enabled: bool = bool(c.get("forecast", True))
        self.forecast_granularity: str = c.get("forecast_granularity", "DAILY")
        self.forecast_interval: float = float(c.get("forecast_interval", 21600))
        self.closed_after = int(c.get("closed_after_days", 2))
        self.settings = AwsSettings.from_config(c, self.plugin_id)
        # The closed days belong to this query shape: another metric, grouping or target re-fetches them.
        shape = {
            "metric": self.cost_metric,
            "group_by": self.group_by,
            "role_arn": self.settings.role_arn,
            "profile": self.settings.profile,
            "endpoint_url": self.settings.endpoint_url,
        }
        fingerprint = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
        self.state = CostState(self.state_dir, fingerprint, int(c.get("daily_request_budget", 20)))
        self.state.load()
        self.explorer = CostExplorer(self.settings, self.state)
        self.pending_closed: set[dt.date] = set()
        self.pending_forecast: float | None = None
        self.polls = 0
        self.skipped = 0
        self.records_last = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_store_error: str | None = None
        self.note: str | None = None  # why the last poll did less than usual (skipped, no forecast)
        self.pace: bool = bool(c.get("pace", True))
        self.paced = 0
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    # -- one poll --------------------------------------------------------------------------------------
    async def collect_costs(self) -> CostReport:
        self.polls += 1
        self.note = None
        self.pending_closed, self.pending_forecast = set(), None
        today = dt.datetime.now(dt.UTC).date()
        try:
            account = await self._account()
        except AwsError as exc:
            self.last_error = str(exc)
            raise
        budgets = [CostBudget(PROVIDER, account, self.budget)] if self.budget is not None else []
        if self._ahead_of_pace():
            self.paced += 1
            self.note = (
                f"poll deferred: {self.state.used_today} of {self.state.budget} requests used today, ahead "
                "of an even spread over the UTC day (pace: false polls until the budget is used up)"
            )
            return CostReport(budgets=budgets)
        if self.state.left_today <= 0:
            self.skipped += 1
            self.note = (
                f"poll skipped: the daily request budget of {self.state.budget} Cost Explorer requests "
                f"for {today} (UTC) is used up; polls resume after 00:00 UTC"
            )
            log.warning("%s", self.note)
            return CostReport(budgets=budgets)

        records: list[CostRecord] = []
        start = self._first_open_day(today)
        end = today + dt.timedelta(days=1)
        try:
            pages, complete = await asyncio.to_thread(
                self.explorer.cost_and_usage, start, end, self.cost_metric, self.group_by
            )
            usage, days = usage_records(pages, self.cost_metric, self.group_by, account)
        except BudgetExhausted as exc:
            self.skipped += 1
            self.note = f"poll skipped: {exc}"
            return CostReport(budgets=budgets)
        except (AwsError, AnswerError) as exc:
            self.last_error = str(exc)
            raise
        records += usage
        if complete:
            cutoff = today - dt.timedelta(days=self.closed_after)
            self.pending_closed = {d for d in days if d <= cutoff}
        else:
            self.note = "the request budget ran out between pages: these days are fetched again later"
        records += await self._forecast(today, account)
        self.records_last = len(records)
        self.last_success = time.time()
        self.last_error = None
        return CostReport(records=records, budgets=budgets)

    async def costs_stored(self, ok: bool, error: str | None = None) -> None:
        if ok:
            today = dt.datetime.now(dt.UTC).date()
            self.state.stored(self.pending_closed, today, self.pending_forecast)
            self.last_store_error = error  # refusals of single records, if any
        else:
            # Nothing was stored: keep the days open (and the forecast due), so the next poll fetches them.
            self.last_store_error = error or "the core could not store the report"
        self.pending_closed, self.pending_forecast = set(), None

    async def get_health(self) -> dict[str, Any]:
        return {
            "credentials": self.settings.credential_source,
            "account": self.state.account,
            "metric": self.cost_metric,
            "group_by": self.group_by,
            "request_budget": self.state.budget,
            "requests_used_today": self.state.used_today,
            "requests_left_today": self.state.left_today,
            "polls": self.polls,
            "polls_skipped": self.skipped,
            "polls_deferred": self.paced,
            "records_last_poll": self.records_last,
            "closed_days": len(self.state.closed),
            "last_success": _iso(self.last_success),
            "last_forecast": _iso(self.state.forecast_at),
            "last_error": self.last_error,
            "last_store_error": self.last_store_error,
            "note": self.note,
            "throttled": self.explorer.throttled,
            "last_throttled": _iso(self.explorer.last_throttled),
            "role_expires": _iso(self.explorer.role_expires),
        }

    # -- parts -----------------------------------------------------------------------------------------
    def _ahead_of_pace(self) -> bool:
        """True when one more request now would run ahead of the day's budget spread evenly over the
        UTC day (plus a burst of PACE_BURST for a poll's usage pages and forecast). Hourly polls against
        the default budget of 20 then skip about one poll in four, all day, instead of all polls after
        the afternoon."""
        if not self.pace:
            return False
        now = self.clock()
        elapsed = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
        share = self.state.budget * elapsed / 86400
        return self.state.used_today + 1 > share + PACE_BURST

    async def _account(self) -> str:
        if self.state.account is None:
            self.state.account = await asyncio.to_thread(self.explorer.caller_account)
            self.state.save()
        return self.state.account

    def _first_open_day(self, today: dt.date) -> dt.date:
        """The oldest day of the window (this month and the days not closed yet) still to fetch."""
        first = min(today.replace(day=1), today - dt.timedelta(days=self.closed_after))
        day = first
        while day < today and day in self.state.closed:
            day += dt.timedelta(days=1)
        return day

    async def _forecast(self, today: dt.date, account: str) -> list[CostRecord]:
        tomorrow = today + dt.timedelta(days=1)
        month_end = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        if not self.forecast_enabled or tomorrow >= month_end:
            return []  # the month's last day: nothing left to forecast
        last = self.state.forecast_at
        if last is not None:
            same_day = dt.datetime.fromtimestamp(last, dt.UTC).date() == today
            if same_day and time.time() - last < self.forecast_interval:
                return []
        try:
            answer = await asyncio.to_thread(
                self.explorer.forecast, tomorrow, month_end, self.cost_metric, self.forecast_granularity
            )
            records = forecast_records(answer, account, tomorrow, month_end)
        except BudgetExhausted as exc:
            self.note = f"no forecast this time: {exc}"
            return []
        except DataUnavailable as exc:
            self.note = f"no forecast: {exc}"
            self.pending_forecast = time.time()  # asking again soon would only pay for the same answer
            return []
        except (AwsError, AnswerError) as exc:
            # The actuals are in hand: report them; the forecast is due again next poll (an AccessDenied
            # here is a missing ce:GetCostForecast permission, which the message names).
            self.note = f"no forecast this time: {exc}"
            return []
        self.pending_forecast = time.time()
        return records
