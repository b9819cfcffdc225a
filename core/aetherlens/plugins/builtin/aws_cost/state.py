"""What the aws_cost plugin keeps in its ``state_dir``: the closed days already stored, and the Cost
Explorer requests spent per UTC day.

Cost Explorer charges for every request (each page of a paginated answer too), so both survive
restarts: a closed day stored once is never bought again, and a restart does not hand out a fresh
request budget. The file is replaced atomically (write, fsync, rename, fsync the folder); a request is
counted *before* it is sent, so a crash can only over-count, never spend past the budget.

The closed days belong to one query shape (metric, grouping, credentials' target): when that
fingerprint changes the days are fetched again in the new shape.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from aetherlens.plugins.sdk import write_state_file

log = logging.getLogger(__name__)

FILE: Final = "aws_cost.json"
VERSION: Final = 1
KEEP_DAYS: Final = 120  # closed days older than this are outside any window the plugin fetches


class BudgetExhausted(Exception):
    """The day's Cost Explorer request budget is used up (nothing was sent)."""


class CostState:
    def __init__(self, state_dir: Path, fingerprint: str, budget: int) -> None:
        self.path = state_dir / FILE
        self.fingerprint = fingerprint
        self.budget = budget
        self.closed: set[dt.date] = set()
        self.requests_day: dt.date | None = None
        self.requests_used = 0
        self.account: str | None = None  # the caller's account id (STS), once known
        self.forecast_at: float | None = None  # epoch seconds of the last forecast the core stored

    # -- persistence -----------------------------------------------------------------------------------
    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            if data.get("fingerprint") == self.fingerprint:
                self.closed = {dt.date.fromisoformat(d) for d in data.get("closed", [])}
                self.account = data.get("account")
                self.forecast_at = data.get("forecast_at")
            else:
                log.info("query settings changed: closed days will be fetched again in the new shape")
            requests = data.get("requests") or {}
            if requests.get("day"):
                self.requests_day = dt.date.fromisoformat(requests["day"])
                self.requests_used = int(requests.get("used", 0))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # Unreadable: closed days are fetched again once; the request count cannot be trusted, so
            # the day counts as spent up to the budget (a corrupt file must not buy extra requests).
            log.warning("ignoring unreadable %s (%s)", self.path, exc)
            self.closed = set()
            self.requests_day = _today()
            self.requests_used = self.budget

    def save(self) -> None:
        body: dict[str, Any] = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "account": self.account,
            "forecast_at": self.forecast_at,
            "closed": sorted(d.isoformat() for d in self.closed),
            "requests": {
                "day": self.requests_day.isoformat() if self.requests_day else None,
                "used": self.requests_used,
            },
        }
        write_state_file(self.path, body)

    # -- closed days -----------------------------------------------------------------------------------
    def stored(self, closed_days: Iterable[dt.date], today: dt.date, forecast_at: float | None) -> None:
        """The core stored a report: its closed days are never fetched again, its forecast is current."""
        horizon = today - dt.timedelta(days=KEEP_DAYS)
        self.closed = {d for d in self.closed | set(closed_days) if d >= horizon}
        if forecast_at is not None:
            self.forecast_at = forecast_at
        self.save()

    # -- the request budget ----------------------------------------------------------------------------
    def _roll(self) -> None:
        today = _today()
        if self.requests_day != today:
            self.requests_day = today
            self.requests_used = 0

    @property
    def used_today(self) -> int:
        self._roll()
        return self.requests_used

    @property
    def left_today(self) -> int:
        return max(0, self.budget - self.used_today)

    def spend(self) -> None:
        """Count one request about to be sent; raises ``BudgetExhausted`` (and counts nothing) when none
        is left today."""
        self._roll()
        if self.requests_used >= self.budget:
            raise BudgetExhausted(
                f"the daily request budget of {self.budget} Cost Explorer requests for "
                f"{self.requests_day} (UTC) is used up; polls resume after 00:00 UTC"
            )
        self.requests_used += 1
        self.save()


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
