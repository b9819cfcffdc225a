"""Scheduled rule kinds on crafted data in the real database: no data, energy and cost windows, budgets
(incl. the projected total), plugin health, cloud budgets; a bad rule does not stop the pass."""

from __future__ import annotations

import datetime as dt

from aetherlens.costs import service as cost_service
from aetherlens.costs.job import CostJob
from aetherlens.db.queries import alerts as q
from aetherlens.db.queries import plugins as plugin_rows

from .conftest import T0, Env

H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)


def counter(device: str, start: dt.datetime, rates: list[float], first: float = 0.0):  # type: ignore[no-untyped-def]
    """A cumulative kWh counter read every 15 minutes; ``rates``: kWh per hour, one per hour."""
    rows, total = [(start, device, "energy", first)], first
    for hour, rate in enumerate(rates):
        for quarter in range(1, 5):
            total += rate / 4
            rows.append((start + hour * H + quarter * 15 * MIN, device, "energy", total))
    return rows


async def at(env: Env, engine, now: dt.datetime, feed: list | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """Ingest the readings of ``feed`` up to ``now`` (as they would have arrived by then), run the cost
    job up to ``now`` (it stores the energy slots and cost rows the rules read), then one engine pass at
    ``now``; return every transition state published so far."""
    env.clock.now = now
    if feed:
        due = [r for r in feed if r[0] <= now]
        del feed[: len(due)]
        if due:
            await env.ingest(due)
    await CostJob().run_once(env.pool, now=now)
    await engine.evaluate_scheduled()
    return env.states()


async def test_no_data_fires_after_the_silence_and_resolves_when_data_returns(env: Env) -> None:
    await env.device("inverter")
    await env.rule(
        device_id="inverter", condition={"type": "no_data", "for_seconds": 900}, cooldown_seconds=0
    )
    engine = await env.engine()
    await env.ingest([(T0 + i * MIN, "inverter", "power", 3000.0) for i in range(11)])
    assert await at(env, engine, T0 + 20 * MIN) == []  # 10 minutes quiet
    assert await at(env, engine, T0 + 26 * MIN) == ["firing"]  # 16 minutes quiet
    assert await at(env, engine, T0 + 28 * MIN) == ["firing"]
    await env.ingest([(T0 + 29 * MIN, "inverter", "power", 2900.0)])
    assert await at(env, engine, T0 + 30 * MIN) == ["firing", "resolved"]
    assert env.published[0]["device_id"] == "inverter" and "no data for 960 s" in env.published[0]["message"]


async def test_energy_over_the_hour_fires_and_resolves_with_the_next_hour(env: Env) -> None:
    await env.device("oven")
    await env.rule(
        device_id="oven",
        condition={"type": "energy", "window": "hour", "op": ">", "value": 2},
        cooldown_seconds=0,
    )
    await env.rule(name="site", condition={"type": "energy", "window": "day", "op": ">", "value": 8.5})
    engine = await env.engine()
    feed = counter("oven", T0, [1, 1, 1, 1, 4, 1])
    assert await at(env, engine, T0 + 3 * H + 50 * MIN, feed) == []
    assert await at(env, engine, T0 + 4 * H + 50 * MIN, feed) == ["firing"]  # 3 kWh in hour 4 so far
    fired = env.published[0]
    assert fired["value"] == 3.0 and "oven used 3.000 kWh this hour" in fired["message"]
    # Hour 5 (1 kWh/h, 0.75 so far): resolved; the site's day total passes 8.5 kWh (8.75).
    assert await at(env, engine, T0 + 5 * H + 50 * MIN, feed) == ["firing", "resolved", "firing"]
    assert (env.published[2]["device_id"], env.published[2]["value"]) == (None, 8.75)


async def test_cost_window_and_budgets_incl_the_projected_total(env: Env) -> None:
    await cost_service.create_tariff(
        env.pool, {"name": "flat", "timezone": "UTC", "periods": {"f": {"price": "0.50"}}}
    )
    await env.device("oven")
    day_cost = await env.rule(
        name="oven cost today",
        device_id="oven",
        condition={"type": "cost", "window": "day", "op": ">", "value": 8},
        cooldown_seconds=0,
    )
    projected = await env.rule(
        name="site projected",
        condition={"type": "budget", "scope": "site", "period": "day", "amount": 20, "projected": True},
        cooldown_seconds=0,
    )
    spent = await env.rule(
        name="site spent", condition={"type": "budget", "scope": "site", "period": "day", "amount": 20}
    )
    share = await env.rule(
        name="oven 5% of cycle",
        device_id="oven",
        condition={"type": "budget", "scope": "device", "period": "cycle", "amount": 100, "percent": 5},
    )
    engine = await env.engine()
    # 2 kWh/h (1 USD/h) for 10 hours of day one, then 0.1 kWh/h on day two.
    feed = counter("oven", T0, [2.0] * 10 + [0.1] * 16)

    def fired(rule: q.AlertRule) -> list[str]:
        return [d["state"] for d in env.published if d["alert_id"] == rule.id]

    await at(env, engine, T0 + 2 * H, feed)
    # 2 USD so far: at this pace the day costs 24 USD, over the budget of 20 long before it is spent.
    assert fired(projected) == ["firing"] and fired(spent) == [] and fired(share) == []
    assert "projected to cost 24.00 USD this day" in env.published[0]["message"]
    await at(env, engine, T0 + 6 * H, feed)
    assert fired(share) == ["firing"] and fired(day_cost) == []  # 6 USD: 6 % of the cycle's 100
    await at(env, engine, T0 + 9 * H, feed)
    assert fired(day_cost) == ["firing"]  # 9 USD > 8
    # The next day starts almost idle: the day rules resolve; the cycle share stays.
    await at(env, engine, T0 + 25 * H, feed)
    assert fired(day_cost) == ["firing", "resolved"]
    assert fired(projected) == ["firing", "resolved"]
    assert fired(share) == ["firing"] and fired(spent) == []


async def test_plugin_unhealthy_follows_the_supervisors_reports(env: Env) -> None:
    await env.rule(condition={"type": "plugin_unhealthy", "plugin_id": "shelly"}, cooldown_seconds=0)
    engine = await env.engine()

    async def report(state: str, error: str | None = None) -> list[str]:
        await plugin_rows.upsert_status(
            env.pool, [{"id": "shelly", "enabled": True, "state": state, "last_error": error}]
        )
        env.clock.advance(minutes=1)
        await engine.evaluate_scheduled()
        return env.states()

    assert await report("running") == []
    assert await report("backoff", "connection refused") == ["firing"]
    assert env.published[0]["message"] == "plugin shelly is backoff: connection refused"
    assert await report("crashed") == ["firing"]
    assert await report("running") == ["firing", "resolved"]


async def test_cloud_budget_reads_cloud_costs_actual_and_forecast(env: Env) -> None:
    await env.rule(
        condition={
            "type": "cloud_budget",
            "provider": "aws",
            "account": "123",
            "amount": 200,
            "projected": True,
        },
        cooldown_seconds=0,
    )
    await env.rule(name="spent", condition={"type": "cloud_budget", "provider": "aws", "amount": 200})
    engine = await env.engine()
    month = dt.date(2026, 6, 1)

    async def cost(day: int, amount: float, kind: str = "actual", account: str = "123") -> None:
        await env.pool.execute(
            "INSERT INTO cloud_costs (day, provider, account, service, amount, currency, kind)"
            " VALUES ($1, 'aws', $2, 'EC2', $3, 'USD', $4)",
            month.replace(day=day),
            account,
            amount,
            kind,
        )

    for day in range(1, 10):  # 10 USD a day for 9 days, and another account's spend
        await cost(day, 10.0)
        await cost(day, 1.0, account="999")
    env.clock.now = dt.datetime(2026, 6, 10, 12, tzinfo=dt.UTC)
    await engine.evaluate_scheduled()
    # 90 so far at the same rate: 300 for June >= 200 (the other account does not count).
    assert env.states() == ["firing"]
    assert (
        env.published[0]["value"] == 300.0
        and "aws account 123 is projected to cost 300.00 USD" in (env.published[0]["message"])
    )
    # The provider's forecast for the rest of the month replaces the extrapolation: 90 + 50 < 200.
    for day in range(10, 31):
        await cost(day, 50 / 21, kind="forecast")
    env.clock.advance(hours=1)
    await engine.evaluate_scheduled()
    assert env.states() == ["firing", "resolved"]
    for day in range(10, 13):  # actual spend catches up: 90 + 3 x 40 + 99 (all accounts) >= 200
        await cost(day, 40.0)
    env.clock.advance(hours=1)
    await engine.evaluate_scheduled()
    assert [(d["name"], d["state"]) for d in env.published][-1] == ("spent", "firing")


async def test_a_failing_rule_is_reported_and_the_pass_goes_on(env: Env) -> None:
    await env.device("inverter")
    bad = await env.pool.fetchval(
        """INSERT INTO alerts (name, condition)
           VALUES ('bad', '{"type": "energy", "window": "fortnight", "op": ">", "value": 1}') RETURNING id"""
    )
    await env.rule(device_id="inverter", condition={"type": "no_data", "for_seconds": 60})
    engine = await env.engine()
    await env.ingest(counter("inverter", T0, [1.0]))
    env.clock.now = T0 + 2 * H
    await engine.evaluate_scheduled()
    assert env.states() == ["firing"]
    assert "fortnight" in engine.status()["failing_rules"][str(bad)]
    await env.pool.execute("DELETE FROM alerts WHERE id = $1", bad)
    env.clock.advance(minutes=1)
    await engine.evaluate_scheduled()
    assert engine.status()["failing_rules"] == {}


async def test_cloud_budget_without_amount_takes_the_configured_budget(env: Env) -> None:
    await env.rule(
        condition={"type": "cloud_budget", "provider": "aws", "account": "123"}, cooldown_seconds=0
    )
    engine = await env.engine()
    for day in range(1, 4):
        await env.pool.execute(
            "INSERT INTO cloud_costs (day, provider, account, service, amount, currency, kind)"
            " VALUES ($1, 'aws', '123', 'EC2', 30, 'USD', 'actual')",
            dt.date(2026, 6, day),
        )
    env.clock.now = dt.datetime(2026, 6, 3, 12, tzinfo=dt.UTC)
    await engine.evaluate_scheduled()
    assert env.states() == []  # no budget configured for the account: no verdict
    await env.pool.execute(
        "INSERT INTO cloud_budgets (provider, account, amount, source) VALUES ('aws', '123', 100, 'aws_cost')"
    )
    env.clock.advance(hours=1)
    await engine.evaluate_scheduled()
    assert env.states() == []  # 90 < 100
    await env.pool.execute("UPDATE cloud_budgets SET amount = 80")  # the user lowered it in the plugin
    env.clock.advance(hours=1)
    await engine.evaluate_scheduled()
    assert env.states() == ["firing"]
    assert "has cost 90.00 USD this month (budget 80 USD)" in env.published[0]["message"]
