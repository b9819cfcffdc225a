"""The aws_cost plugin class against moto (server mode) and the Cost Explorer front (conftest.py), with
the real boto3: grouping and pagination, forecasts, the closed-day cache, the request budget, throttling,
expired credentials, role assumption, a failed store. Requests are counted at the server."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aetherlens.plugins.builtin.aws_cost.client import AuthError, ThrottledError
from aetherlens.plugins.builtin.aws_cost.plugin import AwsCostPlugin
from aetherlens.plugins.discovery import BUILTIN_DIR
from aetherlens.plugins.manifest import load_manifest, validate_config
from aetherlens.plugins.sdk import CostRecord

from .conftest import ACCOUNT, CostExplorerFront, base_config, fixture, month_end, today, window_start

MANIFEST = load_manifest(BUILTIN_DIR / "aws_cost")


async def make(config: dict[str, Any], state_dir: Path) -> AwsCostPlugin:
    plugin = AwsCostPlugin("aws_cost", validate_config(MANIFEST, config))
    plugin.state_dir = state_dir
    assert plugin.validate_config(plugin.config) == []
    await plugin.setup()
    return plugin


def actual(records: list[CostRecord]) -> list[CostRecord]:
    return [r for r in records if r.kind == "actual"]


def forecast_days() -> list[dt.date]:
    first, end = today() + dt.timedelta(days=1), month_end(today())
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]


async def test_grouped_pages_daily_forecast_and_closed_days_never_fetched_again(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(
        fixture("cost_and_usage_service_region_page1.json", fill_from=window_start()),
        fixture("cost_and_usage_service_region_page2.json"),
    )
    plugin = await make(base_config(front, group_by=["SERVICE", "REGION"], budget=250), tmp_path)
    report = await plugin.collect_costs()
    d = today()
    rows = {(r.day, r.service, r.region): r for r in actual(list(report.records))}
    assert set(rows) == {
        (d - dt.timedelta(days=2), "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
        (d - dt.timedelta(days=2), "Amazon Simple Storage Service", "us-east-1"),
        (d - dt.timedelta(days=1), "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
        (d - dt.timedelta(days=1), "AWS Lambda", "eu-west-1"),  # from page 2
        (d, "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
    }
    ec2 = rows[(d - dt.timedelta(days=2), "Amazon Elastic Compute Cloud - Compute", "us-east-1")]
    assert ec2.amount == Decimal("1.2345678901") and ec2.currency == "USD" and ec2.account == ACCOUNT
    assert (
        ec2.estimated is False and rows[(d, "Amazon Elastic Compute Cloud - Compute", "us-east-1")].estimated
    )
    forecast = [r for r in report.records if r.kind == "forecast"]
    assert [r.day for r in forecast] == forecast_days()
    assert all(r.amount == Decimal("1.9876543210") and r.service is None for r in forecast)
    assert [(b.account, b.amount) for b in report.budgets] == [(ACCOUNT, 250)]

    # Two pages (the second asks with page 1's token) and one forecast: three paid requests.
    usage = front.requests("GetCostAndUsage")
    assert len(usage) == 2 and usage[1]["NextPageToken"] == "AAMA-EXAMPLE-PAGE-TOKEN-2"
    assert usage[0]["GroupBy"] == [
        {"Type": "DIMENSION", "Key": "SERVICE"},
        {"Type": "DIMENSION", "Key": "REGION"},
    ]
    assert usage[0]["Granularity"] == "DAILY" and usage[0]["Metrics"] == ["UnblendedCost"]
    window = min(d.replace(day=1), d - dt.timedelta(days=2))
    assert usage[0]["TimePeriod"] == {
        "Start": window.isoformat(),
        "End": (d + dt.timedelta(days=1)).isoformat(),
    }
    if forecast_days():
        assert front.requests("GetCostForecast")[0]["Metric"] == "UNBLENDED_COST"
    assert front.ce_requests == (await plugin.get_health())["requests_used_today"]

    await plugin.costs_stored(True)
    health = await plugin.get_health()
    assert health["closed_days"] >= 1 and health["last_error"] is None and health["last_success"]

    # A restart (a new plugin on the same state folder) asks only for the open days: the day before
    # yesterday and older are never requested again, and the forecast is not due yet.
    again = await make(base_config(front, group_by=["SERVICE", "REGION"], budget=250), tmp_path)
    before = front.ce_requests
    await again.collect_costs()
    assert front.ce_requests == before + 1
    latest = front.requests("GetCostAndUsage")[-1]["TimePeriod"]
    assert latest["Start"] == (d - dt.timedelta(days=1)).isoformat()
    assert (await again.get_health())["requests_used_today"] == front.ce_requests


async def test_a_report_the_core_could_not_store_is_fetched_again(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(
        fixture("cost_and_usage_service_region_page1.json", fill_from=window_start())
    )  # same request: same answer
    plugin = await make(base_config(front, group_by=["SERVICE", "REGION"]), tmp_path)
    first_report = await plugin.collect_costs()
    assert first_report.records
    await plugin.costs_stored(False, "storing costs failed: the database is unreachable")
    assert "unreachable" in (await plugin.get_health())["last_store_error"]
    await plugin.collect_costs()
    first, _, second, _ = front.requests("GetCostAndUsage")
    assert first["TimePeriod"] == second["TimePeriod"]  # the closed days again, from the window's start
    assert front.counts["GetCostForecast"] == (2 if forecast_days() else 0)  # and the forecast is due again
    await plugin.costs_stored(True)
    await plugin.collect_costs()
    assert (
        front.requests("GetCostAndUsage")[-1]["TimePeriod"]["Start"]
        == (today() - dt.timedelta(days=1)).isoformat()
    )


async def test_linked_accounts_amortized_cost_and_a_monthly_forecast_spread_over_the_days(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(fixture("cost_and_usage_linked_account.json"))
    front.forecast = fixture("forecast_monthly.json")
    config = base_config(
        front, group_by=["LINKED_ACCOUNT", "SERVICE"], metric="AmortizedCost", forecast_granularity="MONTHLY"
    )
    plugin = await make(config, tmp_path)
    report = await plugin.collect_costs()
    assert sorted((r.account, r.service, r.amount) for r in actual(list(report.records))) == [
        ("111122223333", "Amazon Route 53", Decimal("0.5")),
        ("444455556666", "Amazon Elastic Compute Cloud - Compute", Decimal("3.75")),
    ]
    assert front.requests("GetCostAndUsage")[0]["Metrics"] == ["AmortizedCost"]
    forecast = [r for r in report.records if r.kind == "forecast"]
    if forecast_days():
        request = front.requests("GetCostForecast")[0]
        assert request["Metric"] == "AMORTIZED_COST" and request["Granularity"] == "MONTHLY"
        assert [r.day for r in forecast] == forecast_days()
        assert sum(Decimal(str(r.amount)) for r in forecast) == Decimal("100.0000000001")  # exactly
        assert {r.account for r in forecast} == {ACCOUNT}  # the payer (the caller's account)
    else:  # the month's last day: nothing left to forecast, nothing asked
        assert forecast == [] and front.counts["GetCostForecast"] == 0


async def test_days_without_spend_give_no_records_and_still_close(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(fixture("cost_and_usage_empty_days.json", fill_from=window_start()))
    plugin = await make(base_config(front, forecast=False), tmp_path)
    report = await plugin.collect_costs()
    assert report.records == [] and front.counts["GetCostForecast"] == 0
    await plugin.costs_stored(True)
    health = await plugin.get_health()
    closed = (
        today() - dt.timedelta(days=2) - window_start()
    ).days + 1  # the window up to the day before yesterday
    assert (
        health["closed_days"] == closed and health["records_last_poll"] == 0 and health["last_error"] is None
    )
    await plugin.collect_costs()
    assert (
        front.requests("GetCostAndUsage")[-1]["TimePeriod"]["Start"]
        == (today() - dt.timedelta(days=1)).isoformat()
    )


async def test_throttling_is_retried_by_botocore_then_by_the_plugin_and_shows_in_health(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    throttled = (400, fixture("error_throttling.json"))
    limit = (400, fixture("error_limit_exceeded.json"))
    # botocore (max_attempts 2) spends two attempts on the first two answers; the plugin's own backoff
    # tries again and gets the third throttle, then success: four paid requests for one forecast.
    front.script("GetCostForecast", throttled, limit, throttled)
    plugin = await make(base_config(front, max_attempts=2, throttle_retries=2), tmp_path)
    if not forecast_days():
        pytest.skip("the month's last day has no forecast to throttle")
    report = await plugin.collect_costs()
    assert [r.day for r in report.records if r.kind == "forecast"] == forecast_days()
    assert front.counts["GetCostForecast"] == 4
    health = await plugin.get_health()
    assert health["throttled"] == 1 and health["last_throttled"]
    assert health["requests_used_today"] == front.ce_requests == 5

    # Throttled past every retry: the poll fails with a message saying so, and the plugin lives on.
    front.script("GetCostAndUsage", *[throttled] * 6)
    with pytest.raises(
        ThrottledError, match=r"Cost Explorer throttled the requests \(ThrottlingException: Rate exceeded\)"
    ):
        await plugin.collect_costs()
    assert "throttled" in (await plugin.get_health())["last_error"]
    assert front.counts["GetCostAndUsage"] == 1 + 6  # 2 botocore attempts x 3 tries
    await plugin.collect_costs()  # the throttling is over: an ordinary poll
    assert (await plugin.get_health())["last_error"] is None


async def test_expired_credentials_are_a_clear_error_not_a_crash(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    front.script("GetCostAndUsage", (400, fixture("error_expired_token.json")))
    plugin = await make(base_config(front), tmp_path)
    with pytest.raises(AuthError) as failure:
        await plugin.collect_costs()
    message = str(failure.value)
    expected = "The security token included in the request is expired"
    assert f"AWS refused the credentials (ExpiredTokenException: {expected})" in message
    assert "renew" in message
    health = await plugin.get_health()
    assert health["last_error"] == message
    assert "wJalrXUtnFEMI" not in json.dumps(health) and "AKIAIOSFODNN7EXAMPLE" not in json.dumps(health)
    assert front.counts["GetCostAndUsage"] == 1  # not retried: new credentials are needed, not patience
    await plugin.collect_costs()  # once AWS accepts them again, the next poll works
    assert (await plugin.get_health())["last_error"] is None


async def test_role_assumption_with_a_session_name_renewed_before_expiry(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/aetherlens-cost-reader"
    plugin = await make(
        base_config(front, role_arn=role, role_duration_seconds=900, forecast=False), tmp_path
    )
    await plugin.collect_costs()
    assumed = front.requests("sts:AssumeRole")
    assert (
        assumed and assumed[0]["RoleArn"] == role and assumed[0]["RoleSessionName"] == "aetherlens-aws_cost"
    )
    assert assumed[0]["DurationSeconds"] == "900"
    ce_keys = {s.access_key for s in front.seen if s.operation == "GetCostAndUsage"}
    assert ce_keys and all(k and k.startswith("ASIA") for k in ce_keys)  # the role's temporary keys
    health = await plugin.get_health()
    assert health["credentials"] == f"config keys -> role {role}" and health["role_expires"]
    count = len(assumed)
    await plugin.collect_costs()
    assert len(front.requests("sts:AssumeRole")) == count  # still fresh: reused
    # 12 minutes on, 3 minutes before the 15-minute credentials expire: renewed before use.
    plugin.explorer.clock = lambda: time.time() + 720
    await plugin.collect_costs()
    assert len(front.requests("sts:AssumeRole")) == count + 1


async def test_the_daily_request_budget_is_enforced_and_survives_a_restart(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(
        fixture("cost_and_usage_service_region_page1.json", fill_from=window_start()),
        fixture("cost_and_usage_service_region_page2.json"),
    )
    config = base_config(front, group_by=["SERVICE", "REGION"], daily_request_budget=1)
    plugin = await make(config, tmp_path)
    report = await plugin.collect_costs()  # page 1 fits the budget, page 2 does not
    assert front.counts["GetCostAndUsage"] == 1 and front.counts["GetCostForecast"] == 0
    assert report.records  # what page 1 held is kept (upserting it is harmless) ...
    await plugin.costs_stored(True)
    health = await plugin.get_health()
    assert health["closed_days"] == 0  # ... but no day counts as fetched: pages were missing
    assert health["requests_used_today"] == 1 and health["requests_left_today"] == 0

    skipped = await plugin.collect_costs()
    assert not skipped.records and front.ce_requests == 1  # nothing sent
    health = await plugin.get_health()
    assert health["polls_skipped"] == 1
    assert (
        "daily request budget of 1 Cost Explorer requests" in health["note"] and "00:00 UTC" in health["note"]
    )

    restarted = await make(config, tmp_path)  # the count is in the state folder, not in memory
    await restarted.collect_costs()
    assert front.ce_requests == 1 and (await restarted.get_health())["requests_left_today"] == 0


async def test_the_budget_is_spread_over_the_day_instead_of_spent_by_the_afternoon(
    front: CostExplorerFront, tmp_path: Path
) -> None:
    await front.inject(
        fixture("cost_and_usage_service_region_page1.json", fill_from=window_start()),
        fixture("cost_and_usage_service_region_page2.json"),
    )
    config = base_config(front, pace=True, daily_request_budget=24, group_by=["SERVICE", "REGION"])
    plugin = await make(config, tmp_path)
    one_am = dt.datetime.now(dt.UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    plugin.clock = lambda: one_am  # 1/24 of the day gone: a share of 1 request, plus the burst of 2
    first = await plugin.collect_costs()  # two usage pages and the forecast
    assert first.records and front.ce_requests == 3
    await plugin.costs_stored(True)

    deferred = await plugin.collect_costs()  # a fourth request at 01:00 runs ahead of the spread
    assert not deferred.records and front.ce_requests == 3
    health = await plugin.get_health()
    assert health["polls_deferred"] == 1 and "deferred" in health["note"], health
    assert health["requests_left_today"] == 21

    plugin.clock = lambda: one_am + dt.timedelta(hours=2)  # a share of 3 by 03:00, plus the burst
    await plugin.collect_costs()
    assert front.ce_requests > 3 and (await plugin.get_health())["polls_deferred"] == 1


def test_manifest_marks_credentials_write_only_and_bad_combinations_are_named() -> None:
    properties = MANIFEST.config_schema["properties"]
    for key in ("access_key_id", "secret_access_key", "session_token", "external_id"):
        assert properties[key]["writeOnly"] is True
    plugin = AwsCostPlugin("aws_cost", {})
    problems = plugin.validate_config({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "profile": "home"})
    assert problems == [
        "config keys 'plugins.aws_cost.config.access_key_id' and '.secret_access_key' go together",
        "config keys 'plugins.aws_cost.config.profile' and '.access_key_id' exclude each other: pick one",
    ]
    with pytest.raises(Exception, match=r"group_by.*is too long"):
        validate_config(MANIFEST, {"group_by": ["SERVICE", "REGION", "LINKED_ACCOUNT"]})
