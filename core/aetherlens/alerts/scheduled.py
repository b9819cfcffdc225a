"""Rules evaluated on the engine's schedule: no_data, energy, cost, budget, plugin_unhealthy, cloud_budget,
anomaly. Each kind is one function ``(pass, rule) -> [(state key, device id, Observation)]``; an empty
list means "no verdict now" (nothing known yet), which leaves the rule's state as it is.

Sources, all read through their owners' functions: ``metrics_latest`` (no data), the cost job's stored
energy slots (energy) and cost history (cost, device budgets), the cost summary with its projected
cycle total (site budgets), the supervisor's persisted plugin status (plugins table) and ``cloud_costs``.
"""

from __future__ import annotations

import calendar as cal
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from aetherlens.alerts import anomaly
from aetherlens.alerts.compare import compare
from aetherlens.alerts.machine import Observation
from aetherlens.alerts.sources import CostSource
from aetherlens.alerts.windows import Calendar, scale_to_end
from aetherlens.config import Settings
from aetherlens.db.queries import cloud_costs as cloud_rows
from aetherlens.db.queries import costs as cost_rows
from aetherlens.db.queries import metrics as metric_rows
from aetherlens.db.queries import plugins as plugin_rows
from aetherlens.db.queries.alerts import AlertRule

# Supervisor states that need attention (as /health counts them).
UNHEALTHY_STATES: Final = frozenset({"failed", "backoff", "refused", "crashed"})

type Verdicts = list[tuple[str, str | None, Observation]]


@dataclass
class Pass:
    """One evaluation pass: the time, a connection and what several rules share (read at most once)."""

    conn: asyncpg.Connection
    now: dt.datetime
    settings: Settings
    calendar: Calendar
    baselines: anomaly.BaselineCache
    costs: CostSource
    _latest: dict[str, list[metric_rows.CurrentValue]] | None = None
    _summary: dict[str, Any] | None = None

    async def latest(self) -> dict[str, list[metric_rows.CurrentValue]]:
        if self._latest is None:
            self._latest = await metric_rows.current_values(self.conn)
        return self._latest

    async def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = await self.costs.summary(self.conn, self.now)
        return self._summary


def _obs(p: Pass, op: str, value: float, limit: float, hysteresis: float | None, message: str) -> Observation:
    breached, clear = compare(op, value, limit, hysteresis)
    return Observation(p.now, breached, clear, value, message)


async def no_data(p: Pass, rule: AlertRule) -> Verdicts:
    silence = float(rule.condition["for_seconds"])
    latest = await p.latest()
    devices = [rule.device_id] if rule.device_id else sorted(latest)
    out: Verdicts = []
    for device in devices:
        times = [c.time for c in latest.get(device, []) if rule.metric_type in (None, c.metric_type)]
        last = max(times) if times else None
        since = last or rule.created_at  # a device that never reported is silent since the rule exists
        age = max(0.0, (p.now - since).total_seconds())
        what = f"{device} {rule.metric_type}" if rule.metric_type else device
        if age >= silence:
            seen = f"last reading {last.isoformat()}" if last else "no reading yet"
            message = f"{what} has sent no data for {age:.0f} s ({seen})"
        else:
            message = f"{what} reports again (last reading {age:.0f} s ago)"
        out.append((device, device, Observation(p.now, age >= silence, age < silence, age, message)))
    return out


async def energy(p: Pass, rule: AlertRule) -> Verdicts:
    cond = rule.condition
    start, _ = p.calendar.bounds(cond["window"], p.now)
    if rule.device_id is None:
        rows = await cost_rows.site_slots(p.conn, start, p.now)
    else:
        rows = [
            r for r in await cost_rows.device_slots(p.conn, start, p.now) if r["device_id"] == rule.device_id
        ]
    if not rows:
        return []
    kwh = float(sum(r["import_kwh"] for r in rows))
    who = rule.device_id or "the site"
    message = f"{who} used {kwh:.3f} kWh this {cond['window']} ({cond['op']} {float(cond['value']):g} kWh)"
    return [
        (
            rule.device_id or "",
            rule.device_id,
            _obs(p, cond["op"], kwh, cond["value"], cond.get("hysteresis"), message),
        )
    ]


async def _cost_between(p: Pass, device_id: str | None, start: dt.datetime) -> float | None:
    if p.now <= start:
        return 0.0
    points = await p.costs.history(p.conn, device_id, start, p.now)
    if not points:
        return None
    return float(sum(pt["cost"] for pt in points))


def _currency(p: Pass) -> str:
    return p.calendar.tariff.currency if p.calendar.tariff is not None else p.settings.site.currency


async def cost(p: Pass, rule: AlertRule) -> Verdicts:
    cond = rule.condition
    start, _ = p.calendar.bounds(cond["window"], p.now)
    value = await _cost_between(p, rule.device_id, start)
    if value is None:
        return []
    who = rule.device_id or "the site"
    cur = _currency(p)
    message = (
        f"{who} cost {value:.2f} {cur} this {cond['window']} ({cond['op']} {float(cond['value']):g} {cur})"
    )
    return [
        (
            rule.device_id or "",
            rule.device_id,
            _obs(p, cond["op"], value, cond["value"], cond.get("hysteresis"), message),
        )
    ]


