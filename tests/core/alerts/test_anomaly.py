"""Anomaly rules on a learned weekly pattern (real readings, real rollups): quiet on four weeks of a
normal pattern and the week after, firing within an hour of a shift, nothing before the minimum history."""

from __future__ import annotations

import datetime as dt
import random

from dbtest import PLAIN

from aetherlens.alerts import anomaly
from aetherlens.db.rollups import RollupJob

from .conftest import T0, Env

STEP = dt.timedelta(minutes=5)


def usual(t: dt.datetime) -> float:
    """A household's weekly shape: a night floor, morning and evening peaks, busier weekends."""
    hour, weekend = t.hour, t.weekday() >= 5
    watts = 150.0
    if 6 <= hour < 9:
        watts += 900
    if 17 <= hour < 22:
        watts += 1400
    if weekend and 10 <= hour < 17:
        watts += 600
    return watts


def pattern(start: dt.datetime, end: dt.datetime, seed: int, shift_from: dt.datetime | None = None):  # type: ignore[no-untyped-def]
    """Every 5 minutes: the usual shape x a factor per day (0.9..1.1) x noise (+-5 %), and x 1.6 after
    ``shift_from`` (the injected change)."""
    rng = random.Random(seed)
    days: dict[dt.date, float] = {}
    rows, t = [], start
    while t < end:
        day = days.setdefault(t.date(), rng.uniform(0.9, 1.1))
        value = usual(t) * day * rng.uniform(0.95, 1.05)
        if shift_from is not None and t >= shift_from:
            value *= 1.6
        rows.append((t, "rack", "power", value))
        t += STEP
    return rows


async def test_quiet_on_a_normal_weekly_pattern_and_fires_within_an_hour_of_a_shift(env: Env) -> None:
    await env.device("rack")
    history_start = T0 - dt.timedelta(weeks=4)
    normal_week_end = T0 + dt.timedelta(weeks=1)
    shift = normal_week_end + dt.timedelta(hours=10, minutes=20)  # Monday 10:20
    await env.ingest(pattern(history_start, shift + dt.timedelta(hours=2), seed=7, shift_from=shift))
    async with env.pool.acquire() as conn:
        await RollupJob(PLAIN, raw_retention_days=90).run_until_idle(conn)
    await env.rule(
        device_id="rack",
        metric_type="power",
        condition={"type": "anomaly", "sensitivity": 5, "min_history_days": 21},
        cooldown_seconds=0,
    )
    engine = await env.engine()

    # The fifth week is as usual: evaluated every 20 minutes (504 passes), it never fires.
    now = T0
    while now < normal_week_end:
        await engine.evaluate_scheduled(now)
        now += dt.timedelta(minutes=20)
    assert env.published == [], env.published
    assert engine.status()["failing_rules"] == {}

    # From the shift on, every 5 minutes: it fires within the hour.
    now = shift
    while not env.published and now <= shift + dt.timedelta(hours=1):
        now += STEP
        await engine.evaluate_scheduled(now)
    assert env.states() == ["firing"], f"no firing within an hour of the shift (last pass {now})"
    fired = env.published[0]
    assert "usual for this hour of the week" in fired["message"]
    assert fired["value"] > usual(shift) * 1.3


async def test_no_verdict_before_the_minimum_history(env: Env) -> None:
    await env.device("rack")
    start = T0
    jump = T0 + dt.timedelta(days=8, hours=12)
    await env.ingest(pattern(start, jump + dt.timedelta(hours=1), seed=3, shift_from=jump))
    async with env.pool.acquire() as conn:
        await RollupJob(PLAIN, raw_retention_days=90).run_until_idle(conn)
    await env.rule(
        device_id="rack",
        metric_type="power",
        condition={"type": "anomaly", "sensitivity": 10, "min_history_days": 14},
    )
    engine = await env.engine()
    for minutes in range(5, 60, 5):
        await engine.evaluate_scheduled(jump + dt.timedelta(minutes=minutes))
    assert env.published == []  # 8.5 days of history < 14: no verdict, however large the jump


def test_baseline_is_robust_to_one_odd_week() -> None:
    normal = anomaly.baseline([1000, 1010, 990, 1005], typical=500)
    odd = anomaly.baseline([1000, 1010, 990, 1005, 9000], typical=500)
    assert normal is not None and odd is not None
    assert abs(odd.centre - normal.centre) <= 10  # a mean would move by ~1600
    assert anomaly.score(1600, odd) > anomaly.limit_for(5)
    assert anomaly.score(1030, odd) < anomaly.limit_for(5) * anomaly.RESOLVE_FRACTION
    hours = anomaly.same_hour_of_week(dt.datetime(2026, 3, 30, 10, 30, tzinfo=dt.UTC), dt.UTC, 2)
    assert hours == [dt.datetime(2026, 3, 23, 10, tzinfo=dt.UTC), dt.datetime(2026, 3, 16, 10, tzinfo=dt.UTC)]
