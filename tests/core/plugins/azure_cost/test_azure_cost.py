"""The azure_cost plugin class against the loopback Entra ID + Cost Management server (real SDK)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest

from aetherlens.plugins.builtin.azure_cost import config as configuration
from aetherlens.plugins.builtin.azure_cost.plugin import plan, spans
from aetherlens.plugins.builtin.azure_cost.throttle import requested_wait

from .azure_server import AppServiceIdentity, AzureServer, Throttle
from .conftest import NOW, SECRET, SUB_A, SUB_B, UNKNOWN, MakePlugin

MARCH = dt.date(2026, 3, 1)


def day(n: int) -> dt.date:
    return MARCH.replace(day=n)


async def test_month_to_date_grouped_with_estimates_forecast_and_budgets(
    make_plugin: MakePlugin, azure: AzureServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = await make_plugin()
    report = await plugin.collect_costs()

    # What was asked: the month so far, daily, grouped, through a token from the loopback authority.
    queries = [s for s in azure.seen if s.kind == "query"]
    assert sorted(s.subscription for s in queries) == sorted([SUB_A, SUB_B])
    body = queries[0].body
    assert body["type"] == "ActualCost" and body["timeframe"] == "Custom"
    assert body["timePeriod"] == {"from": "2026-03-01T00:00:00Z", "to": "2026-03-15T23:59:59Z"}
    assert body["dataset"]["granularity"] == "Daily"
    assert body["dataset"]["aggregation"] == {"totalCost": {"name": "Cost", "function": "Sum"}}
    assert [g["name"] for g in body["dataset"]["grouping"]] == ["ResourceGroup", "ServiceName"]
    assert all(s.authorization == "Bearer " + json.loads(
        (Path(__file__).parent / "fixtures" / "token_success.json").read_text())["access_token"]
        for s in azure.seen)  # fmt: skip
    assert azure.token_requests[0]["grant_type"] == "client_credentials"
    assert azure.unexpected == []

    actual = [r for r in report.records if r.kind == "actual"]
    a = [r for r in actual if r.account == SUB_A]
    assert {r.day for r in a} == {day(n) for n in range(1, 16)}
    # The example's two spellings of one resource group are one group: 218.68795741935486 + 0.009865...
    merged = [r for r in a if r.day == day(3) and r.resource_group == "ict_stratandplan_goldsprova_prod"]
    assert [(r.service, r.amount) for r in merged] == [
        ("Virtual Machines", Decimal("218.68795741935486") + Decimal("0.009865586851323632"))
    ]
    assert {(r.service, r.resource_group) for r in a if r.day == day(3)} == {
        ("Storage", "screensharingtest-peer"),
        ("Storage", "ssbciotelement01"),
        ("Virtual Machines", "ict_stratandplan_goldsprova_prod"),
    }
    # Today and the settle window (3 days) are estimates; older days are final.
    assert {r.day for r in a if r.estimated} == {day(12), day(13), day(14), day(15)}
    # Currency as each subscription reported it.
    assert {r.currency for r in a} == {"USD"}
    assert {r.currency for r in actual if r.account == SUB_B} == {"EUR"}

    forecast = [r for r in report.records if r.kind == "forecast" and r.account == SUB_A]
    assert [r.day for r in forecast] == [day(n) for n in range(16, 32)]
    assert forecast[0].amount == Decimal("2.10333307059661") and not forecast[0].estimated
    assert forecast[0].service is None and forecast[0].resource_group is None
    fbody = next(s.body for s in azure.seen if s.kind == "forecast")
    assert fbody["timePeriod"] == {"from": "2026-03-16T00:00:00Z", "to": "2026-03-31T23:59:59Z"}
    assert fbody["includeActualCost"] is False

    assert {(b.account, b.amount, b.currency) for b in report.budgets} == {
        (SUB_A, Decimal("50"), "USD"),  # its own budget
        (SUB_B, Decimal("200"), "EUR"),  # the plugin-wide one
    }
    wire = report.to_wire()
    assert wire["records"][0]["provider"] == "azure" and isinstance(wire["records"][0]["amount"], str)

    health = await plugin.get_health()
    lab = health["subscriptions"][SUB_A]
    assert lab["name"] == "lab" and lab["last_error"] is None
    assert lab["last_success"] == NOW.isoformat() and lab["requests_today"] == 2
    assert health["credential"] == "service_principal"
    assert SECRET not in json.dumps(health)
    assert SECRET not in caplog.text


async def test_next_link_pages_are_followed(make_plugin: MakePlugin, azure: AzureServer) -> None:
    azure.page_size = 5
    plugin = await make_plugin(subscriptions=[{"id": SUB_A}])
    report = await plugin.collect_costs()
    pages = [s for s in azure.seen if s.kind == "query"]
    # 15 days x 4 rows, 5 a page: 12 pages, each later one sent with the previous page's skiptoken.
    assert len(pages) == 12
    assert "$skiptoken" not in pages[0].params and all("$skiptoken" in p.params for p in pages[1:])
    assert all(p.body == pages[0].body for p in pages)
    actual = [r for r in report.records if r.kind == "actual"]
    assert len(actual) == 15 * 3 and {r.day for r in actual} == {day(n) for n in range(1, 16)}
    assert len([s for s in azure.seen if s.kind == "forecast"]) == 4  # 16 days, 5 a page
    assert [r.day for r in report.records if r.kind == "forecast"] == [day(n) for n in range(16, 32)]
    assert (await plugin.get_health())["subscriptions"][SUB_A]["requests_today"] == 16


async def test_429_waits_for_cost_management_retry_after(make_plugin: MakePlugin, azure: AzureServer) -> None:
    # Only Cost Management's own header (no Retry-After): azure-core alone would not retry this POST.
    azure.throttles.append(Throttle({"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "1"}))
    plugin = await make_plugin(subscriptions=[{"id": SUB_A}])
    report = await plugin.collect_costs()
    first, retry = [s for s in azure.seen if s.kind == "query"]
    assert azure.throttled[0].sent_at is not None
    assert retry.at - azure.throttled[0].sent_at >= 1.0  # measured at the server
    assert retry.body == first.body
    assert any(r.kind == "actual" for r in report.records)
    sub = (await plugin.get_health())["subscriptions"][SUB_A]
    assert sub["last_error"] is None and sub["requests_today"] == 3


async def test_429_longer_than_max_retry_wait_is_reported_not_slept(
    make_plugin: MakePlugin, azure: AzureServer
) -> None:
    azure.throttles.append(
        Throttle({"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "3600", "Retry-After": "1"})
    )
    plugin = await make_plugin(max_retry_wait=30)
    report = await plugin.collect_costs()
    health = (await plugin.get_health())["subscriptions"]
    throttled = [sub for sub, h in health.items() if h["last_error"]]
    assert len(throttled) == 1 and "throttled" in health[throttled[0]]["last_error"]
    assert "Azure asked to wait 3600 s" in health[throttled[0]]["last_error"]
    assert len(azure.throttled) == 1  # not retried: the next poll tries again
    # The other subscription was not held up: its costs are in the report.
    other = SUB_B if throttled[0] == SUB_A else SUB_A
    assert {r.account for r in report.records} == {other}


async def test_expired_client_secret_is_a_clear_health_error(
    make_plugin: MakePlugin, azure: AzureServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    azure.token_mode = "expired"
    plugin = await make_plugin()
    report = await plugin.collect_costs()
    assert report.records == [] and azure.seen == []  # no Cost Management request without a token
    health = await plugin.get_health()
    for sub in (SUB_A, SUB_B):
        error = health["subscriptions"][sub]["last_error"]
        assert error.startswith("authentication failed") and "AADSTS7000222" in error
        assert "client secret has expired" in error and "client_secret" in error
        assert health["subscriptions"][sub]["last_success"] is None
    assert SECRET not in json.dumps(health) and SECRET not in caplog.text


async def test_empty_answers(make_plugin: MakePlugin, azure: AzureServer) -> None:
    azure.empty = True
    plugin = await make_plugin()
    report = await plugin.collect_costs()
    assert report.records == []
    assert {b.currency for b in report.budgets} == {None}  # no currency known yet: the records' one
    health = await plugin.get_health()
    assert all(h["last_error"] is None and h["last_success"] for h in health["subscriptions"].values())
    # No spend is an answer too: those closed days are not asked again.
    await plugin.costs_stored(True)
    await plugin.collect_costs()
    second = [s.body["timePeriod"]["from"] for s in azure.seen if s.kind == "query"][2:]
    assert second == ["2026-03-12T00:00:00Z"] * 2


async def test_unknown_subscription_fails_alone(make_plugin: MakePlugin, azure: AzureServer) -> None:
    plugin = await make_plugin(subscriptions=[{"id": SUB_A}, {"id": UNKNOWN, "name": "typo"}, {"id": SUB_B}])
    report = await plugin.collect_costs()
    assert {r.account for r in report.records} == {SUB_A, SUB_B}
    health = (await plugin.get_health())["subscriptions"]
    assert "SubscriptionNotFound" in health[UNKNOWN]["last_error"]
    assert health[UNKNOWN]["name"] == "typo" and health[UNKNOWN]["requests_today"] == 1
    assert health[SUB_A]["last_error"] is None and health[SUB_B]["last_error"] is None


async def test_a_hanging_subscription_does_not_hold_up_the_others(
    make_plugin: MakePlugin, azure: AzureServer
) -> None:
    azure.hanging.add(SUB_B)
    plugin = await make_plugin(subscription_timeout=0.5)
    report = await plugin.collect_costs()
    assert {r.account for r in report.records} == {SUB_A}
    health = (await plugin.get_health())["subscriptions"]
    assert "timed out" in health[SUB_B]["last_error"] and health[SUB_A]["last_error"] is None


async def test_closed_days_are_fetched_once(
    make_plugin: MakePlugin, azure: AzureServer, tmp_path: Path
) -> None:
    state = tmp_path / "closed"
    plugin = await make_plugin(state_dir=state, subscriptions=[{"id": SUB_A}])

    def last_query_from() -> str:
        return [s for s in azure.seen if s.kind == "query"][-1].body["timePeriod"]["from"]

    await plugin.collect_costs()
    assert last_query_from() == "2026-03-01T00:00:00Z"
    await plugin.costs_stored(False, "database unreachable")  # not stored: ask again
    await plugin.collect_costs()
    assert last_query_from() == "2026-03-01T00:00:00Z"
    await plugin.costs_stored(True)
    report = await plugin.collect_costs()
    # 1..11 are closed and stored: only the open days are asked for, and only they come back.
    assert last_query_from() == "2026-03-12T00:00:00Z"
    assert {r.day for r in report.records if r.kind == "actual"} == {day(12), day(13), day(14), day(15)}
    assert (await plugin.get_health())["subscriptions"][SUB_A]["closed_days_stored_through"] == "2026-03-11"

    # A restart keeps that; the next day, one more day has closed (the 12th, fetched final once more).
    later = NOW + dt.timedelta(days=1)
    restarted = await make_plugin(now=later, state_dir=state, subscriptions=[{"id": SUB_A}])
    await restarted.collect_costs()
    assert last_query_from() == "2026-03-12T00:00:00Z"
    await restarted.costs_stored(True)
    await restarted.collect_costs()
    assert last_query_from() == "2026-03-13T00:00:00Z"


def test_plan_covers_last_months_open_days_on_the_first() -> None:
    window = plan(dt.date(2026, 4, 1), 3, dt.date(2026, 3, 27))
    assert (window.start, window.open_from, window.closed_through) == (
        dt.date(2026, 3, 28),
        dt.date(2026, 3, 29),
        dt.date(2026, 3, 28),
    )
    assert plan(dt.date(2026, 4, 20), 3, None).start == dt.date(2026, 4, 1)
    assert plan(dt.date(2026, 4, 20), 3, dt.date(2026, 4, 19)).start == dt.date(2026, 4, 17)
    # After a long pause: from last month's first day, asked in pieces of at most 31 days.
    resumed = plan(dt.date(2026, 4, 20), 3, dt.date(2026, 1, 10))
    assert resumed.start == dt.date(2026, 3, 1)
    assert spans(resumed.start, resumed.today) == [
        (dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
        (dt.date(2026, 4, 1), dt.date(2026, 4, 20)),
    ]


def test_requested_wait_takes_the_longest_of_all_headers() -> None:
    assert requested_wait({}) is None
    assert (
        requested_wait(
            {"Retry-After": "2", "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "7"}
        )
        == 7
    )
    assert requested_wait({"retry-after-ms": "1500"}) == 1.5
    assert requested_wait({"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "soon"}) is None
    assert requested_wait({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}) == 0.0


def test_config_problems_are_named() -> None:
    base = {"subscriptions": [{"id": SUB_A}]}
    assert configuration.problems(base) == []
    assert configuration.problems(base | {"tenant_id": "t", "client_id": "c", "client_secret": "s"}) == []
    partial = configuration.problems(base | {"tenant_id": "t", "client_id": "c"})
    assert len(partial) == 1 and "without client_secret" in partial[0]
    both = configuration.problems(base | {"group_by": ["ServiceName", "MeterCategory"]})
    assert both and "pick one" in both[0]
    twice = configuration.problems({"subscriptions": [{"id": SUB_A}, {"id": SUB_A.upper()}]})
    assert twice and "twice" in twice[0]


@pytest.mark.parametrize("mode", ["managed_identity", "default"])
async def test_managed_identity_and_the_default_chain(
    mode: str, make_plugin: MakePlugin, azure: AzureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = AppServiceIdentity()
    await identity.start()
    try:
        # How App Service hands its managed identity to an app; azure-identity reads these.
        monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", identity.header)
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        plugin = await make_plugin(
            tenant_id=None, client_id=None, client_secret=None, credential=mode, subscriptions=[{"id": SUB_A}]
        )
        report = await plugin.collect_costs()
        assert any(r.kind == "actual" for r in report.records)
        assert identity.seen and identity.seen[0]["resource"].startswith("https://management.azure.com")
        assert {s.authorization for s in azure.seen} == {f"Bearer {identity.token}"}
        assert azure.token_requests == []  # no service-principal token request
        assert (await plugin.get_health())["credential"] == mode
    finally:
        await identity.stop()