async def budget(p: Pass, rule: AlertRule) -> Verdicts:
    cond = rule.condition
    period, projected = cond["period"], bool(cond.get("projected"))
    start, end = p.calendar.bounds(period, p.now)
    value: float | None
    if cond["scope"] == "site":
        summary = await p.summary()
        if period == "cycle":
            value = summary["projected_month"] if projected else summary["month_to_date"]
        else:
            value = summary["today"]
            if value is not None and projected:
                value = scale_to_end(value, start, end, p.now)
    else:
        value = await _cost_between(p, rule.device_id, start)
        if value is not None and projected:
            value = scale_to_end(value, start, end, p.now)
    if value is None:
        return []
    amount = float(cond["amount"])
    percent = cond.get("percent")
    limit = amount * float(percent) / 100 if percent is not None else amount
    who = rule.device_id or "the site"
    cur = _currency(p)
    what = "is projected to cost" if projected else "has cost"
    share = f"{percent:g} % of " if percent is not None else ""
    message = (
        f"{who} {what} {value:.2f} {cur} this {period}: {value / amount * 100:.0f} % of the budget "
        f"of {amount:g} {cur} (alert at {share}{amount:g} {cur})"
    )
    key = rule.device_id or ""
    return [(key, rule.device_id, _obs(p, ">=", value, limit, None, message))]


async def plugin_unhealthy(p: Pass, rule: AlertRule) -> Verdicts:
    plugin_id = str(rule.condition["plugin_id"])
    row = await plugin_rows.get_plugin(p.conn, plugin_id)
    status = row.status if row is not None and isinstance(row.status, dict) else None
    if status is None:
        return []
    state = str(status.get("state"))
    enabled = bool(status.get("enabled", row.enabled if row else True))
    bad = enabled and (state in UNHEALTHY_STATES or status.get("healthy") is False)
    error = str(status.get("last_error") or "")[:200]
    if bad:
        message = f"plugin {plugin_id} is {state}" + (f": {error}" if error else "")
    else:
        message = f"plugin {plugin_id} is {state} again"
    errors = status.get("consecutive_errors")
    value = float(errors) if isinstance(errors, int | float) else None
    return [("", None, Observation(p.now, bad, not bad, value, message))]


async def cloud_budget(p: Pass, rule: AlertRule) -> Verdicts:
    cond = rule.condition
    provider, account = str(cond["provider"]), cond.get("account")
    today = p.now.astimezone(dt.UTC).date()  # cloud providers bill calendar months of UTC days
    first = today.replace(day=1)
    days_in_month = cal.monthrange(today.year, today.month)[1]
    end = first + dt.timedelta(days=days_in_month)
    limit = cond.get("amount")
    if limit is None:
        budgets = await cloud_rows.list_budgets(
            p.conn, provider=provider, account=None if account is None else str(account)
        )
        if not budgets:
            return []  # no budget configured (yet): nothing to compare with
        limit = sum(b.amount for b in budgets)
    rows = await cloud_rows.list_cloud_costs(
        p.conn, provider=provider, account=None if account is None else str(account), start=first, end=end
    )
    actual = [r for r in rows if r.kind != "forecast"]
    if not actual:
        return []
    spent = sum(r.amount for r in actual)
    value = spent
    projected = bool(cond.get("projected"))
    if projected:
        last_day = max(r.day for r in actual)
        forecast = sum(r.amount for r in rows if r.kind == "forecast" and r.day > last_day)
        # Without forecast rows: the month so far at the same daily rate.
        value = spent + forecast if forecast else spent * days_in_month / ((last_day - first).days + 1)
    amount = float(limit)
    currency = actual[0].currency
    who = f"{provider}" + (f" account {account}" if account else "")
    what = "is projected to cost" if projected else "has cost"
    message = f"{who} {what} {value:.2f} {currency} this month (budget {amount:g} {currency})"
    return [("", None, _obs(p, ">=", value, amount, None, message))]


async def anomaly_rule(p: Pass, rule: AlertRule) -> Verdicts:
    cond = rule.condition
    if rule.device_id is None or rule.metric_type is None:
        return []
    base = await p.baselines.get(
        p.conn,
        rule.id,
        rule.device_id,
        rule.metric_type,
        p.now,
        p.calendar.zone,
        int(cond["min_history_days"]),
    )
    if base is None:
        return []
    value = await anomaly.current_mean(p.conn, rule.device_id, rule.metric_type, p.now)
    if value is None:
        return []
    limit = anomaly.limit_for(int(cond["sensitivity"]))
    s = anomaly.score(value, base)
    what = f"{rule.device_id} {rule.metric_type}"
    message = (
        f"{what} averages {value:g} this hour; usual for this hour of the week is {base.centre:g} "
        f"± {base.spread:g} ({s:.1f} spreads off, alert at {limit:g})"
    )
    obs = Observation(p.now, s >= limit, s < limit * anomaly.RESOLVE_FRACTION, value, message)
    return [(rule.device_id, rule.device_id, obs)]


EVALUATORS: Final[dict[str, Callable[[Pass, AlertRule], Awaitable[Verdicts]]]] = {
    "no_data": no_data,
    "energy": energy,
    "cost": cost,
    "budget": budget,
    "plugin_unhealthy": plugin_unhealthy,
    "cloud_budget": cloud_budget,
    "anomaly": anomaly_rule,
}
