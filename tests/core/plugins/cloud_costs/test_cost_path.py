"""The core side of cost plugins: runner schedule -> cost sink -> ``costs_stored`` -> health, through
the real supervisor and plugin process, into a real PostgreSQL (``CostWriter``) and the test kit's sink.

The test plugin (fixtures/coster) reports yesterday (amount growing every poll), today (estimated)
and tomorrow's forecast on every poll, and counts the ``costs_stored`` answers in its health."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from dbtest import set_connectable

from aetherlens.collect.cloud_costs import CostWriter, parse_report
from aetherlens.config import Settings
from aetherlens.db.pool import create_pool
from aetherlens.db.queries.cloud_costs import list_budgets, list_cloud_costs
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.plugins.testkit import MemorySink, run_plugin
from plugins.conftest import FAST, make_settings, wait_for

FIXTURES = Path(__file__).parent / "fixtures"
COSTER = FIXTURES / "coster"


def _settings(config: dict[str, object]) -> Settings:
    return make_settings(
        {"coster": {"config": config}}, directories=[str(FIXTURES)], allow_unsigned=["coster"]
    )


@pytest.fixture
async def pool(migrated_database: Callable[[], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool]:
    p: asyncpg.Pool = await create_pool(await migrated_database(), Settings(), min_size=1, max_size=2)
    try:
        yield p
    finally:
        await p.close()


async def test_testkit_runs_a_cost_plugin_and_keys_replace_their_amount() -> None:
    run = await run_plugin(COSTER, {"budget": 120}, collections=2, poll_interval=0.1)
    today = dt.datetime.now(dt.UTC).date()
    by_day = {(c["day"], c["kind"]): c for c in run.costs}
    assert len(run.costs) == 3  # the same three keys every poll: replaced, not added
    # Polled at least twice; the stored amount is the latest poll's (1.25 + polls).
    polls = run.status["health"]["polls"]
    assert polls >= 2
    yesterday = by_day[((today - dt.timedelta(days=1)).isoformat(), "actual")]
    assert Decimal(yesterday["amount"]) >= Decimal("3.25")
    assert by_day[(today.isoformat(), "actual")]["estimated"] is True
    assert by_day[((today + dt.timedelta(days=1)).isoformat(), "forecast")]["amount"] == "2.000001"
    assert run.budgets == [
        {"provider": "aws", "account": "111122223333", "amount": "120", "currency": None, "source": "coster"}
    ]
    health = run.status["health"]
    assert health["stored_ok"] >= 2 and health["stored_failed"] == 0
    assert run.status["cost_records"] >= 6 and run.status["cost_rejected"] == 0


async def test_a_failing_store_tells_the_plugin_ok_false_with_the_reason() -> None:
    sink = MemorySink()
    sink.fail_costs = "the database is unreachable"
    run = await run_plugin(COSTER, {}, collections=2, poll_interval=0.1, sink=sink)
    assert run.costs == [] and len(sink.cost_reports) >= 2
    health = run.status["health"]
    assert health["stored_ok"] == 0 and health["stored_failed"] >= 2
    assert "the database is unreachable" in health["last_store_error"]
    assert "storing costs failed" in run.status["last_error"]


async def test_malformed_records_are_refused_by_name_and_the_rest_is_stored() -> None:
    run = await run_plugin(COSTER, {"bad_record": True}, collections=1, poll_interval=0.1)
    assert len(run.costs) == 3
    assert run.status["cost_rejected"] >= 1
    assert "records[3]" in run.status["last_error"] and "'currency' 'dollars'" in run.status["last_error"]
    assert "records[3]" in run.status["health"]["last_store_error"]  # ok=True, with the refusals named


def test_parse_report_names_each_problem() -> None:
    parsed = parse_report(
        {
            "records": [
                {"day": "2026-02-30", "provider": "aws", "amount": "1", "currency": "USD"},
                {"day": "2026-02-01", "provider": "AWS", "amount": "1", "currency": "USD"},
                {"day": "2026-02-01", "provider": "aws", "amount": 1.5, "currency": "usd"},
                {"day": "2026-02-01", "provider": "aws", "amount": "1", "currency": "USD", "kind": "guess"},
                {"day": "2026-02-01", "provider": "aws", "amount": "Infinity", "currency": "USD"},
                {"day": "2026-02-01", "provider": "aws", "amount": "0.0000001", "currency": "EUR"},
            ],
            "budgets": [
                {"provider": "aws", "account": "1", "amount": "-5"},
                {"provider": "aws", "amount": "5"},
            ],
        }
    )
    assert [r.amount for r in parsed.records] == [Decimal("0.0000001")]
    assert parsed.rejected == [
        "records[0]: 'day' '2026-02-30' is not an ISO date (YYYY-MM-DD)",
        "records[1]: 'provider' 'AWS' must be lower-case letters, digits and '_' (e.g. aws, azure)",
        "records[2]: 'currency' 'usd' must be a three-letter ISO 4217 code such as USD",
        "records[3]: 'kind' 'guess' must be 'actual' or 'forecast'",
        "records[4]: 'amount' 'Infinity' is not a finite amount",
        "budgets[0]: 'amount' '-5' must be at least 0",
        "budgets[1]: 'account' is missing",
    ]
    with pytest.raises(ValueError, match="must be an object"):
        parse_report([])


async def test_reports_reach_cloud_costs_and_an_unreachable_database_means_ok_false(
    pool: asyncpg.Pool,
) -> None:
    settings = _settings({"budget": 50})
    supervisor = Supervisor(
        settings,
        MemorySink(),
        plugins=discover(settings, include_packages=False),
        options=FAST,
        cost_sink=CostWriter(pool, timeout=5),
    )
    await supervisor.start()
    runner = supervisor.runners["coster"]
    try:
        await wait_for(lambda: runner.health.get("stored_ok", 0) >= 2, what="two stored reports")
        rows = await list_cloud_costs(pool, provider="aws")
        assert len(rows) == 3  # upserted: three keys however many polls
        assert {r.kind for r in rows} == {"actual", "forecast"}
        assert [r.estimated for r in rows if r.day == dt.datetime.now(dt.UTC).date()] == [True]
        budgets = await list_budgets(pool, provider="aws")
        assert [(b.account, b.amount, b.currency, b.source) for b in budgets] == [
            ("111122223333", 50.0, None, "coster")
        ]

        name = await pool.fetchval("SELECT current_database()")
        await set_connectable(name, False)
        failed_before = runner.health.get("stored_failed", 0)
        await wait_for(lambda: runner.health.get("stored_failed", 0) > failed_before, what="ok=False")
        assert "storing costs failed" in (runner.last_error or "")
        assert runner.health["last_store_error"]

        failed_poll = runner.health["polls"]  # a poll whose report was refused
        await set_connectable(name, True)
        ok_before = runner.health["stored_ok"]
        await wait_for(lambda: runner.health["stored_ok"] > ok_before, what="stored again")
        assert runner.health["last_store_error"] is None
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        yesterday = (await list_cloud_costs(pool, start=day, end=day + dt.timedelta(days=1)))[0]
        assert yesterday.amount > 1.25 + failed_poll  # a later poll's report, stored after the outage
    finally:
        await supervisor.stop()
